//! The importer's operations as the CLI and the Lambda edge run them: import one object to
//! the end, scan a prefix, list claims, retry a failed object or every one. Over the ports, so
//! that the in-memory adapters can test them (the SQS worker is wiring: `crate::aws`).

use std::fmt::Write as _;

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::claims::{ClaimKey, ClaimState, ClaimStore};
use crate::convert::Converter;
use crate::notify::{ObjectRef, QueueMessage, ScanRequest};
use crate::pipeline::{Adapters, ObjectOutcome, Pipeline};
use crate::queue::Enqueue;
use crate::report::Progress;
use crate::source::{ObjectInfo, ObjectSource};

mod scan_pass;
pub use scan_pass::ScanPass;

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
    ) -> Result<ScanSummary, String> {
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
    ) -> Result<ScanSummary, String> {
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
                .map_err(|e| e.to_string())?;
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
                    .map_err(|e| format!("the scan's continuation was not queued: {e}"))?;
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
    async fn converter_for_scan(&self) -> Result<(String, Arc<Converter>), String> {
        self.load_converter().await.map_err(|problem| {
            format!(
                "{}; nothing was queued or imported (the scan applies the converter's \
                 filterPattern, as the import does)",
                problem.reason()
            )
        })
    }

    /// Up to 100 listed objects: their claims in one read, then queued or imported. Objects
    /// the import would ignore ([`Pipeline::ignores`]: the same test) are not; a queue mark
    /// that an older scan left on one is taken off.
    async fn scan_chunk(
        &self,
        job: &ScanJob,
        chunk: &[ObjectInfo],
        converter: &Converter,
        owner: &str,
        s: &mut ScanSummary,
        report: &mut impl FnMut(&str),
    ) -> Result<(), String> {
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
            .map_err(|e| e.to_string())?;
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
    ) -> Result<(), String> {
        let pending = now + self.settings.scan_pending.as_secs() as i64;
        let until = (now + self.settings.scan_queued.as_secs() as i64).max(pending);
        let keys: Vec<ClaimKey> = todo.iter().map(|(k, _)| k.clone()).collect();
        let marked = self
            .claims
            .mark_queued(&keys, pending, now)
            .await
            .map_err(|e| e.to_string())?;
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
            Some(e) => Err(format!(
                "{not_sent} of {total} messages not sent ({e}); {} queued",
                s.enqueued
            )),
        }
    }

    /// Every claim of this source, for a person (`--json`: one JSON object per line).
    pub async fn status(&self, json: bool) -> Result<String, String> {
        let mut claims = self
            .claims
            .list(&self.settings.source)
            .await
            .map_err(|e| e.to_string())?;
        claims.sort_by(|a, b| (&a.0.bucket, &a.0.key).cmp(&(&b.0.bucket, &b.0.key)));
        let mut out = String::new();
        for (key, state) in &claims {
            let (label, detail) = match state {
                ClaimState::Completed { summary } => {
                    let v: serde_json::Value = serde_json::from_str(summary).unwrap_or_default();
                    let c = &v["counts"];
                    (
                        "COMPLETED",
                        format!(
                            "records {} sent {} duplicates {} invalid {} rejected {}  {}",
                            c["records"],
                            c["sent"],
                            c["duplicates"],
                            c["invalid"],
                            c["rejected"],
                            v["report"].as_str().unwrap_or("")
                        ),
                    )
                }
                ClaimState::Failed { reason, .. } => ("FAILED", reason.clone()),
                ClaimState::Queued {
                    queued_until,
                    checkpoint,
                    ..
                } => (
                    "QUEUED",
                    format!("queued by a scan (its message in flight until {queued_until}), checkpoint {checkpoint}"),
                ),
                ClaimState::InProgress {
                    checkpoint,
                    progress,
                    lease_until,
                    ..
                } => {
                    let p = Progress::parse(progress);
                    (
                        "IN_PROGRESS",
                        format!(
                            "checkpoint {checkpoint} (sent {}), lease until {lease_until}",
                            p.counts.sent
                        ),
                    )
                }
            };
            if json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::json!({"bucket": key.bucket, "key": key.key, "state": label, "detail": detail})
                );
            } else {
                let _ = writeln!(out, "{label:<12} s3://{}/{}  {detail}", key.bucket, key.key);
            }
        }
        if !json && claims.is_empty() {
            out.push_str("no claims yet\n");
        }
        Ok(out)
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
            Some(ClaimState::Failed { progress, .. }) => Progress::parse(&progress),
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
        let seed = serde_json::to_string(&fresh).unwrap_or_default();
        self.claims
            .reset_failed(&key, &seed)
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

/// Keys listed per request (S3's most).
const LIST_PAGE: usize = 1000;
/// Keys whose claims are read in one request (DynamoDB's BatchGetItem most), and the step at
/// which a scan may stop for its time budget.
const SCAN_CHUNK: usize = 100;

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
