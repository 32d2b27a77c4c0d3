//! The scan: lists a prefix and imports (or queues) every object without a final claim, the
//! objects whose notification was lost and those that predate the importer. Which claims it
//! reads, and the mark a complete scan leaves, are `scan_pass.rs`'s.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::ScanPass;
use super::{outcome_ok, render_outcome};
use crate::claims::{ClaimKey, ClaimState, ClaimStore, StoreError};
use crate::convert::Converter;
use crate::notify::{ObjectRef, QueueMessage, ScanRequest};
use crate::pipeline::{Adapters, ObjectOutcome, Pipeline, RetryReason};
use crate::queue::{Enqueue, QueueError};
use crate::source::{ObjectInfo, ObjectSource, SourceError};

/// Keys listed per request (S3's most).
const LIST_PAGE: usize = 1000;
/// Keys whose claims are read in one request (DynamoDB's BatchGetItem most), and the step at
/// which a scan may stop for its time budget.
const SCAN_CHUNK: usize = 100;

/// Why a scan stopped before the end of its listing.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("listing the prefix: {0}")]
    Listing(SourceError),
    #[error("{0}")]
    Claims(StoreError),
    /// The converter cannot be had: nothing was queued or imported.
    #[error("{0}; nothing was queued or imported (the scan applies the converter's filterPattern, as the import does)")]
    Converter(RetryReason),
    #[error("the scan's continuation was not queued: {0}")]
    NotContinued(QueueError),
    #[error("{not_sent} of {total} messages not sent ({first}); {queued} queued")]
    NotQueued {
        not_sent: usize,
        total: usize,
        first: QueueError,
        queued: usize,
    },
}

impl<A: Adapters> Pipeline<A> {
    /// Lists `prefix` and imports (or, with `enqueue`, queues) every object that has no final
    /// claim: objects whose notification was lost, and those that predate the importer. Runs
    /// to the end of the listing (see [`Pipeline::scan_from`] for a time budget).
    pub async fn scan(
        &self,
        bucket: &str,
        prefix: &str,
        enqueue: bool,
        owner: &str,
        report: impl FnMut(&str),
    ) -> Result<ScanSummary, ScanError> {
        let job = ScanJob {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            start_after: None,
            enqueue,
            deadline: None,
            pass: None,
        };
        self.scan_from(&job, owner, report).await
    }

