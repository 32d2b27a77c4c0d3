//! The `s3-import` command line: wiring only; the work is in the library.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use s3_import::cli::{self, ConvertEnd, ConvertRun, EXIT_BAD_INPUT};
use s3_import::convert::Converter;
use s3_import::decode::Limits;

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
    /// Import a FAILED object again (after fixing the converter, permissions or the file)
    Retry(ImportArgs),
    /// Create the tables, bucket, queue and notification (local stack or a dev account)
    Setup(SetupArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// The object, as s3://bucket/key
    #[arg(value_name = "S3_URL")]
    object: String,
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
    #[arg(long, value_name = "CONVERTER.json")]
    config: PathBuf,
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
    #[arg(value_name = "FILE")]
    file: String,
}

#[derive(Args)]
struct ValidateArgs {
    #[arg(long, value_name = "CONVERTER.json")]
    config: PathBuf,
}

/// `10MiB`, `64GiB`, `500MB`, `1024`.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 10MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_BAD_INPUT as u8)
}

fn load_converter(path: &PathBuf) -> Result<Converter, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the converter file: {e}", path.display()))?;
    Converter::load(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn open_input(file: Option<&str>) -> Result<Box<dyn Read + Send>, String> {
    match file {
        None | Some("-") => Ok(Box::new(io::stdin())),
        Some(path) => File::open(path)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|e| format!("{path}: cannot open: {e}")),
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

fn run_convert(a: ConvertArgs) -> ExitCode {
    let converter = match load_converter(&a.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let name = a.file.clone().unwrap_or_else(|| "-".to_string());
    let key = a.key.clone().unwrap_or_else(|| name.clone());
    if !converter.file.key_matches(&key) {
        return fail(format!(
            "key {key:?} does not match keyValidatorConfig.filterPattern {:?}",
            converter.file.filter_pattern().unwrap_or_default()
        ));
    }
    let input = match open_input(a.file.as_deref()) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let run = ConvertRun {
        converter: &converter,
        bucket: &a.bucket,
        key: &key,
        limits: a.limits.limits(),
        threads: a.threads.unwrap_or_else(default_threads),
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(256 << 10, stdout.lock());
    match cli::convert(&run, input, &mut out) {
        ConvertEnd::Done(s) => {
            eprintln!("{}", cli::summary_line(&s));
            ExitCode::SUCCESS
        }
        ConvertEnd::Failed(s, e) => {
            eprintln!("{}", cli::summary_line(&s));
            fail(format!("{name}: {e} (after {} records)", s.records))
        }
        ConvertEnd::OutputClosed(s, e) if e.kind() == io::ErrorKind::BrokenPipe => {
            let _ = s;
            ExitCode::from(1)
        }
        ConvertEnd::OutputClosed(_, e) => {
            eprintln!("error: writing standard output: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_preview(a: PreviewArgs) -> ExitCode {
    let converter = match load_converter(&a.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let input = match open_input(Some(&a.file)) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let key = a.key.clone().unwrap_or_else(|| a.file.clone());
    let run = ConvertRun {
        converter: &converter,
        bucket: &a.bucket,
        key: &key,
        limits: a.limits.limits(),
        threads: 1,
    };
    let items = match cli::preview(&run, input, a.limit) {
        Ok(items) => items,
        Err(e) => return fail(format!("{}: {e}", a.file)),
    };
    let text = if a.json {
        cli::preview_json(&items) + "\n"
    } else {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(if io::stdout().is_terminal() { 120 } else { 100 });
        cli::render_preview(&items, width)
    };
    let _ = io::stdout().write_all(text.as_bytes());
    if !converter.file.key_matches(&key) {
        eprintln!(
            "warning: key {key:?} does not match keyValidatorConfig.filterPattern {:?}; the importer would not pick this object up",
            converter.file.filter_pattern().unwrap_or_default()
        );
    }
    ExitCode::SUCCESS
}

fn run_validate(a: ValidateArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&a.config) {
        Ok(t) => t,
        Err(e) => {
            return fail(format!(
                "{}: cannot read the converter file: {e}",
                a.config.display()
            ))
        }
    };
    match Converter::load(&text) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {}: {e}", a.config.display());
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

fn run_emulator(a: EmulatorArgs) -> ExitCode {
    for (name, rate) in [("--fail-rate", a.fail_rate), ("--drop-rate", a.drop_rate)] {
        if !(0.0..=1.0).contains(&rate) {
            return fail(format!("{name} must be between 0 and 1, got {rate}"));
        }
    }
    let config = s3_import::emulator::EmulatorConfig {
        api_key: a.api_key,
        eps_limit: a.eps_limit,
        fail_rate: a.fail_rate,
        drop_rate: a.drop_rate,
        latency: std::time::Duration::from_millis(a.latency_ms),
        max_events: a.max_events,
        seed: a.seed,
        ..s3_import::emulator::EmulatorConfig::new(a.data_dir)
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let served = runtime.block_on(s3_import::emulator::serve(a.listen, config, |addr| {
        println!("listening on http://{addr}");
        let _ = io::stdout().flush();
    }));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: emulator on {}: {e}", a.listen);
            ExitCode::from(1)
        }
    }
}

fn run_send(a: SendArgs) -> ExitCode {
    let converter = match load_converter(&a.config) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => return fail(e),
    };
    let key = a.key.clone().unwrap_or_else(|| a.file.clone());
    if !converter.file.key_matches(&key) {
        return fail(format!(
            "key {key:?} does not match keyValidatorConfig.filterPattern {:?}",
            converter.file.filter_pattern().unwrap_or_default()
        ));
    }
    let base_url = match (a.endpoint.clone(), a.region.to_ascii_lowercase().as_str()) {
        (Some(url), _) => url,
        (None, "us") => s3_import::sink::Region::Us.base_url().to_string(),
        (None, "eu") => s3_import::sink::Region::Eu.base_url().to_string(),
        (None, other) => return fail(format!("--region must be us or eu, got {other:?}")),
    };
    let api_key = match std::env::var(&a.api_key_env) {
        Ok(k) if !k.is_empty() => k,
        _ => {
            return fail(format!(
                "the API key is read from ${}, which is not set",
                a.api_key_env
            ))
        }
    };
    let mut settings = s3_import::sink::SinkSettings::new(api_key, base_url);
    settings.event_api = if a.batch_api {
        s3_import::sink::EventApi::Batch
    } else {
        s3_import::sink::EventApi::HttpV2
    };
    settings.max_in_flight = a.in_flight.max(1);
    settings.gzip = a.gzip;
    let input = match File::open(&a.file) {
        Ok(f) => f,
        Err(e) => return fail(format!("{}: cannot open: {e}", a.file)),
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(a.deadline_secs);
    let result = runtime.block_on(cli::send(
        converter,
        a.bucket.clone(),
        key,
        a.limits.limits(),
        input,
        &settings,
        deadline,
    ));
    match result {
        Ok(s) => {
            if a.json {
                println!("{}", serde_json::to_string(&s).unwrap_or_default());
            } else {
                let title = match &a.key {
                    Some(key) => format!("s3://{}/{key} (from {})", a.bucket, a.file),
                    None => a.file.clone(),
                };
                print!("{}", cli::render_send(&title, &s));
            }
            if s.fatal.is_some() || s.not_sent > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(format!("{}: {e}", a.file)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Convert(a) => run_convert(a),
        Command::Preview(a) => run_preview(a),
        Command::Validate(a) => run_validate(a),
        Command::Emulator(a) => run_emulator(a),
        Command::Send(a) => run_send(a),
        Command::Import(a) => run_importer(Job::Import(a)),
        Command::Scan(a) => run_importer(Job::Scan(a)),
        Command::Worker(a) => run_importer(Job::Worker(a)),
        Command::Status(a) => run_importer(Job::Status(a)),
        Command::Retry(a) => run_importer(Job::Retry(a)),
        Command::Setup(a) => run_setup(a),
    }
}

enum Job {
    Import(ImportArgs),
    Scan(ScanArgs),
    Worker(WorkerArgs),
    Status(StatusArgs),
    Retry(ImportArgs),
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("S3I_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}

/// The subcommands that run the importer against AWS (or a local stack).
fn run_importer(job: Job) -> ExitCode {
    init_logs();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
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
        let queue_url = settings.queue_url.clone();
        let pipeline = s3_import::aws::pipeline(&clients, settings);
        let owner = format!("cli-{}", std::process::id());
        let print = |text: &str| {
            print!("{text}");
            let _ = io::stdout().flush();
        };
        let object = |url: &str| s3_import::ops::object_ref(url);
        match job {
            Job::Import(a) => {
                let obj = match object(&a.object) {
                    Ok(o) => o,
                    Err(e) => return fail(e),
                };
                let outcome = pipeline.import_to_end(&obj, &owner).await;
                print(&s3_import::ops::render_outcome(&obj, &outcome));
                outcome_code(&outcome)
            }
            Job::Retry(a) => {
                let obj = match object(&a.object) {
                    Ok(o) => o,
                    Err(e) => return fail(e),
                };
                match pipeline.retry(&obj, &owner).await {
                    Ok(outcome) => {
                        print(&s3_import::ops::render_outcome(&obj, &outcome));
                        outcome_code(&outcome)
                    }
                    Err(e) => fail(e),
                }
            }
            Job::Scan(a) => {
                let prefix = a.prefix.unwrap_or_else(|| pipeline.settings.prefix.clone());
                match pipeline
                    .scan(&a.bucket, &prefix, a.enqueue, &owner, print)
                    .await
                {
                    Ok(summary) => {
                        println!("{summary}");
                        if summary.failed + summary.other > 0 {
                            ExitCode::from(1)
                        } else {
                            ExitCode::SUCCESS
                        }
                    }
                    Err(e) => fail(e),
                }
            }
            Job::Status(a) => match pipeline.status(a.json).await {
                Ok(text) => {
                    print(&text);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            },
            Job::Worker(a) => {
                let Some(url) = a.queue_url.or(queue_url) else {
                    return fail("worker: give --queue-url or set S3I_QUEUE_URL");
                };
                let idle = a.idle_exit.map(std::time::Duration::from_secs);
                let retry = std::time::Duration::from_secs(a.retry_after);
                match s3_import::aws::work_queue(&pipeline, &clients.sqs, &url, idle, retry, print)
                    .await
                {
                    Ok(n) => {
                        eprintln!("worker: {n} messages handled, queue idle");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                }
            }
        }
    })
}

/// 0 when the object is done (or was before), 1 otherwise.
fn outcome_code(outcome: &s3_import::pipeline::ObjectOutcome) -> ExitCode {
    use s3_import::pipeline::ObjectOutcome as O;
    match outcome {
        O::Completed(_) | O::AlreadyCompleted | O::Ignored(_) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

fn run_setup(a: SetupArgs) -> ExitCode {
    init_logs();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let env = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let claims = env("S3I_CLAIMS_TABLE", "s3-import-claims");
    let dedupe = env("S3I_DEDUPE_TABLE", "s3-import-dedupe");
    let dedupe = (dedupe != "off").then_some(dedupe);
    rt.block_on(async move {
        let clients = s3_import::aws::Clients::from_env().await;
        match s3_import::aws::setup(
            &clients,
            &claims,
            dedupe.as_deref(),
            &a.bucket,
            &a.queue,
            &a.prefix,
        )
        .await
        {
            Ok(url) => {
                println!("{url}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    })
}
