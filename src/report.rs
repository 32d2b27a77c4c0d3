//! What happened to one object: counts that add up, the first errors, and the rejects file.

use crate::store::Capacity;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

/// How many error lines a report and a claim keep (the rejects file has them all).
pub const FIRST_ERRORS: usize = 20;
/// The longest raw record copied into the rejects file; longer ones are cut and marked.
pub const MAX_RAW_BYTES: usize = 64 * 1024;

/// What became of an object's records and payloads.
///
/// Counts are kept for confirmed records only (those before the checkpoint), so that an
/// object imported over several invocations reports each record exactly once:
/// records = converted + skipped + invalid, and payloads = sent + duplicates + rejected
/// (+ not_sent while the object is unfinished).
///
/// Displayed for a person as two lines (no trailing newline):
/// `records N: converted N, skipped N, invalid N` and
/// `payloads N: sent N, duplicates N, rejected N` (then `, not sent N` when some were not sent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Records read (lines or rows; blank lines and the CSV header are not records).
    pub records: u64,
    pub converted: u64,
    pub skipped: u64,
    pub invalid: u64,
    /// Payloads the converted records produced (events, identifies, group identifies).
    pub payloads: u64,
    pub sent: u64,
    /// Events dropped because another record sent their insert_id within 7 days.
    pub duplicates: u64,
    pub rejected: u64,
    pub not_sent: u64,
}

impl Counts {
    /// Whether the counts add up (for a finished object, `not_sent` is 0).
    pub fn add_up(&self) -> bool {
        self.records == self.converted + self.skipped + self.invalid
            && self.payloads == self.sent + self.duplicates + self.rejected + self.not_sent
    }

    pub fn add(&mut self, other: &Counts) {
        self.records += other.records;
        self.converted += other.converted;
        self.skipped += other.skipped;
        self.invalid += other.invalid;
        self.payloads += other.payloads;
        self.sent += other.sent;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.not_sent += other.not_sent;
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "records {}: converted {}, skipped {}, invalid {}\npayloads {}: sent {}, duplicates {}, rejected {}",
            self.records,
            self.converted,
            self.skipped,
            self.invalid,
            self.payloads,
            self.sent,
            self.duplicates,
            self.rejected
        )?;
        if self.not_sent > 0 {
            write!(f, ", not sent {}", self.not_sent)?;
        }
        Ok(())
    }
}

/// What a claim carries between invocations of one object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub counts: Counts,
    /// The rejects files written so far (keys in the reports bucket).
    pub parts: Vec<String>,
    pub first_errors: Vec<String>,
    pub invocations: u32,
    /// Epoch milliseconds of the first invocation.
    pub started_ms: i64,
    /// The content the import started on (pinned at its start): every later invocation reads
    /// exactly this content, or stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<crate::source::Content>,
    /// Set when the import follows a change of content under the key: default insert_ids are
    /// `<bucket>/<key>@<tag>:<n>`, so that the earlier content's ids do not swallow these.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_tag: Option<String>,
    /// Bytes read from the object by each invocation (see [`Report::bytes_read`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bytes_read: Vec<u64>,
    /// Where a later invocation starts reading (JSON lines and CSV): a record at or before the
    /// checkpoint and where it starts in the stored object, so that the confirmed part is not
    /// read again. One that does not parse (another version's) is left out, not an error.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_restart"
    )]
    pub restart: Option<crate::decode::Restart>,
    /// A gzip member or zstd frame was too large to hold back until its checksum was checked:
    /// each later invocation checks what it reads by a pass of its own first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify_first: bool,
    /// DynamoDB capacity units of the object's invocations so far (see [`Report::dynamodb`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub capacity: Capacity,
}

fn is_zero(c: &Capacity) -> bool {
    *c == Capacity::default()
}

fn lenient_restart<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::decode::Restart>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

impl Progress {
    /// Reads a claim's stored progress; text that does not parse (empty: nothing yet; another
    /// version's) is a fresh start.
    pub fn parse(text: &str) -> Progress {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// Whether nothing has been recorded yet (no invocation took the object).
    pub fn is_fresh(&self) -> bool {
        *self == Progress::default()
    }
}

/// What a completed claim keeps: the counts, where the report is, the converter's version and
/// how many invocations the object took (`s3-import status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub counts: Counts,
    /// The report's location (`s3://…`); `None` when none was written.
    pub report: Option<String>,
    pub config_version: String,
    pub invocations: u32,
    /// DynamoDB capacity units of the object's import (see [`Report::dynamodb`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub capacity: Capacity,
}

