//! The `s3-import` command line: parses arguments, calls the library, prints, picks exit codes.
//! One file of about 900 lines for now: most of it is the clap argument structs with their help
//! texts, and the dispatch of each subcommand to the library with its exit status (0, 1
//! run-time, 2 input); thinning it to definitions and dispatch is issue 22's ("thin binaries").

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use std::sync::atomic::Ordering::Relaxed;

use s3_import::cli::progress::ProgressLine;
use s3_import::cli::{self, parse_size, ConvertEnd, ConvertRun, EXIT_BAD_INPUT, EXIT_FAILURE};
use s3_import::decode::Limits;
use s3_import::settings;

#[derive(Parser)]
#[command(
    name = "s3-import",
    version,
    about = "Self-hosted Amplitude S3 Import: validate, preview and run converter files; deliver to Amplitude or a local emulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert one object's content: one JSON line per record outcome on stdout, a summary on stderr
    Convert(ConvertArgs),
    /// Show the first records beside what they convert to (the "Data Preview")
    Preview(PreviewArgs),
    /// Load a converter file and report every problem with its JSON path
    Validate(ValidateArgs),
    /// Run a local Amplitude-compatible ingestion endpoint (dry runs, demo, tests)
    Emulator(EmulatorArgs),
    /// Convert a local file and deliver it to Amplitude or a compatible endpoint
    Send(SendArgs),
    /// Import one S3 object now (claims, dedupe and reports as the Lambda function does)
    Import(ImportArgs),
    /// List a bucket prefix and import (or queue) every object without a final claim
    Scan(ScanArgs),
    /// Poll an SQS queue and import what it announces, like the Lambda trigger
    Worker(WorkerArgs),
    /// List the claims of this source: state, counts, report location or failure reason
    Status(StatusArgs),
    /// Import a FAILED object again, or every one (--failed), after fixing what failed them
    Retry(RetryArgs),
    /// Check the deployed settings: bucket, converter, reports, tables, queue, endpoint and key
    Check(CheckArgs),
    /// Create the tables, bucket, queue and notification (local stack or a dev account)
    Setup(SetupArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// The object, as s3://bucket/key
    #[arg(value_name = "S3_URL")]
    object: String,
    /// Print the outcome as one JSON object (with the report)
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RetryArgs {
    /// The FAILED object, as s3://bucket/key
    #[arg(
        value_name = "S3_URL",
        required_unless_present = "failed",
        conflicts_with = "failed"
    )]
    object: Option<String>,
    /// Retry every FAILED object of this source (S3I_SOURCE)
    #[arg(long)]
    failed: bool,
    /// With --failed: only the objects whose key starts with this
    #[arg(long, requires = "failed")]
    prefix: Option<String>,
    /// One JSON object per object, then a summary object
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// The source bucket [default: S3I_SOURCE when it is a bucket name (the template's default) or `<bucket>/<prefix>`]
    #[arg(long)]
    bucket: Option<String>,
    /// Print {"ok", "checks": [{"check", "ok", "detail", "fix"}]}
    #[arg(long)]
    json: bool,
    /// Run the checks as this role (the stack output FunctionRoleArn): its permission gaps show before the first file
    #[arg(long, value_name = "ARN")]
    role_arn: Option<String>,
    /// The external ID the role's trust policy requires, if any
    #[arg(long, requires = "role_arn")]
    external_id: Option<String>,
}

#[derive(Args)]
struct ScanArgs {
    #[arg(long)]
    bucket: String,
    /// Key prefix to list [default: S3I_PREFIX]
    #[arg(long)]
    prefix: Option<String>,
    /// Queue the objects (to S3I_QUEUE_URL) instead of importing them here
    #[arg(long)]
    enqueue: bool,
    /// Print only the summary, as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct WorkerArgs {
    /// The queue that the bucket notifies [default: S3I_QUEUE_URL]
    #[arg(long, value_name = "URL")]
    queue_url: Option<String>,
    /// Exit after this many seconds without a message (default: run until stopped)
    #[arg(long, value_name = "SECS")]
    idle_exit: Option<u64>,
    /// Seconds before an unfinished message is received again
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    retry_after: u64,
}

