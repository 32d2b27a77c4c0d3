//! The importer's settings from environment variables, read and checked once at start.

use std::time::Duration;

use crate::decode::Limits;
use crate::sink::{EventApi, Region, SinkSettings};

/// The claims table when `S3I_CLAIMS_TABLE` is not set.
pub const DEFAULT_CLAIMS_TABLE: &str = "s3-import-claims";
/// The dedupe table when `S3I_DEDUPE_TABLE` is not set (`off` turns dedupe off).
pub const DEFAULT_DEDUPE_TABLE: &str = "s3-import-dedupe";

/// The DynamoDB tables of the importer, as `S3I_CLAIMS_TABLE` and `S3I_DEDUPE_TABLE` name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    pub claims: String,
    /// `None` when dedupe is off (`S3I_DEDUPE_TABLE=off`).
    pub dedupe: Option<String>,
}

impl Tables {
    /// Reads the process environment (an empty variable counts as unset).
    pub fn from_env() -> Tables {
        Self::from_lookup(&env_lookup)
    }

    /// Reads the table names through `get` (the environment, or a table in tests).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Tables {
        Tables {
            claims: get("S3I_CLAIMS_TABLE").unwrap_or_else(|| DEFAULT_CLAIMS_TABLE.into()),
            dedupe: match get("S3I_DEDUPE_TABLE") {
                Some(t) if t == "off" => None,
                Some(t) => Some(t),
                None => Some(DEFAULT_DEDUPE_TABLE.to_string()),
            },
        }
    }
}

/// The Amplitude region named `us` or `eu` (lower case, as `S3I_REGION` takes it).
pub fn region_named(name: &str) -> Option<Region> {
    match name {
        "us" => Some(Region::Us),
        "eu" => Some(Region::Eu),
        _ => None,
    }
}

/// A region name that is neither `us` nor `eu`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the region must be us or eu, got {0:?}")]
pub struct UnknownRegion(pub String);

/// Where payloads go: `endpoint` when one is given (the region is then not looked at),
/// otherwise the Amplitude URL of the region named `region`.
pub fn base_url(endpoint: Option<String>, region: &str) -> Result<String, UnknownRegion> {
    match endpoint {
        Some(url) => Ok(url),
        None => region_named(region)
            .map(|r| r.base_url().to_string())
            .ok_or_else(|| UnknownRegion(region.to_string())),
    }
}

/// A location that is not `s3://bucket[/key]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` is not an s3://bucket/key location")]
    NotS3(String),
    #[error("`{0}` names no bucket")]
    NoBucket(String),
    #[error("`{0}` names no object")]
    NoObject(String),
}

/// Conversion threads when none are asked for: 2 (one decompresses, one converts), or 1 on
/// a single core. In Lambda, from the CPU the function really has (see [`default_threads_for`]).
pub fn default_threads() -> usize {
    default_threads_for(lambda_memory_mb(&env_lookup), cores())
}

/// The cores this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Lambda's memory per vCPU: a function gets one vCPU's worth of CPU time at 1,769 MB and two
/// at 3,538 MB (CPU is allotted in proportion to memory; below 1,769 MB it is a fraction).
pub const LAMBDA_MB_PER_VCPU: u64 = 1769;

/// The function's memory (MB) when running in Lambda (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`).
pub fn lambda_memory_mb(get: &dyn Fn(&str) -> Option<String>) -> Option<u64> {
    get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|m| m.trim().parse().ok())
}

/// Conversion threads for a Lambda function of `memory_mb` (else for `cores`): two only when
/// there are two vCPUs' worth of time (3,538 MB and more), since the second thread of a
/// function with one vCPU's worth only shares it.
pub fn default_threads_for(memory_mb: Option<u64>, cores: usize) -> usize {
    match memory_mb {
        Some(mb) => ((mb / LAMBDA_MB_PER_VCPU) as usize).clamp(1, 2),
        None => cores.clamp(1, 2),
    }
}

/// Memory set aside per object imported at once: the sender's batches in flight (up to
/// 2 × `S3I_MAX_IN_FLIGHT` × 2,000 events), the records between the reader and the sender,
/// the decoder's buffers, with room to spare.
pub const MB_PER_OBJECT: u64 = 160;