impl Summary {
    /// Reads a stored summary; text that does not parse gives an empty one.
    pub fn parse(text: &str) -> Summary {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// The per-object report, written as JSON under the reports prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub bucket: String,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `COMPLETED` or `FAILED`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The converter file's ETag.
    pub config_version: String,
    pub counts: Counts,
    pub invocations: u32,
    pub started_ms: i64,
    pub finished_ms: i64,
    /// Requests to the endpoint and to the dedupe table in the last invocation.
    pub http_requests: u64,
    pub http_retries: u64,
    pub throttled: u64,
    pub dedupe_requests: u64,
    /// DynamoDB capacity units of the object's requests over all its invocations (its claim,
    /// the dedupe of its events, the release of its rejected events' marks), counted by the
    /// on-demand rules as the requests were made, up to this report (the claim's final write,
    /// 1 write unit, follows it; an invocation cut off or retried before saving its progress
    /// is not in it).
    pub dynamodb: Capacity,
    /// Bytes read from the object by each invocation, in order (the first 1,000; later ones
    /// add to the last): the stream up to where reading stopped (JSON lines, CSV; a resumed
    /// stream reads from its first byte again), or the footer and row groups fetched by ranged
    /// reads (Parquet; a resume fetches only the row groups from its checkpoint's on).
    pub bytes_read: Vec<u64>,
    /// Where the invalid and rejected records are (s3:// URLs), in record order.
    pub rejects: Vec<String>,
    pub first_errors: Vec<String>,
}

/// The invalid and rejected records of one invocation, one JSON line each, in a temp file.
pub struct RejectsFile {
    path: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    pub lines: u64,
}

#[derive(Serialize)]
struct RejectLine<'a> {
    record: u64,
    outcome: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

impl RejectsFile {
    pub fn new(tag: &str) -> RejectsFile {
        let safe: String = tag
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        RejectsFile {
            path: std::env::temp_dir().join(format!("s3-import-rejects-{safe}.jsonl")),
            out: None,
            lines: 0,
        }
    }

    /// One rejects line as text: an invalid record with its raw text, or a rejected
    /// payload with the JSON that was sent.
    pub fn line(
        n: u64,
        outcome: &str,
        reason: &str,
        raw: Option<&[u8]>,
        payload: Option<&str>,
    ) -> String {
        let (raw, truncated) = match raw {
            Some(r) if r.len() > MAX_RAW_BYTES => {
                let mut cut = MAX_RAW_BYTES;
                while cut > 0 && (r[cut] & 0xC0) == 0x80 {
                    cut -= 1;
                }
                (Some(String::from_utf8_lossy(&r[..cut])), true)
            }
            Some(r) => (Some(String::from_utf8_lossy(r)), false),
            None => (None, false),
        };
        let payload =
            payload.and_then(|p| serde_json::from_str::<&serde_json::value::RawValue>(p).ok());
        serde_json::to_string(&RejectLine {
            record: n,
            outcome,
            reason,
            raw: raw.as_deref(),
            payload,
            truncated,
        })
        .unwrap_or_default()
    }

    pub fn write(&mut self, line: &str) -> std::io::Result<()> {
        if self.out.is_none() {
            self.out = Some(std::io::BufWriter::new(std::fs::File::create(&self.path)?));
        }
        if let Some(out) = &mut self.out {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        self.lines += 1;
        Ok(())
    }

    /// Closes the file; its path when it holds any line.
    pub fn finish(&mut self) -> std::io::Result<Option<PathBuf>> {
        match self.out.take() {
            Some(mut out) => {
                out.flush()?;
                Ok(Some(self.path.clone()))
            }
            None => Ok(None),
        }
    }
}

impl Drop for RejectsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten records that add up.
    fn sample() -> Counts {
        Counts {
            records: 10,
            converted: 7,
            skipped: 2,
            invalid: 1,
            payloads: 8,
            sent: 5,
            duplicates: 2,
            rejected: 1,
            not_sent: 0,
        }
    }

    #[test]
    fn counts_add_up_only_when_every_record_and_payload_has_one_outcome() {
        let mut counts = sample();
        assert!(counts.add_up());
        counts.sent -= 1;
        assert!(!counts.add_up());
        counts.not_sent = 1;
        assert!(counts.add_up());
    }

    #[test]
    fn counts_display_as_two_lines_naming_not_sent_only_when_some_were_not_sent() {
        let mut counts = sample();
        assert_eq!(
            counts.to_string(),
            "records 10: converted 7, skipped 2, invalid 1\n\
             payloads 8: sent 5, duplicates 2, rejected 1"
        );
        counts.sent = 4;
        counts.not_sent = 1;
        assert_eq!(
            counts.to_string(),
            "records 10: converted 7, skipped 2, invalid 1\n\
             payloads 8: sent 4, duplicates 2, rejected 1, not sent 1"
        );
        assert_eq!(
            Counts::default().to_string(),
            "records 0: converted 0, skipped 0, invalid 0\npayloads 0: sent 0, duplicates 0, rejected 0"
        );
    }

    #[test]
    fn reject_lines_keep_the_raw_record_and_cut_long_ones_on_a_char_boundary() {
        let line = RejectsFile::line(7, "invalid", "bad JSON", Some(b"{\"a\":"), None);
        assert_eq!(
            line,
            r#"{"record":7,"outcome":"invalid","reason":"bad JSON","raw":"{\"a\":"}"#
        );
        let line = RejectsFile::line(
            3,
            "rejected",
            "invalid field time",
            None,
            Some(r#"{"event_type":"x"}"#),
        );
        assert_eq!(
            line,
            r#"{"record":3,"outcome":"rejected","reason":"invalid field time","payload":{"event_type":"x"}}"#
        );
        let long = "é".repeat(MAX_RAW_BYTES);
        let line = RejectsFile::line(1, "invalid", "too long", Some(long.as_bytes()), None);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["truncated"], true);
        assert!(value["raw"].as_str().unwrap().chars().all(|ch| ch == 'é'));
    }
}
