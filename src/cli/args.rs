//! The arguments of each `s3-import` subcommand, with their help texts (clap); the binary
//! lists the subcommands and dispatches to `cli::local` and `cli::importer`.

use std::path::PathBuf;

use clap::Args;

use super::parse_size;
use crate::decode::Limits;

#[derive(Args)]
pub struct ImportArgs {
    /// The object, as s3://bucket/key
    #[arg(value_name = "S3_URL")]
    pub object: String,
    /// Print the outcome as one JSON object (with the report)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RetryArgs {
    /// The FAILED object, as s3://bucket/key
    #[arg(
        value_name = "S3_URL",
        required_unless_present = "failed",
        conflicts_with = "failed"
    )]
    pub object: Option<String>,
    /// Retry every FAILED object of this source (S3I_SOURCE)
    #[arg(long)]
    pub failed: bool,
    /// With --failed: only the objects whose key starts with this
    #[arg(long, requires = "failed")]
    pub prefix: Option<String>,
    /// One JSON object per object, then a summary object
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The source bucket [default: S3I_SOURCE when it is a bucket name (the template's default) or `<bucket>/<prefix>`]
    #[arg(long)]
    pub bucket: Option<String>,
    /// Print {"ok", "checks": [{"check", "ok", "detail", "fix"}]}
    #[arg(long)]
    pub json: bool,
    /// Run the checks as this role (the stack output FunctionRoleArn): its permission gaps show before the first file
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// The external ID the role's trust policy requires, if any
    #[arg(long, requires = "role_arn")]
    pub external_id: Option<String>,
}

#[derive(Args)]
pub struct ScanArgs {
    #[arg(long)]
    pub bucket: String,
    /// Key prefix to list [default: S3I_PREFIX]
    #[arg(long)]
    pub prefix: Option<String>,
    /// Queue the objects (to S3I_QUEUE_URL) instead of importing them here
    #[arg(long)]
    pub enqueue: bool,
    /// Print only the summary, as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct WorkerArgs {
    /// The queue that the bucket notifies [default: S3I_QUEUE_URL]
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// Exit after this many seconds without a message (default: run until stopped)
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<u64>,
    /// Seconds before an unfinished message is received again
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub retry_after: u64,
}

#[derive(Args)]
pub struct StatusArgs {
    /// One JSON object per claim (with --summary: the totals as one JSON object)
    #[arg(long)]
    pub json: bool,
    /// The totals instead of every claim: objects by state, the completed objects' records and
    /// events, and the DynamoDB capacity units they consumed (with their on-demand price)
    #[arg(long)]
    pub summary: bool,
}

#[derive(Args)]
pub struct SetupArgs {
    /// The bucket to watch (created if missing)
    #[arg(long)]
    pub bucket: String,
    /// The queue the bucket notifies (created if missing, with a dead-letter queue)
    #[arg(long)]
    pub queue: String,
    /// Only keys under this prefix are announced
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Announce through EventBridge instead of the bucket's queue notification: the queue
    /// admits this rule (which forwards "Object Created" to it) and the bucket's EventBridge
    /// delivery is turned on
    #[arg(long, value_name = "RULE_ARN")]
    pub eventbridge_rule_arn: Option<String>,
}

#[derive(Args)]
pub struct SendArgs {
    /// The converter file (Amplitude S3 Import format)
    #[arg(long, value_name = "CONVERTER.json")]
    pub config: PathBuf,
    /// Endpoint base URL (the emulator, or any compatible endpoint); overrides --region
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Amplitude region: us or eu
    #[arg(long, default_value = "us")]
    pub region: String,
    /// Name of the environment variable that holds the API key (never pass keys as flags)
    #[arg(long, default_value = "AMPLITUDE_API_KEY")]
    pub api_key_env: String,
    /// Send events to the Batch API (/batch) instead of HTTP V2 (/2/httpapi)
    #[arg(long)]
    pub batch_api: bool,
    /// Requests in flight at once
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Gzip request bodies
    #[arg(long)]
    pub gzip: bool,
    /// Give up on what is not confirmed after this many seconds
    #[arg(long, default_value_t = 600)]
    pub deadline_secs: u64,
    /// Bucket name used for default insert_ids
    #[arg(long, default_value = "local")]
    pub bucket: String,
    /// Object key used for default insert_ids and checked against filterPattern [default: FILE]
    #[arg(long)]
    pub key: Option<String>,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: InputLimits,
    #[arg(value_name = "FILE")]
    pub file: String,
}

#[derive(Args)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed)
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: std::net::SocketAddr,
    /// Where accepted payloads are appended as JSON lines
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The only API key accepted [default: any non-empty key]
    #[arg(long)]
    pub api_key: Option<String>,
    /// Events per second allowed per device or user; more get 429 [default: no limit]
    #[arg(long)]
    pub eps_limit: Option<u32>,
    /// Share of requests that fail with 500 (after ingesting) or 503 (before), 0–1
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Share of requests whose connection is cut after ingesting, 0–1
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Latency added to every request, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Events per request before 413
    #[arg(long, default_value_t = 2000)]
    pub max_events: usize,
    /// Seed of the fault generator
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args)]
pub struct InputLimits {
    /// Largest decompressed size of one object (e.g. 64GiB); beyond it the object fails
    #[arg(long, value_name = "SIZE", default_value = "64GiB", value_parser = parse_size)]
    pub max_decompressed_bytes: u64,
    /// Largest record (JSON line or CSV row) (e.g. 10MiB); a longer JSON line is an invalid record
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    pub max_record_bytes: u64,
}