/// Objects of one invocation imported at once for a Lambda function of `memory_mb`: one per
/// 160 MB, at least 1 and at most 10 (a batch from SQS holds at most 10 messages): 10 at
/// 1,769 MB. Outside Lambda, 10. Small objects wait on round trips, so even one vCPU keeps
/// several busy; a large object's conversion shares the CPU with the others.
pub fn default_object_concurrency_for(memory_mb: Option<u64>) -> usize {
    match memory_mb {
        Some(mb) => ((mb / MB_PER_OBJECT) as usize).clamp(1, 10),
        None => 10,
    }
}

/// Inflated bytes held back until their checksum is checked, shared by the objects imported
/// at once, when `S3I_HOLD_MAX_BYTES` is not set: most of Lambda's default 512 MB of
/// ephemeral storage.
pub const DEFAULT_HOLD_BYTES: u64 = 384 << 20;

/// The source id when `S3I_SOURCE` is not set. It never depends on the prefix or the reports
/// location: claims and dedupe keys carry it, so a change of it makes every object new.
pub const DEFAULT_SOURCE: &str = "default";

/// How long a scan's queue mark lasts when `S3I_SCAN_QUEUED_SECS` is not set: a day.
pub const DEFAULT_SCAN_QUEUED_SECS: u64 = 86_400;

/// How long a scan's queue mark lasts before its message is confirmed sent, when
/// `S3I_SCAN_PENDING_SECS` is not set: longer than a SendMessageBatch takes, short enough that
/// a scan that died before sending is made good by the next scan within minutes.
pub const DEFAULT_SCAN_PENDING_SECS: u64 = 60;

/// The scan's margin on last-modified times when `S3I_SCAN_MARGIN_SECS` is not set: an hour,
/// longer than uploads take (a 5 TB multipart upload at 1.5 GB/s).
pub const DEFAULT_SCAN_MARGIN_SECS: u64 = 3_600;

/// How often a scan reads every claim when `S3I_SCAN_FULL_EVERY_SECS` is not set: daily.
pub const DEFAULT_SCAN_FULL_EVERY_SECS: u64 = 86_400;

/// A variable of the process environment; an empty one counts as unset.
fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// An `s3://bucket/prefix` location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub key: String,
}