#[derive(Args)]
struct StatusArgs {
    /// One JSON object per claim
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SetupArgs {
    /// The bucket to watch (created if missing)
    #[arg(long)]
    bucket: String,
    /// The queue the bucket notifies (created if missing, with a dead-letter queue)
    #[arg(long)]
    queue: String,
    /// Only keys under this prefix are announced
    #[arg(long, default_value = "")]
    prefix: String,
    /// Announce through EventBridge instead of the bucket's queue notification: the queue
    /// admits this rule (which forwards "Object Created" to it) and the bucket's EventBridge
    /// delivery is turned on
    #[arg(long, value_name = "RULE_ARN")]
    eventbridge_rule_arn: Option<String>,
}

#[derive(Args)]
struct SendArgs {
    /// The converter file (Amplitude S3 Import format)
    #[arg(long, value_name = "CONVERTER.json")]
    config: PathBuf,
    /// Endpoint base URL (the emulator, or any compatible endpoint); overrides --region
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Amplitude region: us or eu
    #[arg(long, default_value = "us")]
    region: String,
    /// Name of the environment variable that holds the API key (never pass keys as flags)
    #[arg(long, default_value = "AMPLITUDE_API_KEY")]
    api_key_env: String,
    /// Send events to the Batch API (/batch) instead of HTTP V2 (/2/httpapi)
    #[arg(long)]
    batch_api: bool,
    /// Requests in flight at once
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Gzip request bodies
    #[arg(long)]
    gzip: bool,
    /// Give up on what is not confirmed after this many seconds
    #[arg(long, default_value_t = 600)]
    deadline_secs: u64,
    /// Bucket name used for default insert_ids
    #[arg(long, default_value = "local")]
    bucket: String,
    /// Object key used for default insert_ids and checked against filterPattern [default: FILE]
    #[arg(long)]
    key: Option<String>,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: InputLimits,
    #[arg(value_name = "FILE")]
    file: String,
}

#[derive(Args)]
struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed)
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: std::net::SocketAddr,
    /// Where accepted payloads are appended as JSON lines
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The only API key accepted [default: any non-empty key]
    #[arg(long)]
    api_key: Option<String>,
    /// Events per second allowed per device or user; more get 429 [default: no limit]
    #[arg(long)]
    eps_limit: Option<u32>,
    /// Share of requests that fail with 500 (after ingesting) or 503 (before), 0–1
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Share of requests whose connection is cut after ingesting, 0–1
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Latency added to every request, in milliseconds
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Events per request before 413
    #[arg(long, default_value_t = 2000)]
    max_events: usize,
    /// Seed of the fault generator
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args)]
struct InputLimits {
    /// Largest decompressed size of one object (e.g. 64GiB); beyond it the object fails
    #[arg(long, value_name = "SIZE", default_value = "64GiB", value_parser = parse_size)]
    max_decompressed_bytes: u64,
    /// Largest record (JSON line or CSV row) (e.g. 10MiB); a longer JSON line is an invalid record
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    max_record_bytes: u64,
}

impl InputLimits {
    fn limits(&self) -> Limits {
        Limits {
            max_decompressed_bytes: self.max_decompressed_bytes,
            max_record_bytes: usize::try_from(self.max_record_bytes).unwrap_or(usize::MAX),
            ..Limits::default()
        }
    }
}

#[derive(Args)]
struct ConvertArgs {
    /// The converter file (Amplitude S3 Import format)
    #[arg(long, value_name = "CONVERTER.json")]
    config: PathBuf,
    /// Bucket name used for default insert_ids
    #[arg(long, default_value = "local")]
    bucket: String,
    /// Object key used for default insert_ids and checked against filterPattern [default: FILE]
    #[arg(long)]
    key: Option<String>,
    /// Conversion threads for JSON lines: with N >= 2, one more thread decompresses while N convert 1 MiB chunks, output in record order [default: min(2, cores)]
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    limits: InputLimits,
    /// The object's bytes; - or nothing reads standard input
    #[arg(value_name = "FILE|-")]
    file: Option<String>,
}

#[derive(Args)]
struct PreviewArgs {
    /// The converter file: a local path, or s3://bucket/key
    #[arg(long, value_name = "CONVERTER.json")]
    config: String,
    /// How many records to show
    #[arg(long, default_value_t = 10)]
    limit: u64,
    /// Print a JSON array of {"n", "source", "outcome", "payloads"|"error"}
    #[arg(long)]
    json: bool,
    /// Bucket name used for default insert_ids
    #[arg(long, default_value = "local")]
    bucket: String,
    /// Object key used for default insert_ids [default: FILE]
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    limits: InputLimits,
    /// A local file, an object (s3://bucket/key), or a prefix (s3://bucket/prefix/: its first
    /// object); objects are streamed and only the first records are read
    #[arg(value_name = "FILE|S3_URL")]
    file: String,
}

