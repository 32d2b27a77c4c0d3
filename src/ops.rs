//! The importer's operations as the CLI and the Lambda edge run them: import one object to
//! the end, scan a prefix, list claims, retry a failed object or every one. Over the ports, so
//! that the in-memory adapters can test them (the SQS worker is wiring: `crate::aws`).

use std::fmt::Write as _;

use tokio::time::Instant;

use crate::claims::{ClaimKey, ClaimState, ClaimStore};
use crate::notify::ObjectRef;
use crate::pipeline::{Adapters, ObjectOutcome, Pipeline};
use crate::report::Progress;
use crate::source::ObjectSource;

mod scan;
mod scan_pass;
mod status;
pub use scan::{ScanError, ScanJob, ScanSummary};
pub use scan_pass::ScanPass;
pub use status::StatusSummary;

/// Parses `s3://bucket/key`.
pub fn object_ref(url: &str) -> Result<ObjectRef, crate::settings::UrlError> {
    let u = crate::settings::S3Url::parse(url)?;
    if u.key.is_empty() {
        return Err(crate::settings::UrlError::NoObject(url.to_string()));
    }
    Ok(ObjectRef {
        bucket: u.bucket,
        key: u.key,
        version_id: None,
        size: None,
        etag: None,
        sequencer: None,
    })
}

/// One object's outcome for a person: a line, then its counts and first errors.
pub fn render_outcome(obj: &ObjectRef, outcome: &ObjectOutcome) -> String {
    let mut out = format!("s3://{}/{}: {}\n", obj.bucket, obj.key, outcome.label());
    if let ObjectOutcome::Completed(r) | ObjectOutcome::Failed(r) = outcome {
        for line in r.counts.to_string().lines() {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(
            out,
            "  invocations {}, {} ms, converter {}",
            r.invocations,
            (r.finished_ms - r.started_ms).max(0),
            r.config_version
        );
        for e in r.first_errors.iter().take(5) {
            let _ = writeln!(out, "  {e}");
        }
        for part in &r.rejects {
            let _ = writeln!(out, "  rejects: {part}");
        }
    }
    out
}

/// One word for an outcome, for scripts (`--json`).
pub fn outcome_state(outcome: &ObjectOutcome) -> &'static str {
    match outcome {
        ObjectOutcome::Completed(_) => "completed",
        ObjectOutcome::Failed(_) => "failed",
        ObjectOutcome::Ignored(_) => "ignored",
        ObjectOutcome::AlreadyCompleted => "already_completed",
        ObjectOutcome::AlreadyFailed(_) => "already_failed",
        ObjectOutcome::HeldByOther { .. } => "held_by_other",
        ObjectOutcome::Gone(_) => "gone",
        ObjectOutcome::Paused { .. } => "paused",
        ObjectOutcome::Retry(_) => "retry",
    }
}

/// Whether an outcome leaves the object done: imported now or before, or not to be imported.
pub fn outcome_ok(outcome: &ObjectOutcome) -> bool {
    matches!(
        outcome,
        ObjectOutcome::Completed(_) | ObjectOutcome::AlreadyCompleted | ObjectOutcome::Ignored(_)
    )
}

/// One object's outcome for scripts: `{"bucket", "key", "outcome", "detail", "report"?}`.
pub fn outcome_json(obj: &ObjectRef, outcome: &ObjectOutcome) -> serde_json::Value {
    let mut v = serde_json::json!({
        "bucket": obj.bucket,
        "key": obj.key,
        "outcome": outcome_state(outcome),
        "detail": outcome.label(),
    });
    if let ObjectOutcome::Completed(r) | ObjectOutcome::Failed(r) = outcome {
        v["report"] = serde_json::to_value(r).unwrap_or_default();
    }
    v
}

/// Why an operation did not run: the request itself (exit 2), or a failure while running
/// (exit 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// Asked for something that cannot be done (e.g. retrying a completed object).
    #[error("{0}")]
    Input(String),
    /// Storage, tables or the network failed.
    #[error("{0}")]
    Runtime(String),
}

/// What `retry --failed` found and did.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetrySummary {
    /// FAILED objects found (under the prefix).
    pub failed_found: usize,
    pub completed: usize,
    /// Failed again (with a reason in their report).
    pub failed_again: usize,
    /// Not finished (to be retried, paused, held by another importer) or not retried.
    pub other: usize,
}

impl std::fmt::Display for RetrySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "retried {} FAILED objects: completed {}, failed again {}, other {}",
            self.failed_found, self.completed, self.failed_again, self.other
        )
    }
}