impl InputLimits {
    pub fn limits(&self) -> Limits {
        Limits {
            max_decompressed_bytes: self.max_decompressed_bytes,
            max_record_bytes: usize::try_from(self.max_record_bytes).unwrap_or(usize::MAX),
            ..Limits::default()
        }
    }
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The converter file (Amplitude S3 Import format)
    #[arg(long, value_name = "CONVERTER.json")]
    pub config: PathBuf,
    /// Bucket name used for default insert_ids
    #[arg(long, default_value = "local")]
    pub bucket: String,
    /// Object key used for default insert_ids and checked against filterPattern [default: FILE]
    #[arg(long)]
    pub key: Option<String>,
    /// Conversion threads for JSON lines: with N >= 2, one more thread decompresses while N convert 1 MiB chunks, output in record order [default: min(2, cores)]
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub limits: InputLimits,
    /// The object's bytes; - or nothing reads standard input
    #[arg(value_name = "FILE|-")]
    pub file: Option<String>,
}

#[derive(Args)]
pub struct PreviewArgs {
    /// The converter file: a local path, or s3://bucket/key
    #[arg(long, value_name = "CONVERTER.json")]
    pub config: String,
    /// How many records to show
    #[arg(long, default_value_t = 10)]
    pub limit: u64,
    /// Print a JSON array of {"n", "source", "outcome", "payloads"|"error"}
    #[arg(long)]
    pub json: bool,
    /// Bucket name used for default insert_ids
    #[arg(long, default_value = "local")]
    pub bucket: String,
    /// Object key used for default insert_ids [default: FILE]
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub limits: InputLimits,
    /// A local file, an object (s3://bucket/key), or a prefix (s3://bucket/prefix/: its first
    /// object); objects are streamed and only the first records are read
    #[arg(value_name = "FILE|S3_URL")]
    pub file: String,
}

#[derive(Args)]
pub struct ValidateArgs {
    #[arg(long, value_name = "CONVERTER.json")]
    pub config: PathBuf,
    /// Also check that this endpoint serves every route the converter needs
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Also check against Amplitude's hosts in this region (us or eu)
    #[arg(long, conflicts_with = "endpoint")]
    pub region: Option<String>,
}
