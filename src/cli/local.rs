//! The subcommands that run on this machine alone (`convert`, `preview`, `validate`,
//! `emulator`, `send`; `preview` may read from S3): each takes its arguments, calls the
//! library and gives the exit status (0, 1 at run time, 2 for bad input or usage).

use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;

use super::args::{ConvertArgs, EmulatorArgs, PreviewArgs, SendArgs, ValidateArgs};
use super::progress::ProgressLine;
use super::{ConvertEnd, ConvertRun, EXIT_BAD_INPUT, EXIT_FAILURE};
use crate::settings;

/// Prints `error: …` and gives the exit status for bad input or usage (2).
pub(crate) fn exit_bad_input(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_BAD_INPUT as u8)
}

/// Prints `error: …` and gives the exit status for a failure at run time (1).
pub(crate) fn exit_failure(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_FAILURE as u8)
}

/// The size of a local file (0 for standard input or when unknown): the progress line's total.
fn file_size(file: Option<&str>) -> u64 {
    match file {
        None | Some("-") => 0,
        Some(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
    }
}

pub fn run_convert(args: ConvertArgs) -> ExitCode {
    let converter = match super::load_converter(&args.config) {
        Ok(converter) => converter,
        Err(e) => return exit_bad_input(e),
    };
    let name = args.file.clone().unwrap_or_else(|| "-".to_string());
    let key = args.key.clone().unwrap_or_else(|| name.clone());
    if let Err(e) = super::check_filter_pattern(&converter, &key) {
        return exit_bad_input(e);
    }
    let limits = args.limits.limits();
    // A local Parquet file is read in place; anything else as a stream.
    let in_place = match args.file.as_deref() {
        None | Some("-") => None,
        Some(path) => super::parquet_in_place(&converter, path, limits),
    };
    enum Input {
        InPlace(std::fs::File),
        Stream(Box<dyn io::Read + Send>),
    }
    let input = match in_place {
        Some(file) => Input::InPlace(file),
        None => match super::open_input(args.file.as_deref()) {
            Ok(input) => Input::Stream(input),
            Err(e) => return exit_bad_input(e),
        },
    };
    let progress = ProgressLine::start(false);
    progress
        .meter
        .total
        .store(file_size(args.file.as_deref()), Relaxed);
    let run = ConvertRun {
        converter: &converter,
        bucket: &args.bucket,
        key: &key,
        limits,
        threads: args.threads.unwrap_or_else(settings::default_threads),
        meter: Some(&progress.meter),
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(256 << 10, stdout.lock());
    let end = match input {
        Input::InPlace(file) => super::convert_parquet_file(&run, progress.reader(file), &mut out),
        Input::Stream(input) => super::convert(&run, progress.reader(input), &mut out),
    };
    progress.finish();
    match end {
        ConvertEnd::Done(summary) => {
            eprintln!("{}", super::summary_line(&summary));
            ExitCode::SUCCESS
        }
        ConvertEnd::Failed(summary, e) => {
            eprintln!("{}", super::summary_line(&summary));
            exit_bad_input(format!("{name}: {e} (after {} records)", summary.records))
        }
        ConvertEnd::OutputClosed(_, e) if e.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::from(1)
        }
        ConvertEnd::OutputClosed(_, e) => {
            eprintln!("error: writing standard output: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn run_preview(args: PreviewArgs) -> ExitCode {
    if args.config.starts_with("s3://") || args.file.starts_with("s3://") {
        return run_preview_s3(args);
    }
    let converter = match super::load_converter(std::path::Path::new(&args.config)) {
        Ok(converter) => converter,
        Err(e) => return exit_bad_input(e),
    };
    let input = match super::open_input(Some(&args.file)) {
        Ok(input) => input,
        Err(e) => return exit_bad_input(e),
    };
    let key = args.key.clone().unwrap_or_else(|| args.file.clone());
    show_preview(&args, &converter, &args.bucket, &key, input)
}

/// Prints the preview of `input`; a read error is bad input (exit 2).
fn show_preview(
    args: &PreviewArgs,
    converter: &crate::convert::Converter,
    bucket: &str,
    key: &str,
    input: impl io::Read + Send,
) -> ExitCode {
    let run = ConvertRun {
        converter,
        bucket,
        key,
        limits: args.limits.limits(),
        threads: 1,
        meter: None,
    };
    let items = match super::preview(&run, input, args.limit) {
        Ok(items) => items,
        Err(e) => return exit_bad_input(format!("{}: {e}", args.file)),
    };
    let text = if args.json {
        super::preview_json(&items) + "\n"
    } else {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(if io::stdout().is_terminal() { 120 } else { 100 });
        super::render_preview(&items, width)
    };
    let _ = io::stdout().write_all(text.as_bytes());
    if let Err(e) = super::check_filter_pattern(converter, key) {
        eprintln!("warning: {e}; the importer would not pick this object up");
    }
    ExitCode::SUCCESS
}

/// `preview` with the converter or the data (or both) in a bucket: the object is streamed and
/// reading stops after the first records.
fn run_preview_s3(args: PreviewArgs) -> ExitCode {
    super::importer::init_logs();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let fetch_exit = |e: super::FetchError| match e {
        super::FetchError::Input(e) => exit_bad_input(e),
        super::FetchError::Runtime(e) => exit_failure(e),
    };
    let parse = |url: &str| settings::S3Url::parse(url);
    runtime.block_on(async {
        let clients = crate::aws::Clients::from_env().await;
        let source = crate::aws::source(&clients);
        let converter = if args.config.starts_with("s3://") {
            let url = match parse(&args.config) {
                Ok(url) => url,
                Err(e) => return exit_bad_input(e),
            };
            match super::converter_from(&source, &url).await {
                Ok(converter) => converter,
                Err(e) => return fetch_exit(e),
            }
        } else {
            match super::load_converter(std::path::Path::new(&args.config)) {
                Ok(converter) => converter,
                Err(e) => return exit_bad_input(e),
            }
        };
        if !args.file.starts_with("s3://") {
            let input = match super::open_input(Some(&args.file)) {
                Ok(input) => input,
                Err(e) => return exit_bad_input(e),
            };
            let key = args.key.clone().unwrap_or_else(|| args.file.clone());
            return show_preview(&args, &converter, &args.bucket, &key, input);
        }
        let url = match parse(&args.file) {
            Ok(url) => url,
            Err(e) => return exit_bad_input(e),
        };
        let (key, reader) = match super::open_from(&source, &url, &converter).await {
            Ok(opened) => opened,
            Err(e) => return fetch_exit(e),
        };
        eprintln!("s3://{}/{key}", url.bucket);
        // The reader blocks on the download, which runs on this runtime.
        let bucket = url.bucket.clone();
        tokio::task::block_in_place(|| show_preview(&args, &converter, &bucket, &key, reader))
    })
}

pub fn run_validate(args: ValidateArgs) -> ExitCode {
    let base_url = match (&args.endpoint, &args.region) {
        (None, None) => None,
        (endpoint, region) => {
            let region = region.as_deref().unwrap_or("us").to_ascii_lowercase();
            match settings::base_url(endpoint.clone(), &region) {
                Ok(url) => Some(url),
                Err(other) => {
                    return exit_bad_input(format!("--region must be us or eu, got {:?}", other.0))
                }
            }
        }
    };
    match super::validate(&args.config, base_url.as_deref()) {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            ExitCode::from(EXIT_BAD_INPUT as u8)
        }
    }
}

/// The async runtime for the subcommands that talk HTTP.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

pub fn run_emulator(args: EmulatorArgs) -> ExitCode {
    for (name, rate) in [
        ("--fail-rate", args.fail_rate),
        ("--drop-rate", args.drop_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return exit_bad_input(format!("{name} must be between 0 and 1, got {rate}"));
        }
    }
    let config = crate::emulator::EmulatorConfig {
        api_key: args.api_key,
        eps_limit: args.eps_limit,
        fail_rate: args.fail_rate,
        drop_rate: args.drop_rate,
        latency: std::time::Duration::from_millis(args.latency_ms),
        max_events: args.max_events,
        seed: args.seed,
        ..crate::emulator::EmulatorConfig::new(args.data_dir)
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let served = runtime.block_on(crate::emulator::serve(args.listen, config, |addr| {
        println!("listening on http://{addr}");
        let _ = io::stdout().flush();
    }));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: emulator on {}: {e}", args.listen);
            ExitCode::from(1)
        }
    }
}

pub fn run_send(args: SendArgs) -> ExitCode {
    let converter = match super::load_converter(&args.config) {
        Ok(converter) => std::sync::Arc::new(converter),
        Err(e) => return exit_bad_input(e),
    };
    let key = args.key.clone().unwrap_or_else(|| args.file.clone());
    if let Err(e) = super::check_filter_pattern(&converter, &key) {
        return exit_bad_input(e);
    }
    let region = args.region.to_ascii_lowercase();
    let base_url = match settings::base_url(args.endpoint.clone(), &region) {
        Ok(url) => url,
        Err(other) => {
            return exit_bad_input(format!("--region must be us or eu, got {:?}", other.0))
        }
    };
    if let Some(why) = crate::sink::routes::unserved(&converter.file, &base_url) {
        return exit_bad_input(why);
    }
    let api_key = match std::env::var(&args.api_key_env) {
        Ok(api_key) if !api_key.is_empty() => api_key,
        _ => {
            return exit_bad_input(format!(
                "the API key is read from ${}, which is not set",
                args.api_key_env
            ))
        }
    };
    let mut sink = crate::sink::SinkSettings::new(api_key, base_url);
    sink.event_api = if args.batch_api {
        crate::sink::EventApi::Batch
    } else {
        crate::sink::EventApi::HttpV2
    };
    sink.max_in_flight = args.in_flight.max(1);
    sink.gzip = args.gzip;
    let input = match super::open_file(&args.file) {
        Ok(input) => input,
        Err(e) => return exit_bad_input(e),
    };
    let progress = ProgressLine::start(false);
    progress
        .meter
        .total
        .store(file_size(Some(&args.file)), Relaxed);
    let input = progress.reader(input);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(args.deadline_secs);
    let result = runtime.block_on(super::send(
        converter,
        args.bucket.clone(),
        key,
        args.limits.limits(),
        input,
        &sink,
        deadline,
    ));
    progress.finish();
    match result {
        Ok(summary) => {
            if args.json {
                println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            } else {
                let title = super::send_title(&args.bucket, args.key.as_deref(), &args.file);
                print!("{}", super::render_send(&title, &summary));
            }
            if summary.fatal.is_some() || summary.counts.not_sent > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => exit_bad_input(format!("{}: {e}", args.file)),
    }
}