    /// Scans as `job` says, page by page (constant memory): per 100 keys, one batch read of
    /// their claims, then (queueing) one conditional batch of queue marks and SendMessageBatch
    /// requests of 10, several in flight, or (importing) the objects, several at once. Objects
    /// already final, being imported, or queued by an earlier scan whose message may still be
    /// in flight are skipped. With a deadline, it stops `S3I_STOP_MARGIN_SECS` before it and,
    /// when queueing, leaves a scan message on the queue that continues after the last key
    /// handled, so that a listing of any size finishes over several invocations.
    pub async fn scan_from(
        &self,
        job: &ScanJob,
        owner: &str,
        mut report: impl FnMut(&str),
    ) -> Result<ScanSummary, ScanError> {
        let started = Instant::now();
        // The converter's filterPattern is one of the exclusions: a scan that cannot read the
        // converter queues nothing (the import would not take the objects either).
        let (_, converter) = self.converter_for_scan().await?;
        let (claims0, queue0) = (self.claims.requests(), self.queue.requests());
        let capacity0 = self.claims.capacity();
        let stop_at = job.deadline.map(|d| d - self.settings.stop_margin);
        let mut s = ScanSummary::default();
        let mut after = job.start_after.clone().filter(|a| !a.is_empty());
        s.pass = match job.pass {
            Some(pass) => pass,
            None => {
                let (claims, settings) = (&self.claims, &self.settings);
                let now = self.clock.now_secs();
                let from_start = after.is_none();
                ScanPass::start(claims, settings, &job.bucket, &job.prefix, now, from_start).await
            }
        };
        s.full = s.pass.since.is_none();
        let mut stopped = false;
        'pages: loop {
            let page = self
                .source
                .list_page(&job.bucket, &job.prefix, after.as_deref(), LIST_PAGE)
                .await
                .map_err(ScanError::Listing)?;
            s.pages += 1;
            if let Some(o) = &self.observer {
                o.listed(page.objects.iter().map(|o| o.size).sum());
            }
            for chunk in page.objects.chunks(SCAN_CHUNK) {
                // At least one chunk per invocation, so that every continuation moves on.
                if s.listed > 0 && stop_at.is_some_and(|t| Instant::now() >= t) {
                    stopped = true;
                    break 'pages;
                }
                s.listed += chunk.len();
                self.scan_chunk(job, chunk, &converter, owner, &mut s, &mut report)
                    .await?;
                after = chunk.last().map(|o| o.key.clone());
            }
            if job.enqueue {
                report(&format!("{}\n", s.progress()));
            }
            if page.next.is_none() {
                break;
            }
            after = page.next;
        }
        if !stopped {
            s.pass
                .finish(&self.claims, &self.settings, &job.bucket, &job.prefix)
                .await;
        }
        if stopped {
            s.next = after.clone();
            if job.enqueue {
                self.queue
                    .enqueue(QueueMessage::Scan(ScanRequest {
                        bucket: job.bucket.clone(),
                        prefix: Some(job.prefix.clone()),
                        start_after: after.clone(),
                        pass: Some(s.pass),
                    }))
                    .await
                    .map_err(ScanError::NotContinued)?;
                s.continued = true;
            }
        }
        s.claims_requests = self.claims.requests() - claims0;
        s.queue_requests = self.queue.requests() - queue0;
        s.claims_capacity = self.claims.capacity().since(capacity0);
        s.ms = started.elapsed().as_millis() as u64;
        Ok(s)
    }

    /// The converter, for the scan's exclusions; why not, when it cannot be had.
    async fn converter_for_scan(&self) -> Result<(String, Arc<Converter>), ScanError> {
        self.load_converter()
            .await
            .map_err(|problem| ScanError::Converter(problem.reason()))
    }

    /// Up to 100 listed objects: their claims in one read, then queued or imported. Objects
    /// the import would ignore ([`Pipeline::ignores`]: the same test) are not; a queue mark
    /// that an older scan left on one is taken off.
    // Long: one chunk's steps in order (claims read, marks taken, messages queued, marks
    // confirmed or given back), each with its own failure path.
    async fn scan_chunk(
        &self,
        job: &ScanJob,
        chunk: &[ObjectInfo],
        converter: &Converter,
        owner: &str,
        s: &mut ScanSummary,
        report: &mut impl FnMut(&str),
    ) -> Result<(), ScanError> {
        let bucket = &job.bucket;
        // Folder markers and empty objects never carry a mark; other excluded keys may
        // (from a scan that did not apply the converter's filterPattern): their claims are
        // read with the others, in the same request.
        let mut listed = Vec::new();
        for o in chunk {
            let why = self.ignores(bucket, &o.key, Some(o.size), Some(converter));
            if o.key.ends_with('/') || o.size == 0 {
                s.ignored += 1;
            } else if !s.pass.reads(o.last_modified) {
                // Listed by the last complete scan and final then: not read again.
                s.unchanged += 1;
            } else {
                listed.push((o, why));
            }
        }
        let keys: Vec<ClaimKey> = listed
            .iter()
            .map(|(o, _)| ClaimKey {
                source: self.settings.source.clone(),
                bucket: bucket.clone(),
                key: o.key.clone(),
            })
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let states = self
            .claims
            .get_many(&keys)
            .await
            .map_err(ScanError::Claims)?;
        let now = self.clock.now_secs();
        let mut todo = Vec::new();
        for (((o, why), key), state) in listed.iter().zip(keys).zip(states) {
            if why.is_some() {
                s.ignored += 1;
                if matches!(state, Some(ClaimState::Queued { .. })) {
                    // A mark not cleared now is harmless (the object is never queued): the
                    // next scan tries again.
                    match self.claims.clear_queued(&key).await {
                        Ok(true) => s.marks_cleared += 1,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(key = %key.key, error = %e, "stale queue mark not cleared")
                        }
                    }
                }
                continue;
            }
            match state {
                Some(ClaimState::Completed { .. }) => s.completed_before += 1,
                Some(ClaimState::Failed { .. }) => s.failed_before += 1,
                Some(ClaimState::InProgress { lease_until, .. }) if lease_until >= now => {
                    s.in_flight += 1;
                    s.pass.open(o.last_modified);
                }
                Some(ClaimState::Queued { queued_until, .. }) if queued_until >= now => {
                    s.in_flight += 1;
                    s.pass.open(o.last_modified);
                }
                _ => todo.push((
                    key,
                    ObjectRef {
                        bucket: bucket.clone(),
                        key: o.key.clone(),
                        version_id: None,
                        size: Some(o.size),
                        etag: o.etag.clone(),
                        sequencer: None,
                    },
                )),
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        // Queued or imported now: final only once imported (queued: later; here: below).
        let dated: std::collections::HashMap<&str, Option<i64>> = chunk
            .iter()
            .map(|o| (o.key.as_str(), o.last_modified))
            .collect();
        if job.enqueue {
            for (_, obj) in &todo {
                s.pass.open(dated.get(obj.key.as_str()).copied().flatten());
            }
            return self.queue_objects(todo, now, s).await;
        }
        let deadline = job.deadline;
        let mut imports = futures_util::stream::iter(todo)
            .map(|(_, obj)| async move {
                let outcome = match deadline {
                    None => self.import_to_end(&obj, owner).await,
                    Some(d) => self.import(&obj, d, owner).await,
                };
                (obj, outcome)
            })
            .buffered(self.settings.object_concurrency.max(1));
        while let Some((obj, outcome)) = imports.next().await {
            report(&render_outcome(&obj, &outcome));
            let done = outcome_ok(&outcome)
                || matches!(
                    outcome,
                    ObjectOutcome::Failed(_) | ObjectOutcome::AlreadyFailed(_)
                );
            if !done {
                s.pass.open(dated.get(obj.key.as_str()).copied().flatten());
            }
            match outcome {
                ObjectOutcome::Completed(_) => s.imported += 1,
                ObjectOutcome::Failed(_) => s.failed += 1,
                ObjectOutcome::AlreadyCompleted => s.completed_before += 1,
                ObjectOutcome::AlreadyFailed(_) => s.failed_before += 1,
                ObjectOutcome::Ignored(_) => s.ignored += 1,
                _ => s.other += 1,
            }
        }
        Ok(())
    }

    /// Marks the objects queued (only where nothing holds them) for a short while
    /// (`S3I_SCAN_PENDING_SECS`), sends their messages, then extends the marks of the
    /// messages sent to `S3I_SCAN_QUEUED_SECS`. A message that could not be sent has its mark
    /// taken back. A scan that dies anywhere in between leaves only short marks on what it did
    /// not confirm: the next scan after them queues those objects (again, perhaps: a second
    /// message is harmless, the claim imports the object once).
    async fn queue_objects(
        &self,
        todo: Vec<(ClaimKey, ObjectRef)>,
        now: i64,
        s: &mut ScanSummary,
    ) -> Result<(), ScanError> {
        let pending = now + self.settings.scan_pending.as_secs() as i64;
        let until = (now + self.settings.scan_queued.as_secs() as i64).max(pending);
        let keys: Vec<ClaimKey> = todo.iter().map(|(k, _)| k.clone()).collect();
        let marked = self
            .claims
            .mark_queued(&keys, pending, now)
            .await
            .map_err(ScanError::Claims)?;
        let mut to_send = Vec::new();
        for ((key, obj), marked) in todo.into_iter().zip(marked) {
            if marked {
                to_send.push((key, obj));
            } else {
                // Claimed, completed or queued by another between the read and the mark.
                s.in_flight += 1;
            }
        }
        let bodies = to_send
            .iter()
            .map(|(_, o)| QueueMessage::Import(o.clone()))
            .collect();
        let sent = self.queue.enqueue_many(bodies).await;
        let mut first_error = None;
        let mut not_sent = 0;
        let mut confirmed = Vec::new();
        let total = to_send.len();
        for ((key, _), result) in to_send.into_iter().zip(sent) {
            match result {
                Ok(()) => {
                    s.enqueued += 1;
                    confirmed.push(key);
                }
                Err(e) => {
                    not_sent += 1;
                    first_error.get_or_insert(e);
                    if let Err(e) = self.claims.unmark_queued(&key, pending).await {
                        tracing::warn!(key = %key.key, error = %e, "queue mark not taken back; the object is queued again after S3I_SCAN_PENDING_SECS");
                    }
                }
            }
        }
        if !confirmed.is_empty() {
            if let Err(e) = self.claims.confirm_queued(&confirmed, pending, until).await {
                // The messages are out: the short marks run out and a later scan queues the
                // objects a second time, which the claim makes harmless.
                tracing::warn!(objects = confirmed.len(), error = %e, "queue marks not extended; the objects may be queued twice");
            }
        }
        match first_error {
            None => Ok(()),
            Some(first) => Err(ScanError::NotQueued {
                not_sent,
                total,
                first,
                queued: s.enqueued,
            }),
        }
    }
}