impl<A: Adapters> Pipeline<A> {
    /// Imports one object, continuing at once after each pause (each run at most
    /// `max_run`), until it has a final outcome.
    pub async fn import_to_end(&self, obj: &ObjectRef, owner: &str) -> ObjectOutcome {
        let mut runs = 0u32;
        loop {
            runs += 1;
            let deadline = Instant::now() + self.settings.max_run;
            let outcome = self.import(obj, deadline, &format!("{owner}/{runs}")).await;
            if !matches!(outcome, ObjectOutcome::Paused { .. }) {
                return outcome;
            }
        }
    }

    /// Makes a FAILED object importable again and imports it; an object whose import stopped
    /// (its lease ended, e.g. its notice went to the dead-letter queue) is resumed.
    ///
    /// When the key's content changed after the failed import had sent records of the old
    /// content, the new content is imported from its first record with default insert_ids
    /// tagged by its ETag (`<bucket>/<key>@<etag>:<n>`), so that the ids the old content used
    /// do not make the endpoint drop the new records as duplicates.
    pub async fn retry(&self, obj: &ObjectRef, owner: &str) -> Result<ObjectOutcome, OpError> {
        let key = self.claim_key(obj);
        let name = format!("s3://{}/{}", obj.bucket, obj.key);
        let runtime = |e: String| OpError::Runtime(e);
        let claim = self
            .claims
            .get(&key)
            .await
            .map_err(|e| runtime(e.to_string()))?;
        let failed_progress = match claim {
            Some(ClaimState::Failed { progress, .. }) => progress,
            Some(ClaimState::Completed { .. }) => {
                return Err(OpError::Input(format!(
                    "{name} was imported already; completed objects are never imported again"
                )))
            }
            Some(ClaimState::InProgress { lease_until, .. }) => {
                let now = self.clock.now_secs();
                if lease_until >= now {
                    return Err(OpError::Input(format!(
                        "{name} is being imported (its lease runs {} s more); it resumes by itself",
                        lease_until - now + 1
                    )));
                }
                return Ok(self.import_to_end(obj, owner).await);
            }
            Some(ClaimState::Queued { .. }) | None => {
                return Ok(self.import_to_end(obj, owner).await)
            }
        };
        let mut fresh = Progress::default();
        if let Some(old) = &failed_progress.content {
            let now = self
                .source
                .head(&obj.bucket, &obj.key)
                .await
                .map_err(|e| runtime(format!("{name}: {e}")))?;
            // The content was pinned before its first record was sent: some may have been.
            if now.etag.is_some() && now.etag != old.etag {
                fresh.id_tag = now.etag.map(|e| e.chars().take(12).collect());
            }
        }
        self.claims
            .reset_failed(&key, &fresh)
            .await
            .map_err(|e| runtime(e.to_string()))?;
        Ok(self.import_to_end(obj, owner).await)
    }

    /// Retries every FAILED object of this source whose key starts with `prefix`, in key
    /// order (after the converter, permissions or files were fixed); `report` hears of each.
    pub async fn retry_failed(
        &self,
        prefix: &str,
        owner: &str,
        mut report: impl FnMut(&ObjectRef, Result<&ObjectOutcome, &OpError>),
    ) -> Result<RetrySummary, OpError> {
        let mut failed: Vec<ClaimKey> = self
            .claims
            .list(&self.settings.source)
            .await
            .map_err(|e| OpError::Runtime(e.to_string()))?
            .into_iter()
            .filter(|(k, state)| {
                matches!(state, ClaimState::Failed { .. }) && k.key.starts_with(prefix)
            })
            .map(|(k, _)| k)
            .collect();
        failed.sort_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
        let mut s = RetrySummary {
            failed_found: failed.len(),
            ..RetrySummary::default()
        };
        for (i, k) in failed.into_iter().enumerate() {
            let obj = ObjectRef {
                bucket: k.bucket,
                key: k.key,
                version_id: None,
                size: None,
                etag: None,
                sequencer: None,
            };
            match self.retry(&obj, &format!("{owner}/{i}")).await {
                Ok(outcome) => {
                    match outcome {
                        ObjectOutcome::Completed(_) => s.completed += 1,
                        ObjectOutcome::Failed(_) => s.failed_again += 1,
                        _ => s.other += 1,
                    }
                    report(&obj, Ok(&outcome));
                }
                Err(e) => {
                    s.other += 1;
                    report(&obj, Err(&e));
                }
            }
        }
        Ok(s)
    }
}