impl S3Url {
    pub fn parse(text: &str) -> Result<S3Url, UrlError> {
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| UrlError::NotS3(text.to_string()))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(UrlError::NoBucket(text.to_string()));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Everything the importer needs, whatever runs it (Lambda, worker, CLI).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Scopes claims and dedupe keys, so importers can share tables (`S3I_SOURCE`).
    pub source: String,
    /// The converter file (`S3I_CONVERTER`).
    pub converter: S3Url,
    /// Only keys under this prefix are imported (`S3I_PREFIX`).
    pub prefix: String,
    /// Only keys that match this regex (whole key) are imported (`S3I_FILTER_PATTERN`).
    pub filter: Option<fancy_regex::Regex>,
    /// Whether keys with a path segment (after the prefix) starting with `_` or `.` are
    /// imported (`S3I_HIDDEN_FILES=import`); by default they are ignored, as Hadoop, Spark and
    /// Hive do: `_temporary/` partial files, `_SUCCESS` markers, `.crc` side files, `_delta_log/`.
    pub import_hidden: bool,
    /// Whether a COMPLETED object with nothing invalid, rejected or unsent gets a report file
    /// (`S3I_REPORTS_FOR`: `all`, the default, or `problems`); failed and problem objects always do.
    pub reports_for_clean: bool,
    /// How long a compiled converter is used without asking S3 whether its file changed
    /// (`S3I_CONVERTER_REUSE_SECS`, default 30; 0 asks before every object).
    pub converter_reuse: Duration,
    /// Where reports go (`S3I_REPORTS`); never imported, whatever the prefix.
    pub reports: S3Url,
    pub claims_table: String,
    /// `None` when dedupe is off (`S3I_DEDUPE_TABLE=off`).
    pub dedupe_table: Option<String>,
    /// Dedupe calls (of 500 events) in flight at once (`S3I_DEDUPE_IN_FLIGHT`).
    pub dedupe_in_flight: usize,
    /// Which events the dedupe table checks (`S3I_DEDUPE`: `auto`, the default, only ids the
    /// converter sets; `all`; `off` as `S3I_DEDUPE_TABLE=off`).
    pub dedupe_mode: crate::dedupe::DedupeMode,
    /// Where continuation messages go when an object needs another invocation
    /// (`S3I_QUEUE_URL`); without it the message is retried by SQS.
    pub queue_url: Option<String>,
    pub sink: SinkSettings,
    pub limits: Limits,
    /// Conversion threads (`S3I_THREADS`): 2 decompresses on one core and converts on another.
    pub threads: usize,
    /// Stop reading this long before the invocation's deadline (`S3I_STOP_MARGIN_SECS`).
    pub stop_margin: Duration,
    /// The longest one run may take outside Lambda (worker, CLI) before it checkpoints
    /// and continues (`S3I_MAX_RUN_SECS`).
    pub max_run: Duration,
    /// Added to the deadline for the claim's lease (`S3I_LEASE_MARGIN_SECS`).
    pub lease_margin: Duration,
    /// Confirmed progress is saved on the claim at least this often (`S3I_CHECKPOINT_SECS`),
    /// so that a crash re-sends at most about this much work.
    pub checkpoint_every: Duration,
    /// Inflate a compressed object once and check its checksums before any record is sent
    /// (`S3I_VERIFY_COMPRESSED`, default on; off only for trusted writers).
    pub verify_compressed: bool,
    /// Inflated bytes of one gzip member or zstd frame held back (memory, then a temporary
    /// file) until its checksum is checked (`S3I_HOLD_MAX_BYTES`; default: 384 MiB of the
    /// ephemeral storage shared by the objects imported at once). A larger member or frame
    /// is checked by a pass of its own before its records are read.
    pub hold_max_bytes: u64,
    /// Objects of one invocation imported at once (`S3I_OBJECT_CONCURRENCY`; default from the
    /// function's memory, see [`default_object_concurrency_for`]).
    pub object_concurrency: usize,
    /// How long a scan's queue mark keeps the next scans from queueing the object again
    /// (`S3I_SCAN_QUEUED_SECS`): the time its message may wait in the queue.
    pub scan_queued: Duration,
    /// How long a scan's first queue mark lasts, before its message is confirmed sent
    /// (`S3I_SCAN_PENDING_SECS`): a scan that dies in between strands an object no longer.
    pub scan_pending: Duration,
    /// A scan reads the claims only of objects last modified after the last complete scan
    /// began, less this margin (`S3I_SCAN_MARGIN_SECS`): S3 dates an object by the start of
    /// its upload (a multipart upload's initiation), which may precede that scan although the
    /// object was listed only after it.
    pub scan_margin: Duration,
    /// How often a scan reads every object's claim anyway, the safety net for uploads longer
    /// than the margin (`S3I_SCAN_FULL_EVERY_SECS`; 0: every scan reads every claim).
    pub scan_full_every: Duration,
}

fn number<T: std::str::FromStr>(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    problems: &mut Vec<String>,
) -> T {
    match get(name) {
        None => default,
        Some(v) => v.trim().parse().unwrap_or_else(|_| {
            problems.push(format!("{name}: `{v}` is not a valid number"));
            default
        }),
    }
}

fn flag(get: &dyn Fn(&str) -> Option<String>, name: &str, problems: &mut Vec<String>) -> bool {
    match get(name).as_deref().map(str::trim) {
        None | Some("") | Some("0") | Some("false") | Some("no") => false,
        Some("1") | Some("true") | Some("yes") => true,
        Some(v) => {
            problems.push(format!("{name}: `{v}` is not true or false"));
            false
        }
    }
}

impl Settings {
    /// Reads the process environment (an empty variable counts as unset).
    pub fn from_env() -> Result<Settings, Vec<String>> {
        Self::from_lookup(&env_lookup)
    }