#[derive(Args)]
struct ValidateArgs {
    #[arg(long, value_name = "CONVERTER.json")]
    config: PathBuf,
    /// Also check that this endpoint serves every route the converter needs
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Also check against Amplitude's hosts in this region (us or eu)
    #[arg(long, conflicts_with = "endpoint")]
    region: Option<String>,
}

/// Prints `error: …` and gives the exit status for bad input or usage (2).
fn exit_bad_input(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_BAD_INPUT as u8)
}

/// Prints `error: …` and gives the exit status for a failure at run time (1).
fn exit_failure(message: impl std::fmt::Display) -> ExitCode {
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

fn run_convert(args: ConvertArgs) -> ExitCode {
    let converter = match cli::load_converter(&args.config) {
        Ok(converter) => converter,
        Err(e) => return exit_bad_input(e),
    };
    let name = args.file.clone().unwrap_or_else(|| "-".to_string());
    let key = args.key.clone().unwrap_or_else(|| name.clone());
    if let Err(e) = cli::check_filter_pattern(&converter, &key) {
        return exit_bad_input(e);
    }
    let limits = args.limits.limits();
    // A local Parquet file is read in place; anything else as a stream.
    let in_place = match args.file.as_deref() {
        None | Some("-") => None,
        Some(path) => cli::parquet_in_place(&converter, path, limits),
    };
    enum Input {
        InPlace(std::fs::File),
        Stream(Box<dyn io::Read + Send>),
    }
    let input = match in_place {
        Some(file) => Input::InPlace(file),
        None => match cli::open_input(args.file.as_deref()) {
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
        Input::InPlace(file) => cli::convert_parquet_file(&run, progress.reader(file), &mut out),
        Input::Stream(input) => cli::convert(&run, progress.reader(input), &mut out),
    };
    progress.finish();
    match end {
        ConvertEnd::Done(summary) => {
            eprintln!("{}", cli::summary_line(&summary));
            ExitCode::SUCCESS
        }
        ConvertEnd::Failed(summary, e) => {
            eprintln!("{}", cli::summary_line(&summary));
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

fn run_preview(args: PreviewArgs) -> ExitCode {
    if args.config.starts_with("s3://") || args.file.starts_with("s3://") {
        return run_preview_s3(args);
    }
    let converter = match cli::load_converter(std::path::Path::new(&args.config)) {
        Ok(converter) => converter,
        Err(e) => return exit_bad_input(e),
    };
    let input = match cli::open_input(Some(&args.file)) {
        Ok(input) => input,
        Err(e) => return exit_bad_input(e),
    };
    let key = args.key.clone().unwrap_or_else(|| args.file.clone());
    show_preview(&args, &converter, &args.bucket, &key, input)
}

/// Prints the preview of `input`; a read error is bad input (exit 2).
fn show_preview(
    args: &PreviewArgs,
    converter: &s3_import::convert::Converter,
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
    let items = match cli::preview(&run, input, args.limit) {
        Ok(items) => items,
        Err(e) => return exit_bad_input(format!("{}: {e}", args.file)),
    };
    let text = if args.json {
        cli::preview_json(&items) + "\n"
    } else {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(if io::stdout().is_terminal() { 120 } else { 100 });
        cli::render_preview(&items, width)
    };
    let _ = io::stdout().write_all(text.as_bytes());
    if let Err(e) = cli::check_filter_pattern(converter, key) {
        eprintln!("warning: {e}; the importer would not pick this object up");
    }
    ExitCode::SUCCESS
}

/// `preview` with the converter or the data (or both) in a bucket: the object is streamed and
/// reading stops after the first records.
fn run_preview_s3(args: PreviewArgs) -> ExitCode {
    init_logs();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let fetch_exit = |e: cli::FetchError| match e {
        cli::FetchError::Input(e) => exit_bad_input(e),
        cli::FetchError::Runtime(e) => exit_failure(e),
    };
    let parse = |url: &str| settings::S3Url::parse(url);
    runtime.block_on(async {
        let clients = s3_import::aws::Clients::from_env().await;
        let source = s3_import::aws::source(&clients);
        let converter = if args.config.starts_with("s3://") {
            let url = match parse(&args.config) {
                Ok(url) => url,
                Err(e) => return exit_bad_input(e),
            };
            match cli::converter_from(&source, &url).await {
                Ok(converter) => converter,
                Err(e) => return fetch_exit(e),
            }
        } else {
            match cli::load_converter(std::path::Path::new(&args.config)) {
                Ok(converter) => converter,
                Err(e) => return exit_bad_input(e),
            }
        };
        if !args.file.starts_with("s3://") {
            let input = match cli::open_input(Some(&args.file)) {
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
        let (key, reader) = match cli::open_from(&source, &url, &converter).await {
            Ok(opened) => opened,
            Err(e) => return fetch_exit(e),
        };
        eprintln!("s3://{}/{key}", url.bucket);
        // The reader blocks on the download, which runs on this runtime.
        let bucket = url.bucket.clone();
        tokio::task::block_in_place(|| show_preview(&args, &converter, &bucket, &key, reader))
    })
}

fn run_validate(args: ValidateArgs) -> ExitCode {
    let base_url = match (&args.endpoint, &args.region) {
        (None, None) => None,
        (endpoint, region) => {
            let region = region.as_deref().unwrap_or("us").to_ascii_lowercase();
            match settings::base_url(endpoint.clone(), &region) {
                Ok(url) => Some(url),
                Err(other) => {
                    return exit_bad_input(format!("--region must be us or eu, got {other:?}"))
                }
            }
        }
    };
    match cli::validate(&args.config, base_url.as_deref()) {
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
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

fn run_emulator(args: EmulatorArgs) -> ExitCode {
    for (name, rate) in [
        ("--fail-rate", args.fail_rate),
        ("--drop-rate", args.drop_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return exit_bad_input(format!("{name} must be between 0 and 1, got {rate}"));
        }
    }
    let config = s3_import::emulator::EmulatorConfig {
        api_key: args.api_key,
        eps_limit: args.eps_limit,
        fail_rate: args.fail_rate,
        drop_rate: args.drop_rate,
        latency: std::time::Duration::from_millis(args.latency_ms),
        max_events: args.max_events,
        seed: args.seed,
        ..s3_import::emulator::EmulatorConfig::new(args.data_dir)
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let served = runtime.block_on(s3_import::emulator::serve(args.listen, config, |addr| {
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

fn run_send(args: SendArgs) -> ExitCode {
    let converter = match cli::load_converter(&args.config) {
        Ok(converter) => std::sync::Arc::new(converter),
        Err(e) => return exit_bad_input(e),
    };
    let key = args.key.clone().unwrap_or_else(|| args.file.clone());
    if let Err(e) = cli::check_filter_pattern(&converter, &key) {
        return exit_bad_input(e);
    }
    let region = args.region.to_ascii_lowercase();
    let base_url = match settings::base_url(args.endpoint.clone(), &region) {
        Ok(url) => url,
        Err(other) => return exit_bad_input(format!("--region must be us or eu, got {other:?}")),
    };
    if let Some(why) = s3_import::sink::routes::unserved(&converter.file, &base_url) {
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
    let mut sink = s3_import::sink::SinkSettings::new(api_key, base_url);
    sink.event_api = if args.batch_api {
        s3_import::sink::EventApi::Batch
    } else {
        s3_import::sink::EventApi::HttpV2
    };
    sink.max_in_flight = args.in_flight.max(1);
    sink.gzip = args.gzip;
    let input = match cli::open_file(&args.file) {
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
    let result = runtime.block_on(cli::send(
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
                let title = cli::send_title(&args.bucket, args.key.as_deref(), &args.file);
                print!("{}", cli::render_send(&title, &summary));
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Convert(args) => run_convert(args),
        Command::Preview(args) => run_preview(args),
        Command::Validate(args) => run_validate(args),
        Command::Emulator(args) => run_emulator(args),
        Command::Send(args) => run_send(args),
        Command::Import(args) => run_importer(ImporterCommand::Import(args)),
        Command::Scan(args) => run_importer(ImporterCommand::Scan(args)),
        Command::Worker(args) => run_importer(ImporterCommand::Worker(args)),
        Command::Status(args) => run_importer(ImporterCommand::Status(args)),
        Command::Retry(args) => run_importer(ImporterCommand::Retry(args)),
        Command::Check(args) => run_importer(ImporterCommand::Check(args)),
        Command::Setup(args) => run_setup(args),
    }
}

/// The subcommands that run the importer against AWS (or a local stack).
enum ImporterCommand {
    Import(ImportArgs),
    Scan(ScanArgs),
    Worker(WorkerArgs),
    Status(StatusArgs),
    Retry(RetryArgs),
    Check(CheckArgs),
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("S3I_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}

fn print(text: &str) {
    print!("{text}");
    let _ = io::stdout().flush();
}

fn print_json(value: &serde_json::Value) {
    print(&format!("{value}\n"));
}

/// Runs one importer subcommand against AWS (or a local stack) with the settings of the
/// environment: bad settings or arguments exit 2, failures at run time 1.
fn run_importer(command: ImporterCommand) -> ExitCode {
    init_logs();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let clients = s3_import::aws::Clients::from_env().await;
        let settings = match s3_import::aws::settings_from_env(&clients).await {
            Ok(s) => s,
            Err(problems) => {
                eprintln!("error: the settings are not usable:");
                for p in problems {
                    eprintln!("  - {p}");
                }
                eprintln!("(the README's \"Settings\" section lists every variable)");
                return ExitCode::from(EXIT_BAD_INPUT as u8);
            }
        };
        let owner = format!("cli-{}", std::process::id());
        match command {
            ImporterCommand::Worker(args) => run_worker(&clients, settings, args).await,
            ImporterCommand::Check(args) => {
                let bucket = args
                    .bucket
                    .or_else(|| s3_import::check::source_bucket(&settings));
                let role = match &args.role_arn {
                    Some(arn) => Some(clients.as_role(arn, args.external_id.as_deref()).await),
                    None => None,
                };
                let secret = std::env::var("S3I_API_KEY_SECRET")
                    .ok()
                    .filter(|s| !s.is_empty());
                let as_role = role.as_ref().map(|r| s3_import::check::AsRole {
                    clients: r,
                    api_key_secret: secret.as_deref(),
                });
                let checks =
                    s3_import::check::run(&clients, &settings, bucket.as_deref(), as_role).await;
                if args.json {
                    print_json(&s3_import::check::to_json(&checks));
                } else {
                    print(&s3_import::check::render(&checks));
                }
                exit_if(checks.iter().all(|c| c.ok))
            }
            ImporterCommand::Import(args) => {
                let obj = match s3_import::ops::object_ref(&args.object) {
                    Ok(obj) => obj,
                    Err(e) => return exit_bad_input(e),
                };
                let progress = ProgressLine::start(true);
                let pipeline = cli::progress::metered_pipeline(&clients, settings, progress.meter.clone());
                let outcome = pipeline.import_to_end(&obj, &owner).await;
                progress.finish();
                print_outcome(&obj, &outcome, args.json);
                exit_if(s3_import::ops::outcome_ok(&outcome))
            }
            ImporterCommand::Retry(args) => {
                let progress = ProgressLine::start(true);
                let pipeline = cli::progress::metered_pipeline(&clients, settings, progress.meter.clone());
                let json = args.json;
                let Some(url) = args.object else {
                    let prefix = args.prefix.unwrap_or_default();
                    let report = |obj: &s3_import::notify::ObjectRef,
                                  outcome: Result<&s3_import::pipeline::ObjectOutcome, &s3_import::ops::OpError>| {
                        progress.bar_println(|| match outcome {
                            Ok(o) if json => format!("{}\n", s3_import::ops::outcome_json(obj, o)),
                            Ok(o) => s3_import::ops::render_outcome(obj, o),
                            Err(e) if json => format!(
                                "{}\n",
                                serde_json::json!({"bucket": obj.bucket, "key": obj.key, "outcome": "not_retried", "detail": e.to_string()})
                            ),
                            Err(e) => format!("s3://{}/{}: not retried: {e}\n", obj.bucket, obj.key),
                        });
                    };
                    let summary = pipeline.retry_failed(&prefix, &owner, report).await;
                    progress.finish();
                    return match summary {
                        Ok(summary) => {
                            if json {
                                print_json(&serde_json::json!({"summary": summary}));
                            } else {
                                println!("{summary}");
                            }
                            exit_if(summary.failed_again + summary.other == 0)
                        }
                        Err(e) => op_exit(e),
                    };
                };
                let obj = match s3_import::ops::object_ref(&url) {
                    Ok(obj) => obj,
                    Err(e) => return exit_bad_input(e),
                };
                let outcome = pipeline.retry(&obj, &owner).await;
                progress.finish();
                match outcome {
                    Ok(outcome) => {
                        print_outcome(&obj, &outcome, json);
                        exit_if(s3_import::ops::outcome_ok(&outcome))
                    }
                    Err(e) => op_exit(e),
                }
            }
            ImporterCommand::Scan(args) => {
                let progress = ProgressLine::start(true);
                let pipeline = cli::progress::metered_pipeline(&clients, settings, progress.meter.clone());
                let prefix = args
                    .prefix
                    .unwrap_or_else(|| pipeline.settings.prefix.clone());
                let json = args.json;
                let scanned = pipeline
                    .scan(&args.bucket, &prefix, args.enqueue, &owner, |text: &str| {
                        if !json {
                            progress.bar_println(|| text.to_string());
                        }
                    })
                    .await;
                progress.finish();
                match scanned {
                    Ok(summary) => {
                        if json {
                            print_json(&serde_json::to_value(&summary).unwrap_or_default());
                        } else {
                            println!("{summary}");
                        }
                        exit_if(summary.failed + summary.other == 0)
                    }
                    Err(e) => exit_failure(e),
                }
            }
            ImporterCommand::Status(args) => {
                let pipeline = s3_import::aws::pipeline(&clients, settings);
                match pipeline.status(args.json).await {
                    Ok(text) => {
                        print(&text);
                        ExitCode::SUCCESS
                    }
                    Err(e) => exit_failure(e),
                }
            }
        }
    })
}

/// `worker`: polls the queue like the Lambda trigger.
async fn run_worker(
    clients: &s3_import::aws::Clients,
    settings: settings::Settings,
    args: WorkerArgs,
) -> ExitCode {
    let Some(url) = args.queue_url.or_else(|| settings.queue_url.clone()) else {
        return exit_bad_input("worker: give --queue-url or set S3I_QUEUE_URL");
    };
    let pipeline = s3_import::aws::pipeline(clients, settings);
    let idle = args.idle_exit.map(std::time::Duration::from_secs);
    let retry = std::time::Duration::from_secs(args.retry_after);
    match s3_import::aws::work_queue(&pipeline, &clients.sqs, &url, idle, retry, print).await {
        Ok(n) => {
            eprintln!("worker: {n} messages handled, queue idle");
            ExitCode::SUCCESS
        }
        Err(e) => exit_failure(e),
    }
}

/// One object's outcome: its lines, or one JSON object.
fn print_outcome(
    obj: &s3_import::notify::ObjectRef,
    outcome: &s3_import::pipeline::ObjectOutcome,
    json: bool,
) {
    if json {
        print_json(&s3_import::ops::outcome_json(obj, outcome));
    } else {
        print(&s3_import::ops::render_outcome(obj, outcome));
    }
}

/// 0 when `ok`, 1 otherwise.
fn exit_if(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE as u8)
    }
}

/// An operation refused (2) or failed (1).
fn op_exit(e: s3_import::ops::OpError) -> ExitCode {
    match e {
        s3_import::ops::OpError::Input(e) => exit_bad_input(e),
        s3_import::ops::OpError::Runtime(e) => exit_failure(e),
    }
}

fn run_setup(args: SetupArgs) -> ExitCode {
    init_logs();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let tables = settings::Tables::from_env();
    if let Some(problem) = args
        .eventbridge_rule_arn
        .as_deref()
        .and_then(s3_import::aws::rule_arn_problem)
    {
        return exit_bad_input(format!("--eventbridge-rule-arn: {problem}"));
    }
    runtime.block_on(async move {
        let clients = s3_import::aws::Clients::from_env().await;
        match s3_import::aws::setup(
            &clients,
            &tables.claims,
            tables.dedupe.as_deref(),
            &args.bucket,
            &args.queue,
            &args.prefix,
            match args.eventbridge_rule_arn.as_deref() {
                Some(rule_arn) => s3_import::aws::Announce::EventBridge { rule_arn },
                None => s3_import::aws::Announce::Queue,
            },
        )
        .await
        {
            Ok(url) => {
                println!("{url}");
                ExitCode::SUCCESS
            }
            Err(e) => exit_failure(e),
        }
    })
}
