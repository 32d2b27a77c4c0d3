//! The end of an attempt on an object: checkpoint and pause, complete, or fail for good, each
//! written down on the claim (conditional on owning it) and in the report.

use super::outcome::ObjectOutcome;
use super::run::{object_tag, RequestCounts, RunEnd};
use super::tracker::Tracker;
use super::{sent_before, Adapters, Pipeline, RetryReason};
use crate::claims::{ClaimKey, ClaimStore, Held, StoreError};
use crate::decode::DecodeError;
use crate::notify::ObjectRef;
use crate::report::{Progress, RejectsFile, Report, Summary, FIRST_ERRORS};
use crate::sink::NO_ROUTE;
use crate::source::{Body, ObjectSource, SourceError};

/// One attempt on an object: the claim it holds and what the claim carried in.
pub(super) struct Attempt<'a> {
    pub obj: &'a ObjectRef,
    pub key: ClaimKey,
    pub owner: &'a str,
    /// The record the attempt started from.
    pub checkpoint: u64,
    pub progress: Progress,
    /// The converter's version (ETag), empty when none was loaded.
    pub config_version: String,
    /// The claim's lease (epoch seconds), kept by the checkpoints written while it runs.
    pub lease_until: i64,
    /// The invocation's deadline: every step of the attempt stops in time for it.
    pub deadline: tokio::time::Instant,
}

/// What a claim write that needs the lease came to: the claim lost to another owner (its lease
/// ran out and it was taken over) is a retry, not an error.
fn claim_write(result: Result<Held, StoreError>, doing: &str) -> Result<(), ObjectOutcome> {
    match result {
        Ok(Held::Yes) => Ok(()),
        Ok(Held::Lost) => Err(ObjectOutcome::Retry(RetryReason::other(
            "the claim was taken over",
        ))),
        Err(e) => Err(ObjectOutcome::Retry(RetryReason::Other(format!(
            "{doing}: {e}"
        )))),
    }
}

impl Progress {
    /// Takes in what a run confirmed: its counts and its first errors (taken from the tracker,
    /// so that the next call adds only newer ones).
    fn absorb(&mut self, tracker: &mut Tracker) {
        self.counts = tracker.counts.clone();
        if let Some(r) = tracker.restarts.at_or_before(tracker.base) {
            self.restart = Some(r);
        }
        let room = FIRST_ERRORS.saturating_sub(self.first_errors.len());
        let errors = std::mem::take(&mut tracker.errors);
        self.first_errors.extend(errors.into_iter().take(room));
    }

    /// Notes a problem that does not stop the import (a report file not written).
    fn note(&mut self, problem: String) {
        tracing::warn!(problem = %problem, "report problem");
        if self.first_errors.len() < FIRST_ERRORS {
            self.first_errors.push(problem);
        }
    }
}