    /// Reads settings through `get` (the environment, or a table in tests). Every problem is
    /// listed at once, naming the variable; the README's "Settings" table lists them all.
    /// Long on purpose: one short paragraph per variable, in the README's order.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Vec<String>> {
        let mut problems = Vec::new();
        let s3_location = |name: &str, problems: &mut Vec<String>| match get(name) {
            None => {
                problems.push(format!("{name} is required (an s3://bucket/key location)"));
                None
            }
            Some(v) => S3Url::parse(&v)
                .map_err(|e| problems.push(format!("{name}: {e}")))
                .ok(),
        };
        let converter = s3_location("S3I_CONVERTER", &mut problems);
        let reports = s3_location("S3I_REPORTS", &mut problems);
        let prefix = get("S3I_PREFIX").unwrap_or_default();
        let hidden = get("S3I_HIDDEN_FILES").unwrap_or_default();
        let import_hidden = match hidden.to_ascii_lowercase().as_str() {
            "" | "ignore" => false,
            "import" => true,
            _ => {
                problems.push(format!(
                    "S3I_HIDDEN_FILES must be ignore or import, got {hidden:?}"
                ));
                false
            }
        };
        let filter = get("S3I_FILTER_PATTERN").and_then(|p| {
            fancy_regex::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| problems.push(format!("S3I_FILTER_PATTERN: {e}")))
                .ok()
        });
        if let Some(r) = &reports {
            if !prefix.is_empty() && r.key.starts_with(&prefix) {
                problems.push(format!(
                    "S3I_REPORTS ({r}) is under S3I_PREFIX `{prefix}`: reports would trigger imports of themselves"
                ));
            }
        }
        if let Some(c) = &converter {
            if c.key.is_empty() || c.key.ends_with('/') {
                problems.push(format!("S3I_CONVERTER ({c}) names no file"));
            }
        }

        let api_key = get("AMPLITUDE_API_KEY");
        if api_key.is_none() {
            problems.push(
                "AMPLITUDE_API_KEY (or S3I_API_KEY_SECRET, a Secrets Manager secret) is required"
                    .into(),
            );
        }
        let base_url = match get("S3I_ENDPOINT") {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                problems.push(format!("S3I_ENDPOINT: `{url}` is not an http(s) URL"));
                String::new()
            }
            endpoint => {
                let region = get("S3I_REGION").unwrap_or_else(|| "us".into());
                base_url(endpoint, &region).unwrap_or_else(|other| {
                    problems.push(format!("S3I_REGION: `{}` is not us or eu", other.0));
                    String::new()
                })
            }
        };
        let mut sink = SinkSettings::new(api_key.unwrap_or_default(), base_url);
        if flag(get, "S3I_BATCH_API", &mut problems) {
            sink.event_api = EventApi::Batch;
        }
        sink.gzip = flag(get, "S3I_GZIP", &mut problems);
        sink.max_in_flight = number(get, "S3I_MAX_IN_FLIGHT", 8usize, &mut problems);
        sink.batch_events = number(get, "S3I_BATCH_EVENTS", 2000usize, &mut problems);
        sink.max_attempts = number(get, "S3I_MAX_ATTEMPTS", 8u32, &mut problems);
        sink.throttle_pause =
            Duration::from_secs(number(get, "S3I_THROTTLE_PAUSE_SECS", 30u64, &mut problems));
        if sink.max_in_flight == 0 || sink.batch_events == 0 || sink.max_attempts == 0 {
            problems.push(
                "S3I_MAX_IN_FLIGHT, S3I_BATCH_EVENTS and S3I_MAX_ATTEMPTS must be at least 1"
                    .into(),
            );
        }

        let defaults = Limits::default();
        let limits = Limits {
            max_decompressed_bytes: number(
                get,
                "S3I_MAX_DECOMPRESSED_BYTES",
                defaults.max_decompressed_bytes,
                &mut problems,
            ),
            max_record_bytes: number(
                get,
                "S3I_MAX_RECORD_BYTES",
                defaults.max_record_bytes,
                &mut problems,
            ),
            hold: None,
            max_decompression_ratio: number(
                get,
                "S3I_MAX_DECOMPRESSION_RATIO",
                defaults.max_decompression_ratio,
                &mut problems,
            ),
        };
        let memory_mb = lambda_memory_mb(get);
        let threads = number(
            get,
            "S3I_THREADS",
            default_threads_for(memory_mb, cores()),
            &mut problems,
        )
        .max(1);
        let tables = Tables::from_lookup(get);
        let dedupe_in_flight = number(get, "S3I_DEDUPE_IN_FLIGHT", 8usize, &mut problems).max(1);
        let dedupe_setting = get("S3I_DEDUPE").unwrap_or_default();
        let dedupe_off = dedupe_setting.eq_ignore_ascii_case("off");
        let dedupe_mode = if dedupe_off {
            crate::dedupe::DedupeMode::default()
        } else {
            crate::dedupe::DedupeMode::parse(&dedupe_setting).unwrap_or_else(|| {
                problems.push(format!(
                    "S3I_DEDUPE must be auto, all or off, got {dedupe_setting:?}"
                ));
                crate::dedupe::DedupeMode::default()
            })
        };
        let secs = |name: &str, default: u64, problems: &mut Vec<String>| {
            Duration::from_secs(number(get, name, default, problems))
        };
        let stop_margin = secs("S3I_STOP_MARGIN_SECS", 20, &mut problems);
        let converter_reuse = secs("S3I_CONVERTER_REUSE_SECS", 30, &mut problems);
        let reports_for = get("S3I_REPORTS_FOR").unwrap_or_default();
        let reports_for_clean = match reports_for.to_ascii_lowercase().as_str() {
            "" | "all" => true,
            "problems" => false,
            _ => {
                problems.push(format!(
                    "S3I_REPORTS_FOR must be all or problems, got {reports_for:?}"
                ));
                true
            }
        };
        let max_run = secs("S3I_MAX_RUN_SECS", 840, &mut problems);
        let lease_margin = secs("S3I_LEASE_MARGIN_SECS", 60, &mut problems);
        let checkpoint_every =
            secs("S3I_CHECKPOINT_SECS", 5, &mut problems).max(Duration::from_secs(1));
        let verify_compressed = get("S3I_VERIFY_COMPRESSED").is_none()
            || flag(get, "S3I_VERIFY_COMPRESSED", &mut problems);
        let object_concurrency = number(
            get,
            "S3I_OBJECT_CONCURRENCY",
            default_object_concurrency_for(memory_mb),
            &mut problems,
        )
        .max(1);
        let hold_max_bytes = number(
            get,
            "S3I_HOLD_MAX_BYTES",
            DEFAULT_HOLD_BYTES / object_concurrency as u64,
            &mut problems,
        );
        let scan_queued = secs(
            "S3I_SCAN_QUEUED_SECS",
            DEFAULT_SCAN_QUEUED_SECS,
            &mut problems,
        );
        let scan_pending = secs(
            "S3I_SCAN_PENDING_SECS",
            DEFAULT_SCAN_PENDING_SECS,
            &mut problems,
        )
        .max(Duration::from_secs(1));
        let scan_margin = secs(
            "S3I_SCAN_MARGIN_SECS",
            DEFAULT_SCAN_MARGIN_SECS,
            &mut problems,
        );
        let scan_full_every = secs(
            "S3I_SCAN_FULL_EVERY_SECS",
            DEFAULT_SCAN_FULL_EVERY_SECS,
            &mut problems,
        );
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Settings {
            source: get("S3I_SOURCE").unwrap_or_else(|| DEFAULT_SOURCE.into()),
            converter: converter.expect("checked"),
            prefix,
            import_hidden,
            filter,
            reports: reports.expect("checked"),
            claims_table: tables.claims,
            dedupe_table: tables.dedupe.filter(|_| !dedupe_off),
            dedupe_mode,
            dedupe_in_flight,
            queue_url: get("S3I_QUEUE_URL"),
            sink,
            limits,
            threads,
            stop_margin,
            max_run,
            lease_margin,
            checkpoint_every,
            reports_for_clean,
            converter_reuse,
            verify_compressed,
            hold_max_bytes,
            object_concurrency,
            scan_queued,
            scan_pending,
            scan_margin,
            scan_full_every,
        })
    }

    /// Why a key is not to be imported under these settings, if it is not.
    pub fn excludes(&self, bucket: &str, key: &str) -> Option<String> {
        if bucket == self.reports.bucket && key.starts_with(&self.reports.key) {
            return Some(format!("under the reports location {}", self.reports));
        }
        if bucket == self.converter.bucket && key == self.converter.key {
            return Some("the converter file itself".into());
        }
        if !key.starts_with(&self.prefix) {
            return Some(format!("outside the prefix `{}`", self.prefix));
        }
        if !self.import_hidden {
            // Segments wholly inside the prefix are the operator's choice, not hidden files.
            let mut start = 0;
            let hidden = key.split('/').find(|seg| {
                let end = start + seg.len();
                start = end + 1;
                end > self.prefix.len() && (seg.starts_with('_') || seg.starts_with('.'))
            });
            if let Some(seg) = hidden {
                return Some(format!(
                    "a hidden file (`{seg}`: a path segment starting with `_` or `.`, as Spark's \
                     `_temporary/`, `_SUCCESS` or `.crc` files; S3I_HIDDEN_FILES=import takes them)"
                ));
            }
        }
        if let Some(f) = &self.filter {
            if !f.is_match(key).unwrap_or(false) {
                return Some(format!(
                    "does not match the filter pattern `{}`",
                    f.as_str()
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
