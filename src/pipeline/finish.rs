//! The end of an attempt on an object: checkpoint and pause, complete, or fail for good, each
//! written down on the claim (conditional on owning it) and in the report.

use super::outcome::ObjectOutcome;
use super::run::{RequestCounts, RunEnd};
use super::tracker::Tracker;
use super::Pipeline;
use crate::claims::{ClaimKey, ClaimStore, Held, StoreError};
use crate::dedupe::DedupeStore;
use crate::notify::ObjectRef;
use crate::queue::Enqueue;
use crate::report::{Progress, Report, FIRST_ERRORS};
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
}

/// What a claim write that needs the lease came to: the claim lost to another owner (its lease
/// ran out and it was taken over) is a retry, not an error.
fn claim_write(result: Result<Held, StoreError>, doing: &str) -> Result<(), ObjectOutcome> {
    match result {
        Ok(Held::Yes) => Ok(()),
        Ok(Held::Lost) => Err(ObjectOutcome::Retry("the claim was taken over".into())),
        Err(e) => Err(ObjectOutcome::Retry(format!("{doing}: {e}"))),
    }
}

impl Progress {
    /// Takes in what a run confirmed: its counts and its first errors.
    fn absorb(&mut self, tracker: &Tracker) {
        self.counts = tracker.counts.clone();
        let room = FIRST_ERRORS.saturating_sub(self.first_errors.len());
        self.first_errors
            .extend(tracker.errors.iter().take(room).cloned());
    }
}

impl<C, D, S, Q> Pipeline<C, D, S, Q>
where
    C: ClaimStore,
    D: DedupeStore + 'static,
    S: ObjectSource,
    Q: Enqueue,
{
    /// Decides what the run amounts to and writes it down.
    pub(super) async fn finish(&self, mut at: Attempt<'_>, mut end: RunEnd) -> ObjectOutcome {
        if let Err(e) = &end.read {
            if !e.is_retryable() {
                end.tracker.close_all();
                let reason = format!("unreadable object: {e}");
                return self.fail(at, reason, Some(end)).await;
            }
        }
        end.tracker.confirm_settled();
        let unfinished = end.stopped
            || end.read.is_err()
            || end.fatal.is_some()
            || end.dedupe_error.is_some()
            || end.tracker.has_open()
            || end.tracker.write_error.is_some();
        // Save what this run confirmed: the rejects part, then the counts with the checkpoint.
        let part = match self
            .upload_rejects(at.obj, at.checkpoint, &mut end.tracker)
            .await
        {
            Ok(part) => part,
            Err(e) => {
                self.release(&at.key, at.owner).await;
                return ObjectOutcome::Retry(format!("writing the rejects file: {e}"));
            }
        };
        at.progress.parts.extend(part);
        at.progress.absorb(&end.tracker);
        if unfinished {
            return self.pause(at, end).await;
        }
        let report = self.report(&at, "COMPLETED", None, end.requests);
        if let Err(e) = self.write_report(at.obj, &report).await {
            self.release(&at.key, at.owner).await;
            return ObjectOutcome::Retry(format!("writing the report: {e}"));
        }
        let summary = serde_json::json!({
            "counts": report.counts,
            "report": self.report_url(&self.report_key(at.obj, "report.json")),
            "config_version": report.config_version,
            "invocations": report.invocations,
        })
        .to_string();
        let completed = self.claims.complete(&at.key, at.owner, &summary).await;
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
        let text = serde_json::to_string(&at.progress).unwrap_or_default();
        let now = self.clock.now_secs();
        let saved = self
            .claims
            .checkpoint(&at.key, at.owner, t.base, &text, now - 1)
            .await;
        if let Err(outcome) = claim_write(saved, "checkpoint not saved") {
            return outcome;
        }
        tracing::info!(bucket = %at.obj.bucket, key = %at.obj.key, checkpoint = t.base, reason = ?why, "paused");
        // A continuation only after progress: an object that makes none is retried by its
        // notice, whose receive count ends in the dead-letter queue.
        let progressed = t.base > at.checkpoint;
        if end.stopped && progressed && end.fatal.is_none() && end.dedupe_error.is_none() {
            ObjectOutcome::Paused { checkpoint: t.base }
        } else {
            ObjectOutcome::Retry(
                why.unwrap_or_else(|| "no record confirmed before the deadline".into()),
            )
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
            if let Ok(part) = self
                .upload_rejects(at.obj, end.start, &mut end.tracker)
                .await
            {
                at.progress.parts.extend(part);
            }
            at.progress.absorb(&end.tracker);
            requests = end.requests;
        }
        let report = self.report(&at, "FAILED", Some(reason.clone()), requests);
        if let Err(e) = self.write_report(at.obj, &report).await {
            tracing::warn!(error = %e, "failure report not written");
        }
        tracing::warn!(bucket = %at.obj.bucket, key = %at.obj.key, reason = %reason, "failed");
        let failed = self.claims.fail(&at.key, at.owner, &reason).await;
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

    /// Uploads this run's rejects file, if it has any line; its key.
    async fn upload_rejects(
        &self,
        obj: &ObjectRef,
        checkpoint: u64,
        tracker: &mut Tracker,
    ) -> Result<Option<String>, String> {
        let Some(path) = tracker.rejects.finish().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let key = self.report_key(obj, &format!("rejects.{checkpoint:012}.jsonl"));
        self.source
            .put(
                &self.settings.reports.bucket,
                &key,
                Body::File(path),
                "application/x-ndjson",
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(key))
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

    /// Where an object's report files go: `<reports prefix><bucket>/<key>.<suffix>`.
    pub(super) fn report_key(&self, obj: &ObjectRef, suffix: &str) -> String {
        format!(
            "{}{}/{}.{suffix}",
            self.settings.reports.key, obj.bucket, obj.key
        )
    }

    fn report_url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.reports.bucket)
    }
}