/// S3's longest key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// `<prefix><bucket>/<key>.<suffix>`, or, when that is longer than S3 allows, the key cut on a
/// character boundary and marked with a hash of the whole key (the report names the key).
pub(super) fn report_key(prefix: &str, bucket: &str, key: &str, suffix: &str) -> String {
    let full = format!("{prefix}{bucket}/{key}.{suffix}");
    if full.len() <= MAX_KEY_BYTES {
        return full;
    }
    use md5::{Digest, Md5};
    let hash: String = Md5::digest(key.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let fixed = prefix.len() + bucket.len() + 1 + 1 + hash.len() + 1 + suffix.len();
    let mut keep = MAX_KEY_BYTES.saturating_sub(fixed).min(key.len());
    while !key.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{prefix}{bucket}/{}~{hash}.{suffix}", &key[..keep])
}

impl<A: Adapters> Pipeline<A> {
    /// Decides what the run amounts to and writes it down.
    pub(super) async fn finish(&self, mut at: Attempt<'_>, mut end: RunEnd) -> ObjectOutcome {
        if let Err(e) = &end.read {
            if !e.is_retryable() {
                end.tracker.close_all();
                let object = super::run::object_id(at.obj);
                self.release_marks(&object, &mut end.tracker).await;
                let reason = match e {
                    DecodeError::Corrupt { .. } if self.settings.verify_compressed => {
                        let read = end.tracker.counts.records;
                        format!("unreadable object: {e} ({})", sent_before(read))
                    }
                    _ => format!("unreadable object: {e}"),
                };
                return self.fail(at, reason, Some(end)).await;
            }
            match e {
                DecodeError::HoldFull { .. } => {
                    // Too large to hold: from now on checked by a pass of its own, at once.
                    at.progress.verify_first = true;
                    end.stopped = true;
                }
                // The deadline came while a member or frame was being checked: with nothing
                // confirmed, handed on as a check that could not finish in time; else a stop
                // like any other.
                DecodeError::HoldStopped { held } if end.tracker.base == at.checkpoint => {
                    let why = self.check_stopped(&at, *held);
                    return self.hand_on(&at, why).await;
                }
                DecodeError::HoldStopped { .. } => end.stopped = true,
                _ => {}
            }
        }
        end.tracker.confirm_settled();
        let unfinished = end.stopped
            || end.read.is_err()
            || end.fatal.is_some()
            || end.dedupe_error.is_some()
            || end.tracker.has_open()
            || end.tracker.write_error.is_some();
        if let Some(lost) = end.claim_lost.take() {
            return lost;
        }
        // Save what this run confirmed: the rejects part, then the counts with the checkpoint.
        self.save_rejects(&mut at, &mut end.tracker).await;
        at.progress.absorb(&mut end.tracker);
        if unfinished {
            return self.pause(at, end).await;
        }
        let report = self.report(&at, "COMPLETED", None, end.requests);
        // A report that cannot be written never undoes a finished import: the claim completes.
        // With S3I_REPORTS_FOR=problems a clean object (nothing invalid, rejected or unsent)
        // has no report file; its counts stay on the claim (`status`).
        let c = &report.counts;
        let clean = c.invalid == 0 && c.rejected == 0 && c.not_sent == 0;
        let report_written = if clean && !self.settings.reports_for_clean {
            false
        } else {
            match self.write_report(at.obj, &report).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(bucket = %at.obj.bucket, key = %at.obj.key, error = %e, "report not written");
                    false
                }
            }
        };
        let summary = Summary {
            counts: report.counts.clone(),
            report: report_written
                .then(|| self.report_url(&self.report_key(at.obj, "report.json"))),
            config_version: report.config_version.clone(),
            invocations: report.invocations,
            capacity: report.dynamodb,
        };
        let completed = self.claims.complete(&at.key, at.owner, &summary).await;
        if let Some(o) = &self.observer {
            o.finished(report.counts.records, report.counts.sent);
        }
        if let Err(outcome) = claim_write(completed, "completing the claim") {
            return outcome;
        }
        tracing::info!(bucket = %at.obj.bucket, key = %at.obj.key, counts = ?report.counts, "completed");
        ObjectOutcome::Completed(Box::new(report))
    }

    /// Saves the checkpoint and ends the lease with it, so that the object is resumable at once.
    async fn pause(&self, at: Attempt<'_>, end: RunEnd) -> ObjectOutcome {
        let t = &end.tracker;
        let why = end
            .fatal
            .clone()
            .map(|f| format!("delivery stopped: {f}"))
            .or(end.dedupe_error.clone().map(|d| format!("dedupe: {d}")))
            .or(end.read.as_ref().err().map(|e| e.to_string()))
            .or(t.write_error.clone())
            .or_else(|| t.blocker.clone());
        let now = self.clock.now_secs();
        let saved = self
            .claims
            .checkpoint(&at.key, at.owner, t.base, &at.progress, now - 1)
            .await;
        self.tell_confirmed(&at.progress);
        if let Err(outcome) = claim_write(saved, "checkpoint not saved") {
            return outcome;
        }
        tracing::info!(bucket = %at.obj.bucket, key = %at.obj.key, checkpoint = t.base, reason = ?why, "paused");
        // A continuation only after progress: an object that makes none is retried by its
        // notice, whose receive count ends in the dead-letter queue.
        let progressed = t.base > at.checkpoint;
        let hold_full = matches!(end.read, Err(DecodeError::HoldFull { .. }));
        if end.stopped
            && (progressed || hold_full)
            && end.fatal.is_none()
            && end.dedupe_error.is_none()
        {
            ObjectOutcome::Paused { checkpoint: t.base }
        } else if let Some(f) = end.fatal.as_ref().filter(|f| f.starts_with(NO_ROUTE)) {
            // The converter needs a route this endpoint lacks: counted and alarmed as an
            // unusable converter; the object waits for the endpoint or the converter to change.
            tracing::error!(bucket = %at.obj.bucket, key = %at.obj.key, error = %f, "converter unusable against this endpoint: objects wait for a fix");
            ObjectOutcome::Retry(RetryReason::ConverterUnusable(format!(
                "delivery stopped: {f}"
            )))
        } else {
            ObjectOutcome::Retry(RetryReason::Other(
                why.unwrap_or_else(|| "no record confirmed before the deadline".into()),
            ))
        }
    }

    /// Marks the object FAILED for good, with a report of what was done before.
    pub(super) async fn fail(
        &self,
        mut at: Attempt<'_>,
        reason: String,
        end: Option<RunEnd>,
    ) -> ObjectOutcome {
        let mut requests = RequestCounts::default();
        if let Some(mut end) = end {
            self.save_rejects(&mut at, &mut end.tracker).await;
            at.progress.absorb(&mut end.tracker);
            requests = end.requests;
        }
        let report = self.report(&at, "FAILED", Some(reason.clone()), requests);
        if let Err(e) = self.write_report(at.obj, &report).await {
            tracing::warn!(error = %e, "failure report not written");
        }
        tracing::warn!(bucket = %at.obj.bucket, key = %at.obj.key, reason = %reason, "failed");
        let failed = self.claims.fail(&at.key, at.owner, &reason).await;
        if let Some(o) = &self.observer {
            o.finished(0, 0);
        }
        match claim_write(failed, "marking the claim failed") {
            Ok(()) => ObjectOutcome::Failed(Box::new(report)),
            Err(outcome) => outcome,
        }
    }

    /// Gives the claim up so that another attempt may start at once.
    pub(super) async fn release(&self, key: &ClaimKey, owner: &str) {
        if let Err(e) = self.claims.release(key, owner, self.clock.now_secs()).await {
            tracing::warn!(error = %e, "claim not released; it resumes when its lease ends");
        }
    }

    /// Saves the progress on the claim with checkpoint `base`, keeping the lease.
    pub(super) async fn save_checkpoint(
        &self,
        at: &Attempt<'_>,
        base: u64,
    ) -> Result<(), ObjectOutcome> {
        let saved = self
            .claims
            .checkpoint(&at.key, at.owner, base, &at.progress, at.lease_until)
            .await;
        self.tell_confirmed(&at.progress);
        claim_write(saved, "checkpoint not saved")
    }

    /// While a run goes on: saves what it confirmed so far (its rejects part, then the counts
    /// with the checkpoint), so that a crash re-sends only what came after.
    pub(super) async fn checkpoint_run(
        &self,
        at: &mut Attempt<'_>,
        tracker: &mut Tracker,
    ) -> Result<(), ObjectOutcome> {
        self.save_rejects(at, tracker).await;
        at.progress.absorb(tracker);
        self.save_checkpoint(at, tracker.base).await
    }

    /// Uploads the rejects of the records confirmed since the last part, if any, and starts a
    /// new part. A part that cannot be written is noted in the report, never a reason to stop.
    async fn save_rejects(&self, at: &mut Attempt<'_>, tracker: &mut Tracker) {
        let start = tracker.rejects_start;
        let path = match tracker.rejects.finish() {
            Ok(Some(path)) => path,
            Ok(None) => return,
            Err(e) => return at.progress.note(format!("rejects file not written: {e}")),
        };
        let key = self.report_key(at.obj, &format!("rejects.{start:012}.jsonl"));
        let put = self
            .source
            .put(
                &self.settings.reports.bucket,
                &key,
                Body::File(path),
                "application/x-ndjson",
            )
            .await;
        match put {
            Ok(()) => at.progress.parts.push(key),
            Err(e) => at.progress.note(format!(
                "rejects of records {start}..{} not written: {e}",
                tracker.base
            )),
        }
        let tag = format!(
            "{}-{}-{}",
            object_tag(at.obj),
            tracker.base,
            self.clock.now_ms()
        );
        tracker.next_rejects(RejectsFile::new(&tag));
    }

    fn report(
        &self,
        at: &Attempt<'_>,
        outcome: &str,
        reason: Option<String>,
        requests: RequestCounts,
    ) -> Report {
        let p = &at.progress;
        Report {
            bucket: at.obj.bucket.clone(),
            key: at.obj.key.clone(),
            version_id: at.obj.version_id.clone(),
            outcome: outcome.to_string(),
            reason,
            config_version: at.config_version.clone(),
            counts: p.counts.clone(),
            invocations: p.invocations,
            started_ms: p.started_ms,
            finished_ms: self.clock.now_ms(),
            http_requests: requests.http,
            http_retries: requests.http_retries,
            throttled: requests.throttled,
            dedupe_requests: requests.dedupe,
            dynamodb: p.capacity,
            bytes_read: p.bytes_read.clone(),
            rejects: p.parts.iter().map(|k| self.report_url(k)).collect(),
            first_errors: p.first_errors.clone(),
        }
    }

    async fn write_report(&self, obj: &ObjectRef, report: &Report) -> Result<(), SourceError> {
        let mut body = serde_json::to_vec_pretty(report).unwrap_or_default();
        body.push(b'\n');
        self.source
            .put(
                &self.settings.reports.bucket,
                &self.report_key(obj, "report.json"),
                Body::Bytes(body),
                "application/json",
            )
            .await
    }

    /// Where an object's report files go (see [`report_key`]).
    pub(super) fn report_key(&self, obj: &ObjectRef, suffix: &str) -> String {
        report_key(&self.settings.reports.key, &obj.bucket, &obj.key, suffix)
    }

    fn report_url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.reports.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_keys_always_fit_s3s_limit_and_stay_apart() {
        assert_eq!(
            report_key("reports/", "b", "in/a.json", "report.json"),
            "reports/b/in/a.json.report.json"
        );
        let long = format!("in/{}", "é".repeat(504)); // 1,011 bytes
        let other = format!("in/{}x", "é".repeat(504));
        for suffix in ["report.json", "rejects.000000000000.jsonl"] {
            let k = report_key("s3-import-reports/", "bucket", &long, suffix);
            assert!(k.len() <= MAX_KEY_BYTES, "{} bytes", k.len());
            assert!(k.ends_with(&format!(".{suffix}")), "{k}");
            assert!(k.starts_with("s3-import-reports/bucket/in/é"), "{k}");
            assert_ne!(
                k,
                report_key("s3-import-reports/", "bucket", &other, suffix)
            );
        }
    }
}
