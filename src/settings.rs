//! Settings from environment variables, read and checked once at start. Every problem is
//! listed at once, naming the variable. The README's "Settings" table lists them all.

use std::time::Duration;

use crate::decode::Limits;
use crate::sink::{EventApi, Region, SinkSettings};

/// An `s3://bucket/prefix` location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub key: String,
}

impl S3Url {
    pub fn parse(text: &str) -> Result<S3Url, String> {
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{text}` is not an s3://bucket/key location"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{text}` names no bucket"));
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
    /// Where reports go (`S3I_REPORTS`); never imported, whatever the prefix.
    pub reports: S3Url,
    pub claims_table: String,
    /// `None` when dedupe is off (`S3I_DEDUPE_TABLE=off`).
    pub dedupe_table: Option<String>,
    /// Dedupe calls (of 500 events) in flight at once (`S3I_DEDUPE_IN_FLIGHT`).
    pub dedupe_in_flight: usize,
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
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, Vec<String>> {
        Self::from_lookup(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `get` (the environment, or a table in tests).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Vec<String>> {
        let mut problems = Vec::new();
        let s3 = |name: &str, problems: &mut Vec<String>| match get(name) {
            None => {
                problems.push(format!("{name} is required (an s3://bucket/key location)"));
                None
            }
            Some(v) => S3Url::parse(&v)
                .map_err(|e| problems.push(format!("{name}: {e}")))
                .ok(),
        };
        let converter = s3("S3I_CONVERTER", &mut problems);
        let reports = s3("S3I_REPORTS", &mut problems);
        let prefix = get("S3I_PREFIX").unwrap_or_default();
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
        let base_url = match (get("S3I_ENDPOINT"), get("S3I_REGION").as_deref()) {
            (Some(url), _) if url.starts_with("http://") || url.starts_with("https://") => url,
            (Some(url), _) => {
                problems.push(format!("S3I_ENDPOINT: `{url}` is not an http(s) URL"));
                String::new()
            }
            (None, None | Some("us")) => Region::Us.base_url().to_string(),
            (None, Some("eu")) => Region::Eu.base_url().to_string(),
            (None, Some(other)) => {
                problems.push(format!("S3I_REGION: `{other}` is not us or eu"));
                String::new()
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
            max_decompression_ratio: number(
                get,
                "S3I_MAX_DECOMPRESSION_RATIO",
                defaults.max_decompression_ratio,
                &mut problems,
            ),
        };
        let threads = number(
            get,
            "S3I_THREADS",
            std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            &mut problems,
        )
        .max(1);
        let dedupe_table = match get("S3I_DEDUPE_TABLE") {
            Some(t) if t == "off" => None,
            Some(t) => Some(t),
            None => Some("s3-import-dedupe".to_string()),
        };
        let dedupe_in_flight = number(get, "S3I_DEDUPE_IN_FLIGHT", 8usize, &mut problems).max(1);
        let secs = |name: &str, default: u64, problems: &mut Vec<String>| {
            Duration::from_secs(number(get, name, default, problems))
        };
        let stop_margin = secs("S3I_STOP_MARGIN_SECS", 20, &mut problems);
        let max_run = secs("S3I_MAX_RUN_SECS", 840, &mut problems);
        let lease_margin = secs("S3I_LEASE_MARGIN_SECS", 60, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Settings {
            source: get("S3I_SOURCE").unwrap_or_else(|| "default".into()),
            converter: converter.expect("checked"),
            prefix,
            filter,
            reports: reports.expect("checked"),
            claims_table: get("S3I_CLAIMS_TABLE").unwrap_or_else(|| "s3-import-claims".into()),
            dedupe_table,
            dedupe_in_flight,
            queue_url: get("S3I_QUEUE_URL"),
            sink,
            limits,
            threads,
            stop_margin,
            max_run,
            lease_margin,
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
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, Vec<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(&|k| map.get(k).cloned())
    }

    const BASE: &[(&str, &str)] = &[
        ("S3I_CONVERTER", "s3://config/converter.json"),
        ("S3I_REPORTS", "s3://data/s3-import-reports/"),
        ("AMPLITUDE_API_KEY", "k"),
        ("S3I_PREFIX", "events/"),
    ];

    #[test]
    fn every_problem_is_listed_with_its_variable() {
        let problems = from(&[
            ("S3I_CONVERTER", "config/converter.json"),
            ("S3I_MAX_IN_FLIGHT", "many"),
            ("S3I_REGION", "mars"),
            ("S3I_GZIP", "perhaps"),
            ("S3I_MAX_DECOMPRESSION_RATIO", "1000x"),
        ])
        .unwrap_err();
        let text = problems.join("\n");
        for want in [
            "S3I_CONVERTER: `config/converter.json` is not an s3://bucket/key location",
            "S3I_REPORTS is required",
            "AMPLITUDE_API_KEY (or S3I_API_KEY_SECRET, a Secrets Manager secret) is required",
            "S3I_MAX_IN_FLIGHT: `many` is not a valid number",
            "S3I_REGION: `mars` is not us or eu",
            "S3I_GZIP: `perhaps` is not true or false",
            "S3I_MAX_DECOMPRESSION_RATIO: `1000x` is not a valid number",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
    }

    #[test]
    fn reports_under_the_watched_prefix_are_refused_and_excluded() {
        let mut pairs = BASE.to_vec();
        pairs.retain(|p| p.0 != "S3I_REPORTS");
        pairs.push(("S3I_REPORTS", "s3://data/events/reports/"));
        assert!(from(&pairs).unwrap_err()[0].contains("would trigger imports of themselves"));

        let s = from(BASE).unwrap();
        assert_eq!(s.excludes("data", "events/a.json"), None);
        assert!(s.excludes("data", "s3-import-reports/x.json").is_some());
        assert!(s
            .excludes("data", "other/a.json")
            .unwrap()
            .contains("outside the prefix"));
        assert!(s.excludes("config", "converter.json").is_some());
        let mut pairs = BASE.to_vec();
        pairs.push(("S3I_FILTER_PATTERN", r".*\.json(\.gz)?"));
        let s = from(&pairs).unwrap();
        assert_eq!(s.excludes("data", "events/a.json.gz"), None);
        assert!(s.excludes("data", "events/a.csv").is_some());
    }

    #[test]
    fn defaults_a_user_would_accept() {
        let s = from(BASE).unwrap();
        assert_eq!(s.sink.base_url, "https://api2.amplitude.com");
        assert_eq!(s.claims_table, "s3-import-claims");
        assert_eq!(s.dedupe_table.as_deref(), Some("s3-import-dedupe"));
        assert_eq!(s.source, "default");
        assert!(format!("{:?}", s.sink).contains("<redacted>"));
        assert_eq!(s.limits.max_decompression_ratio, 1000);
    }

    #[test]
    fn the_decompression_ratio_cap_can_be_raised_or_turned_off() {
        for (value, want) in [("5000", 5000), (" 0 ", 0)] {
            let mut pairs = BASE.to_vec();
            pairs.push(("S3I_MAX_DECOMPRESSION_RATIO", value));
            assert_eq!(from(&pairs).unwrap().limits.max_decompression_ratio, want);
        }
        let mut pairs = BASE.to_vec();
        pairs.push(("S3I_MAX_DECOMPRESSION_RATIO", "-1"));
        assert!(from(&pairs).unwrap_err()[0].contains("S3I_MAX_DECOMPRESSION_RATIO"));
    }
}