/// What a scan is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanJob {
    pub bucket: String,
    pub prefix: String,
    /// Continue after this key (a continuation's); `None` from the start.
    pub start_after: Option<String>,
    /// Queue the objects found (true) or import them here.
    pub enqueue: bool,
    /// The invocation's deadline: the scan stops `S3I_STOP_MARGIN_SECS` before it (and,
    /// queueing, leaves a continuation); `None` runs to the end.
    pub deadline: Option<Instant>,
    /// The pass a continued scan carries (see [`ScanPass`]); `None` starts one.
    pub pass: Option<ScanPass>,
}

/// What a scan found and did.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanSummary {
    pub listed: usize,
    pub ignored: usize,
    /// Listed but not read: last modified before the last complete scan (see [`ScanPass`]).
    pub unchanged: usize,
    /// Whether this scan read every listed object's claim (a full pass).
    pub full: bool,
    /// The pass this scan made (which claims it read; see [`ScanPass`]).
    pub pass: ScanPass,
    pub completed_before: usize,
    pub failed_before: usize,
    /// Being imported (a live lease) or queued by an earlier scan whose message may still be
    /// in flight: left alone.
    pub in_flight: usize,
    /// Queue marks taken off objects the import ignores (left by an older scan).
    pub marks_cleared: usize,
    pub imported: usize,
    pub failed: usize,
    pub enqueued: usize,
    pub other: usize,
    /// Listing requests.
    pub pages: usize,
    /// Where the scan stopped for its time budget (the next one starts after this key).
    pub next: Option<String>,
    /// Whether a scan message was queued to continue from `next`.
    pub continued: bool,
    /// Requests to the claims store and to the queue (their figures per object).
    pub claims_requests: u64,
    pub queue_requests: u64,
    /// Capacity units the scan consumed in the claims table.
    pub claims_capacity: crate::store::Capacity,
    pub ms: u64,
}

impl ScanSummary {
    /// A progress line: objects listed, queued, already final, in flight.
    pub fn progress(&self) -> String {
        format!(
            "listed {}: queued {}, already final {}, in flight {}, ignored {}",
            self.listed,
            self.enqueued,
            self.completed_before + self.failed_before,
            self.in_flight,
            self.ignored
        )
    }
}

impl std::fmt::Display for ScanSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listed {}: imported {}, failed {}, queued {}, other {}; skipped: completed before {}, failed before {}, in flight {}, ignored {}",
            self.listed, self.imported, self.failed, self.enqueued, self.other,
            self.completed_before, self.failed_before, self.in_flight, self.ignored
        )?;
        if self.unchanged > 0 {
            write!(
                f,
                "; {} unchanged since the last scan, not read",
                self.unchanged
            )?;
        }
        if self.marks_cleared > 0 {
            write!(f, " ({} stale queue marks cleared)", self.marks_cleared)?;
        }
        if let Some(next) = &self.next {
            write!(f, "; stopped at the time budget after `{next}`")?;
            if self.continued {
                f.write_str(", continued by a scan message")?;
            }
        }
        Ok(())
    }
}
