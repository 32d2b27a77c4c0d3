//! `send`: converts a local file and delivers its payloads, with the pipeline's record step
//! (`pipeline::record`) and the report's counts.

use std::fmt::Write as _;
use std::io::Read;
use std::ops::ControlFlow;

use serde::{Serialize, Serializer};

use super::*;
use crate::pipeline::record::{convert_record, RecordResult};

/// The outcome of `send`: what conversion and delivery made of every record.
///
/// As JSON (`send --json`), the counts' keys come first, at the top level, then `fatal` (when
/// delivery stopped) and `errors`. `duplicates` appears only when it is not 0, which it always
/// is: `send` has no dedupe table, the endpoint absorbs a second send of an insert_id.
#[derive(Debug, Default, Serialize)]
pub struct SendSummary {
    #[serde(flatten, serialize_with = "counts_without_zero_duplicates")]
    pub counts: Counts,
    /// Why delivery stopped before the end, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fatal: Option<String>,
    /// The first problems, with their record numbers.
    pub errors: Vec<String>,
}

/// `counts` as their JSON object (in field order), without `duplicates` when it is 0.
fn counts_without_zero_duplicates<S: Serializer>(
    counts: &Counts,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut value = serde_json::to_value(counts).map_err(serde::ser::Error::custom)?;
    if counts.duplicates == 0 {
        if let Some(fields) = value.as_object_mut() {
            fields.shift_remove("duplicates");
        }
    }
    value.serialize(serializer)
}

const MAX_ERRORS: usize = 20;

/// Converts a local file and delivers its payloads (`send`): conversion runs on a blocking
/// thread and feeds the sender through a bounded channel, so memory stays bounded.
pub async fn send<R: Read + Send + 'static>(
    converter: std::sync::Arc<Converter>,
    bucket: String,
    key: String,
    limits: Limits,
    input: R,
    settings: &crate::sink::SinkSettings,
    deadline: tokio::time::Instant,
) -> Result<SendSummary, DecodeError> {
    use crate::sink::{deliver_stream, Fate, Item};
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(4096);
    let conversion = tokio::task::spawn_blocking(move || {
        let mut summary = SendSummary::default();
        let origin = Origin {
            bucket: &bucket,
            key: &key,
        };
        let file = &converter.file;
        let read = read_records(input, file, &file.record_keys, limits, 2, |n, rec| {
            let counts = &mut summary.counts;
            counts.records += 1;
            match convert_record(&converter, origin, None, n, rec) {
                RecordResult::Payloads(_, items) => {
                    counts.converted += 1;
                    for (item, _) in items {
                        counts.payloads += 1;
                        if tx.blocking_send(item).is_err() {
                            return ControlFlow::Break(());
                        }
                    }
                }
                RecordResult::Skipped(_) => counts.skipped += 1,
                RecordResult::Invalid { reason, .. } => {
                    counts.invalid += 1;
                    if summary.errors.len() < MAX_ERRORS {
                        summary
                            .errors
                            .push(format!("record {n}: invalid: {reason}"));
                    }
                }
            }
            ControlFlow::Continue(())
        });
        (summary, read)
    });
    let client = reqwest::Client::new();
    let delivery = deliver_stream(&client, settings, rx, deadline).await;
    let (mut summary, read) = conversion.await.map_err(|e| DecodeError::Io {
        offset: 0,
        detail: e.to_string(),
    })?;
    read?;
    for (n, _, fate) in &delivery.fates {
        let problem = match fate {
            Fate::Sent => {
                summary.counts.sent += 1;
                None
            }
            Fate::Rejected(why) => {
                summary.counts.rejected += 1;
                Some(format!("record {n}: rejected by the endpoint: {why}"))
            }
            Fate::NotSent(why) => {
                summary.counts.not_sent += 1;
                Some(format!("record {n}: not sent: {why}"))
            }
        };
        if let Some(problem) = problem {
            if summary.errors.len() < MAX_ERRORS {
                summary.errors.push(problem);
            }
        }
    }
    summary.fatal = delivery.fatal;
    Ok(summary)
}

/// What `send` names its file by: the file, or the S3 location it stands for when `--key` is given.
pub fn send_title(bucket: &str, key: Option<&str>, file: &str) -> String {
    match key {
        Some(key) => format!("s3://{bucket}/{key} (from {file})"),
        None => file.to_string(),
    }
}

/// The summary of `send` for a person: the title, the counts, why delivery stopped, the
/// first problems.
pub fn render_send(title: &str, summary: &SendSummary) -> String {
    let mut out = format!("{title}\n");
    for line in summary.counts.to_string().lines() {
        let _ = writeln!(out, "  {line}");
    }
    if let Some(fatal) = &summary.fatal {
        let _ = writeln!(out, "  delivery stopped: {fatal}");
    }
    for error in &summary.errors {
        let _ = writeln!(out, "  {error}");
    }
    out
}
