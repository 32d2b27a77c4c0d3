//! The use case: one notice → claim → config → stream → convert → dedupe → send →
//! checkpoint → complete, over ports only (claims, dedupe, storage, queue; the endpoint is
//! HTTP). No AWS types appear here; the binaries wire the adapters.
//!
//! Exactly once per (source, bucket, key): the claim decides who works on an object. Every
//! record ends in one counted outcome. Progress is *confirmed* up to the first record that
//! still has a payload without a fate; that is the checkpoint a later invocation resumes from
//! (re-reading the object and skipping the confirmed records). Records after it may be sent
//! again on resume: their insert_ids are this object's own, so our dedupe lets them through
//! and the endpoint's insert_id dedupe absorbs the overlap.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::claims::{ClaimKey, ClaimOutcome, ClaimStore};
use crate::convert::{Converter, Kind, Origin, Outcome as Converted};
use crate::decode::{read_records, DecodeError, Rec};
use crate::dedupe::{DedupeKey, DedupeStore, RecordRef, Verdict};
use crate::notify::{messages, Ignored, Notice, ObjectRef};
use crate::report::{Counts, Progress, RejectsFile, Report, FIRST_ERRORS};
use crate::settings::Settings;
use crate::sink::{Driver, Fate, Item};
use crate::source::{Body, ObjectSource, SourceError};

/// Events checked against the dedupe table per call (five transactions of 100).
const DEDUPE_BATCH: usize = 500;
/// The largest converter file accepted.
const MAX_CONVERTER_BYTES: usize = 1 << 20;
/// Below this much time left before the stop margin, an object is not started.
const MIN_WORK: Duration = Duration::from_secs(2);

/// Where continuation messages go (an object that needs another invocation).
pub trait Enqueue: Send + Sync {
    fn enqueue(&self, body: String) -> impl Future<Output = Result<(), String>> + Send;
}

/// No queue: an unfinished object's message is retried by its source instead.
pub struct NoQueue;

impl Enqueue for NoQueue {
    async fn enqueue(&self, _body: String) -> Result<(), String> {
        Err("no continuation queue configured (S3I_QUEUE_URL)".into())
    }
}

/// What became of one object.
#[derive(Debug)]
pub enum ObjectOutcome {
    Completed(Box<Report>),
    /// Failed for good now (bad converter, corrupt data, access denied, object gone).
    Failed(Box<Report>),
    /// Excluded by the prefix, the filter pattern or the reports location.
    Ignored(String),
    AlreadyCompleted,
    AlreadyFailed(String),
    /// Another invocation holds a live lease on it.
    HeldByOther,
    /// Stopped before the deadline with progress saved; another invocation continues.
    Paused {
        checkpoint: u64,
    },
    /// Could not finish for a reason a retry may fix; progress saved, claim resumable.
    Retry(String),
}

impl ObjectOutcome {
    /// Whether the notice must be delivered again (or continued) for the object to finish.
    pub fn unfinished(&self) -> bool {
        matches!(self, ObjectOutcome::Paused { .. } | ObjectOutcome::Retry(_))
    }

    pub fn label(&self) -> String {
        match self {
            ObjectOutcome::Completed(_) => "completed".into(),
            ObjectOutcome::Failed(r) => format!("failed: {}", r.reason.as_deref().unwrap_or("")),
            ObjectOutcome::Ignored(why) => format!("ignored: {why}"),
            ObjectOutcome::AlreadyCompleted => "already completed".into(),
            ObjectOutcome::AlreadyFailed(why) => format!("failed before: {why}"),
            ObjectOutcome::HeldByOther => "being imported by another invocation".into(),
            ObjectOutcome::Paused { checkpoint } => {
                format!("paused at record {checkpoint}, to be continued")
            }
            ObjectOutcome::Retry(why) => format!("to be retried: {why}"),
        }
    }
}

/// One message's result.
#[derive(Debug)]
pub struct MessageResult {
    pub message_id: Option<String>,
    pub objects: Vec<(ObjectRef, ObjectOutcome)>,
    pub ignored: Vec<Ignored>,
    /// Why the message could not be read.
    pub error: Option<String>,
    /// Whether the message must come back (SQS: listed in `batchItemFailures`).
    pub retry: bool,
}

/// An invocation's result.
#[derive(Debug, Default)]
pub struct EventResult {
    pub messages: Vec<MessageResult>,
}

impl EventResult {
    /// The SQS message ids to report as failed, so that only they are delivered again.
    pub fn failed_message_ids(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m.retry)
            .filter_map(|m| m.message_id.clone())
            .collect()
    }

    /// Whether anything must be retried (for event sources without partial batches).
    pub fn any_retry(&self) -> bool {
        self.messages.iter().any(|m| m.retry)
    }
}

/// Epoch seconds; replaced in tests to move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The importer, over its ports.
pub struct Pipeline<C, D, S, Q> {
    pub claims: C,
    pub dedupe: Option<Arc<D>>,
    pub source: S,
    pub queue: Q,
    pub settings: Settings,
    pub clock: Clock,
    http: reqwest::Client,
    /// The compiled converter and the ETag it was compiled from.
    converter: tokio::sync::Mutex<Option<(String, Arc<Converter>)>>,
}

/// A converter that could not be had.
enum ConfigProblem {
    /// Bad or missing file: objects fail with this reason until it is fixed (then `retry`).
    Permanent(String),
    Transient(String),
}

/// A dedupe batch and its verdicts (or why there are none).
type Checked = (Vec<(Item, DedupeKey)>, Result<Vec<Verdict>, String>);

/// A storage error while reading the converter file: retry when the store is unavailable,
/// fail the objects when the file is missing or denied.
fn config_problem(c: &crate::settings::S3Url, e: SourceError) -> ConfigProblem {
    match e {
        SourceError::Unavailable(_) => ConfigProblem::Transient(format!("converter file: {e}")),
        _ => ConfigProblem::Permanent(format!("converter file {c}: {e}")),
    }
}

/// What the conversion thread sends for one record.
enum Unit {
    Payloads(u64, Vec<(Item, Option<DedupeKey>)>),
    Skipped(u64),
    Invalid(u64, String, String),
}

/// One record between reading and confirmation.
#[derive(Default)]
struct Entry {
    pending: u32,
    counts: Counts,
    blocked: bool,
    lines: Vec<String>,
    errors: Vec<String>,
}

/// Confirms records in order: a record is confirmed when every payload it made has a fate.
struct Tracker {
    /// Records before `base` are confirmed and counted in `counts`.
    base: u64,
    entries: VecDeque<Entry>,
    counts: Counts,
    errors: Vec<String>,
    rejects: RejectsFile,
    write_error: Option<String>,
    /// The first reason a record stays unconfirmed (a payload not sent).
    blocker: Option<String>,
}

impl Tracker {
    fn entry(&mut self, n: u64) -> Option<&mut Entry> {
        let i = n.checked_sub(self.base)?;
        self.entries.get_mut(i as usize)
    }

    fn open(&mut self, n: u64, entry: Entry) {
        debug_assert_eq!(n, self.base + self.entries.len() as u64);
        self.entries.push_back(entry);
    }

    fn settle(&mut self, n: u64, fate: &Fate, payload: Option<&str>) {
        let Some(e) = self.entry(n) else { return };
        e.pending = e.pending.saturating_sub(1);
        match fate {
            Fate::Sent => e.counts.sent += 1,
            Fate::Rejected(why) => {
                e.counts.rejected += 1;
                e.lines
                    .push(RejectsFile::line(n, "rejected", why, None, payload));
                e.errors
                    .push(format!("record {n}: rejected by the endpoint: {why}"));
            }
            Fate::NotSent(why) => {
                e.counts.not_sent += 1;
                e.blocked = true;
                let error = format!("record {n}: not sent: {why}");
                e.errors.push(error.clone());
                self.blocker.get_or_insert(error);
            }
        }
    }

    fn duplicate(&mut self, n: u64) {
        if let Some(e) = self.entry(n) {
            e.pending = e.pending.saturating_sub(1);
            e.counts.duplicates += 1;
        }
    }

    fn confirm(&mut self, e: Entry) {
        self.counts.add(&e.counts);
        for line in &e.lines {
            if let Err(err) = self.rejects.write(line) {
                self.write_error.get_or_insert(err.to_string());
            }
        }
        for err in e.errors {
            if self.errors.len() < FIRST_ERRORS {
                self.errors.push(err);
            }
        }
    }

    /// Confirms the settled records at the front.
    fn fold(&mut self) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.pending == 0 && !e.blocked)
        {
            let e = self.entries.pop_front().unwrap_or_default();
            self.confirm(e);
            self.base += 1;
        }
    }

    /// Counts every record read, settled or not (an object that ends FAILED).
    fn fold_all(&mut self) {
        while let Some(mut e) = self.entries.pop_front() {
            e.counts.not_sent += u64::from(e.pending);
            self.confirm(e);
            self.base += 1;
        }
    }
}

/// What one run over an object's bytes ended with.
struct RunEnd {
    /// The checkpoint the run started from.
    start: u64,
    tracker: Tracker,
    read: Result<(), DecodeError>,
    stopped: bool,
    fatal: Option<String>,
    dedupe_error: Option<String>,
    http: (u64, u64, u64),
    dedupe_requests: u64,
}

impl<C, D, S, Q> Pipeline<C, D, S, Q>
where
    C: ClaimStore,
    D: DedupeStore + 'static,
    S: ObjectSource,
    Q: Enqueue,
{
    pub fn new(
        claims: C,
        dedupe: Option<D>,
        source: S,
        queue: Q,
        settings: Settings,
        clock: Clock,
    ) -> Self {
        Pipeline {
            claims,
            dedupe: dedupe.map(Arc::new),
            source,
            queue,
            settings,
            clock,
            http: reqwest::Client::new(),
            converter: tokio::sync::Mutex::new(None),
        }
    }

    /// Handles one invocation event (any shape `notify` knows) until `deadline`.
    pub async fn handle_event(
        &self,
        event: &Value,
        deadline: Instant,
        request_id: &str,
    ) -> EventResult {
        let mut result = EventResult::default();
        for (i, m) in messages(event).into_iter().enumerate() {
            let mut done = MessageResult {
                message_id: m.message_id,
                objects: Vec::new(),
                ignored: Vec::new(),
                error: None,
                retry: false,
            };
            match m.notices {
                Err(e) => {
                    tracing::warn!(message_id = ?done.message_id, error = %e, "unreadable message");
                    done.error = Some(e);
                    done.retry = true;
                }
                Ok(notices) => {
                    for (j, notice) in notices.into_iter().enumerate() {
                        match notice {
                            Notice::Ignore(why) => {
                                tracing::info!(reason = ?why, "notice ignored");
                                done.ignored.push(why);
                            }
                            Notice::Import(obj) => {
                                let owner = format!("{request_id}/{i}/{j}/{:x}", now_ms());
                                let outcome = self.import(&obj, deadline, &owner).await;
                                tracing::info!(bucket = %obj.bucket, key = %obj.key, outcome = %outcome.label(), "object");
                                if outcome.unfinished()
                                    && !self.continue_later(&obj, &outcome).await
                                {
                                    done.retry = true;
                                }
                                done.objects.push((obj, outcome));
                            }
                        }
                    }
                }
            }
            result.messages.push(done);
        }
        result
    }

    /// Sends a continuation message for a paused object; false when none could be sent.
    async fn continue_later(&self, obj: &ObjectRef, outcome: &ObjectOutcome) -> bool {
        if !matches!(outcome, ObjectOutcome::Paused { .. }) {
            return false;
        }
        let body = continuation(obj);
        match self.queue.enqueue(body).await {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "no continuation message; the notice will be retried");
                false
            }
        }
    }

    async fn load_converter(&self) -> Result<(String, Arc<Converter>), ConfigProblem> {
        let c = &self.settings.converter;
        let head = self
            .source
            .head(&c.bucket, &c.key)
            .await
            .map_err(|e| config_problem(c, e))?;
        let etag = head.etag.unwrap_or_default();
        let mut cached = self.converter.lock().await;
        if let Some((tag, conv)) = cached.as_ref() {
            if *tag == etag && !etag.is_empty() {
                return Ok((tag.clone(), conv.clone()));
            }
        }
        let (bytes, tag) = self
            .source
            .get_small(&c.bucket, &c.key, MAX_CONVERTER_BYTES)
            .await
            .map_err(|e| config_problem(c, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ConfigProblem::Permanent(format!("converter file {c}: not UTF-8")))?;
        let conv = Converter::load(&text)
            .map_err(|e| ConfigProblem::Permanent(format!("bad converter file {c}: {e}")))?;
        let tag = tag.unwrap_or(etag);
        let conv = Arc::new(conv);
        *cached = Some((tag.clone(), conv.clone()));
        tracing::info!(converter = %c, etag = %tag, "converter compiled");
        Ok((tag, conv))
    }

    fn claim_key(&self, obj: &ObjectRef) -> ClaimKey {
        ClaimKey {
            source: self.settings.source.clone(),
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
        }
    }

    fn report_key(&self, obj: &ObjectRef, suffix: &str) -> String {
        format!(
            "{}{}/{}.{suffix}",
            self.settings.reports.key, obj.bucket, obj.key
        )
    }

    fn report_url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.reports.bucket)
    }

    /// Imports one object, or as much of it as fits before `deadline`.
    pub async fn import(&self, obj: &ObjectRef, deadline: Instant, owner: &str) -> ObjectOutcome {
        if let Some(why) = self.settings.excludes(&obj.bucket, &obj.key) {
            return ObjectOutcome::Ignored(why);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left < self.settings.stop_margin + MIN_WORK {
            return ObjectOutcome::Retry("too little time left in this invocation".into());
        }
        let config = self.load_converter().await;
        if let Ok((_, conv)) = &config {
            if !conv.file.key_matches(&obj.key) {
                return ObjectOutcome::Ignored(format!(
                    "does not match the converter's filterPattern `{}`",
                    conv.file.filter_pattern().unwrap_or("")
                ));
            }
        }
        if let Err(ConfigProblem::Transient(why)) = &config {
            return ObjectOutcome::Retry(why.clone());
        }

        let now = (self.clock)();
        let lease_until = now + left.as_secs() as i64 + self.settings.lease_margin.as_secs() as i64;
        let key = self.claim_key(obj);
        let (checkpoint, mut progress) = match self
            .claims
            .claim(&key, owner, lease_until, now)
            .await
        {
            Err(e) => return ObjectOutcome::Retry(e.to_string()),
            Ok(ClaimOutcome::AlreadyCompleted) => return ObjectOutcome::AlreadyCompleted,
            Ok(ClaimOutcome::AlreadyFailed { reason }) => {
                return ObjectOutcome::AlreadyFailed(reason)
            }
            Ok(ClaimOutcome::HeldByOther { .. }) => return ObjectOutcome::HeldByOther,
            Ok(ClaimOutcome::Acquired {
                checkpoint,
                progress,
                takeover,
            }) => {
                if takeover {
                    tracing::info!(bucket = %obj.bucket, key = %obj.key, checkpoint, "resuming");
                }
                (checkpoint, Progress::parse(&progress))
            }
        };
        progress.invocations += 1;
        if progress.started_ms == 0 {
            progress.started_ms = now_ms();
        }
        let (etag, converter) = match config {
            Ok(c) => c,
            Err(ConfigProblem::Permanent(why)) | Err(ConfigProblem::Transient(why)) => {
                return self
                    .fail(obj, &key, owner, why, progress, String::new(), None)
                    .await
            }
        };
        let reader = match self
            .source
            .open(&obj.bucket, &obj.key, obj.version_id.as_deref())
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_permanent() => {
                return self
                    .fail(obj, &key, owner, e.to_string(), progress, etag, None)
                    .await
            }
            Err(e) => {
                self.release(&key, owner).await;
                return ObjectOutcome::Retry(e.to_string());
            }
        };

        let end = self
            .run(reader, converter, obj, checkpoint, &progress, deadline)
            .await;
        self.finish(obj, &key, owner, checkpoint, progress, etag, end)
            .await
    }

    /// Decides what the run amounts to and writes it down.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        obj: &ObjectRef,
        key: &ClaimKey,
        owner: &str,
        checkpoint: u64,
        mut progress: Progress,
        etag: String,
        mut end: RunEnd,
    ) -> ObjectOutcome {
        if let Err(e) = &end.read {
            if !e.is_retryable() {
                end.tracker.fold_all();
                let reason = format!("unreadable object: {e}");
                return self
                    .fail(obj, key, owner, reason, progress, etag, Some(end))
                    .await;
            }
        }
        end.tracker.fold();
        let unfinished = end.stopped
            || end.read.is_err()
            || end.fatal.is_some()
            || end.dedupe_error.is_some()
            || !end.tracker.entries.is_empty()
            || end.tracker.write_error.is_some();
        // Save what this run confirmed: the rejects part, then the counts with the checkpoint.
        let part = match self.upload_part(obj, checkpoint, &mut end.tracker).await {
            Ok(part) => part,
            Err(e) => {
                self.release(key, owner).await;
                return ObjectOutcome::Retry(format!("writing the rejects file: {e}"));
            }
        };
        let t = &end.tracker;
        progress.counts = t.counts.clone();
        progress.parts.extend(part);
        for e in &t.errors {
            if progress.first_errors.len() < FIRST_ERRORS {
                progress.first_errors.push(e.clone());
            }
        }
        if unfinished {
            let why = end
                .fatal
                .clone()
                .map(|f| format!("delivery stopped: {f}"))
                .or(end.dedupe_error.clone().map(|d| format!("dedupe: {d}")))
                .or(end.read.as_ref().err().map(|e| e.to_string()))
                .or(t.write_error.clone())
                .or_else(|| t.blocker.clone());
            let text = serde_json::to_string(&progress).unwrap_or_default();
            // The lease ends with the checkpoint: the object is resumable at once.
            let now = (self.clock)();
            match self
                .claims
                .checkpoint(key, owner, t.base, &text, now - 1)
                .await
            {
                Ok(crate::claims::Held::Yes) => {}
                Ok(crate::claims::Held::Lost) => {
                    return ObjectOutcome::Retry("the claim was taken over".into())
                }
                Err(e) => return ObjectOutcome::Retry(format!("checkpoint not saved: {e}")),
            }
            tracing::info!(bucket = %obj.bucket, key = %obj.key, checkpoint = t.base, reason = ?why, "paused");
            // A continuation only after progress: an object that makes none is retried by its
            // notice, whose receive count ends in the dead-letter queue.
            let progressed = t.base > checkpoint;
            return if end.stopped && progressed && end.fatal.is_none() && end.dedupe_error.is_none()
            {
                ObjectOutcome::Paused { checkpoint: t.base }
            } else {
                ObjectOutcome::Retry(
                    why.unwrap_or_else(|| "no record confirmed before the deadline".into()),
                )
            };
        }
        let report = self.report(obj, "COMPLETED", None, &progress, etag, Some(&end));
        if let Err(e) = self.write_report(obj, &report).await {
            self.release(key, owner).await;
            return ObjectOutcome::Retry(format!("writing the report: {e}"));
        }
        let summary = summary(
            &report,
            &self.report_url(&self.report_key(obj, "report.json")),
        );
        match self.claims.complete(key, owner, &summary).await {
            Ok(crate::claims::Held::Yes) => {
                tracing::info!(bucket = %obj.bucket, key = %obj.key, counts = ?report.counts, "completed");
                ObjectOutcome::Completed(Box::new(report))
            }
            Ok(crate::claims::Held::Lost) => {
                ObjectOutcome::Retry("the claim was taken over".into())
            }
            Err(e) => ObjectOutcome::Retry(format!("completing the claim: {e}")),
        }
    }

    async fn release(&self, key: &ClaimKey, owner: &str) {
        let now = (self.clock)();
        if let Err(e) = self.claims.release(key, owner, now).await {
            tracing::warn!(error = %e, "claim not released; it resumes when its lease ends");
        }
    }

    async fn upload_part(
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
        obj: &ObjectRef,
        outcome: &str,
        reason: Option<String>,
        progress: &Progress,
        etag: String,
        end: Option<&RunEnd>,
    ) -> Report {
        let (http, dedupe_requests) = end.map_or(((0, 0, 0), 0), |e| (e.http, e.dedupe_requests));
        Report {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            version_id: obj.version_id.clone(),
            outcome: outcome.to_string(),
            reason,
            config_version: etag,
            counts: progress.counts.clone(),
            invocations: progress.invocations,
            started_ms: progress.started_ms,
            finished_ms: now_ms(),
            http_requests: http.0,
            http_retries: http.1,
            throttled: http.2,
            dedupe_requests,
            rejects: progress.parts.iter().map(|p| self.report_url(p)).collect(),
            first_errors: progress.first_errors.clone(),
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

    /// Marks the object FAILED for good, with a report of what was done before.
    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &self,
        obj: &ObjectRef,
        key: &ClaimKey,
        owner: &str,
        reason: String,
        mut progress: Progress,
        etag: String,
        end: Option<RunEnd>,
    ) -> ObjectOutcome {
        let mut end = end;
        if let Some(end) = &mut end {
            if let Ok(part) = self.upload_part(obj, end.start, &mut end.tracker).await {
                progress.parts.extend(part);
            }
            progress.counts = end.tracker.counts.clone();
            for e in &end.tracker.errors {
                if progress.first_errors.len() < FIRST_ERRORS {
                    progress.first_errors.push(e.clone());
                }
            }
        }
        let report = self.report(
            obj,
            "FAILED",
            Some(reason.clone()),
            &progress,
            etag,
            end.as_ref(),
        );
        if let Err(e) = self.write_report(obj, &report).await {
            tracing::warn!(error = %e, "failure report not written");
        }
        tracing::warn!(bucket = %obj.bucket, key = %obj.key, reason = %reason, "failed");
        match self.claims.fail(key, owner, &reason).await {
            Ok(crate::claims::Held::Yes) => ObjectOutcome::Failed(Box::new(report)),
            Ok(crate::claims::Held::Lost) => {
                ObjectOutcome::Retry("the claim was taken over".into())
            }
            Err(e) => ObjectOutcome::Retry(format!("marking the claim failed: {e}")),
        }
    }

    /// Streams, converts, dedupes and sends the records from `checkpoint` on.
    async fn run(
        &self,
        reader: crate::source::ObjectReader,
        converter: Arc<Converter>,
        obj: &ObjectRef,
        checkpoint: u64,
        progress: &Progress,
        deadline: Instant,
    ) -> RunEnd {
        let margin = self.settings.stop_margin;
        let stop_reading = (deadline - margin).into_std();
        let send_until = deadline - margin / 2;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Unit>(4096);
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conversion = {
            let (bucket, key) = (obj.bucket.clone(), obj.key.clone());
            let source = self.settings.source.clone();
            let (limits, threads) = (self.settings.limits, self.settings.threads);
            let stopped = stopped.clone();
            let dedupe = self.dedupe.is_some();
            tokio::task::spawn_blocking(move || {
                let origin = Origin {
                    bucket: &bucket,
                    key: &key,
                };
                let file = &converter.file;
                read_records(
                    reader,
                    file,
                    &file.record_keys,
                    limits,
                    threads,
                    |n, rec| {
                        if n < checkpoint {
                            return ControlFlow::Continue(());
                        }
                        if std::time::Instant::now() >= stop_reading {
                            stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                            return ControlFlow::Break(());
                        }
                        let unit = match rec {
                            Rec::Ok { record, line } => {
                                match converter.convert(record, n, origin).outcome {
                                    Converted::Converted(payloads) => Unit::Payloads(
                                        n,
                                        payloads
                                            .iter()
                                            .map(|p| {
                                                let key = if dedupe && p.kind == Kind::Event {
                                                    let text =
                                                        |f: &str| p.get(f).and_then(|v| v.as_str());
                                                    text("insert_id").and_then(|ins| {
                                                        DedupeKey::for_event(
                                                            &source,
                                                            text("device_id"),
                                                            text("user_id"),
                                                            ins,
                                                        )
                                                    })
                                                } else {
                                                    None
                                                };
                                                (Item::from_payload(n, p), key)
                                            })
                                            .collect(),
                                    ),
                                    Converted::Skipped => Unit::Skipped(n),
                                    Converted::Invalid(reason) => {
                                        let raw = match line {
                                            Some(l) => String::from_utf8_lossy(l).into_owned(),
                                            None => serde_json::to_string(&record.value)
                                                .unwrap_or_default(),
                                        };
                                        Unit::Invalid(n, reason, raw)
                                    }
                                }
                            }
                            Rec::Invalid { reason, raw } => {
                                Unit::Invalid(n, reason, String::from_utf8_lossy(raw).into_owned())
                            }
                        };
                        match tx.blocking_send(unit) {
                            Ok(()) => ControlFlow::Continue(()),
                            Err(_) => ControlFlow::Break(()),
                        }
                    },
                )
            })
        };

        let dedupe_before = self.dedupe.as_ref().map_or(0, |d| d.requests());
        let mut tracker = Tracker {
            base: checkpoint,
            entries: VecDeque::new(),
            counts: progress.counts.clone(),
            errors: Vec::new(),
            rejects: RejectsFile::new(&format!("{}-{checkpoint}-{}", object_id(obj), now_ms())),
            write_error: None,
            blocker: None,
        };
        let mut driver = Driver::new(&self.http, &self.settings.sink, send_until);
        let mut batch: Vec<(Item, DedupeKey)> = Vec::new();
        // Dedupe calls in flight, applied in the order they were made, so that records reach
        // the sender in order and the checkpoint advances steadily. (A call that panicked
        // leaves its records unconfirmed: the object is then retried, never completed short.)
        let mut checks: VecDeque<tokio::task::JoinHandle<Checked>> = VecDeque::new();
        let mut dedupe_error: Option<String> = None;
        let object = object_id(obj);
        let mut seen = 0u64;
        loop {
            let unit = rx.recv().await;
            let closing = unit.is_none();
            if let Some(unit) = unit {
                match unit {
                    Unit::Payloads(n, items) => {
                        let mut e = Entry {
                            pending: items.len() as u32,
                            ..Entry::default()
                        };
                        e.counts.records = 1;
                        e.counts.converted = 1;
                        e.counts.payloads = items.len() as u64;
                        tracker.open(n, e);
                        for (item, key) in items {
                            match key {
                                Some(key) if dedupe_error.is_none() => batch.push((item, key)),
                                Some(_) => tracker.settle(
                                    n,
                                    &Fate::NotSent("dedupe unavailable".into()),
                                    None,
                                ),
                                None => driver.push(item).await,
                            }
                        }
                    }
                    Unit::Skipped(n) => {
                        let mut e = Entry::default();
                        e.counts.records = 1;
                        e.counts.skipped = 1;
                        tracker.open(n, e);
                    }
                    Unit::Invalid(n, reason, raw) => {
                        let mut e = Entry::default();
                        e.counts.records = 1;
                        e.counts.invalid = 1;
                        e.lines.push(RejectsFile::line(
                            n,
                            "invalid",
                            &reason,
                            Some(raw.as_bytes()),
                            None,
                        ));
                        e.errors.push(format!("record {n}: invalid: {reason}"));
                        tracker.open(n, e);
                    }
                }
                seen += 1;
            }
            // Dedupe in batches, several in flight; verdicts feed the sender.
            let full = batch.len() >= DEDUPE_BATCH;
            let idle = rx.is_empty();
            if !batch.is_empty() && (full || idle || closing) {
                if let Some(store) = &self.dedupe {
                    while checks.len() >= self.settings.dedupe_in_flight {
                        if let Some(Ok(done)) = next_check(&mut checks).await {
                            apply_verdicts(done, &mut driver, &mut tracker, &mut dedupe_error)
                                .await;
                        }
                    }
                    let store = store.clone();
                    let events = std::mem::take(&mut batch);
                    let now = (self.clock)();
                    let object = object.clone();
                    checks.push_back(tokio::spawn(async move {
                        let refs: Vec<(DedupeKey, RecordRef)> = events
                            .iter()
                            .map(|(item, key)| {
                                (
                                    key.clone(),
                                    RecordRef {
                                        object: object.clone(),
                                        n: item.n,
                                    },
                                )
                            })
                            .collect();
                        let verdicts = store
                            .check_and_mark(&refs, now)
                            .await
                            .map_err(|e| e.to_string());
                        (events, verdicts)
                    }));
                }
            }
            if closing || seen.is_multiple_of(256) {
                while checks.front().is_some_and(|h| h.is_finished()) {
                    if let Some(Ok(done)) = next_check(&mut checks).await {
                        apply_verdicts(done, &mut driver, &mut tracker, &mut dedupe_error).await;
                    }
                }
                settle(&driver, &mut tracker);
                tracker.fold();
            }
            if dedupe_error.is_some() && !rx.is_closed() {
                // Stop reading: nothing more can be checked. What was read stays unconfirmed.
                rx.close();
            }
            if closing {
                break;
            }
        }
        while !checks.is_empty() {
            if let Some(Ok(done)) = next_check(&mut checks).await {
                apply_verdicts(done, &mut driver, &mut tracker, &mut dedupe_error).await;
            }
        }
        let delivery = driver.finish().await;
        apply_fates(&mut tracker, delivery.fates, delivery.rejected_payloads);
        let read = match conversion.await {
            Ok(r) => r.map(|_| ()),
            Err(e) => Err(DecodeError::Io {
                offset: 0,
                detail: format!("conversion thread: {e}"),
            }),
        };
        let dedupe_requests = self.dedupe.as_ref().map_or(0, |d| d.requests()) - dedupe_before;
        RunEnd {
            start: checkpoint,
            tracker,
            read,
            // Stopped by the deadline: reading stopped, or sending ran out of time.
            stopped: stopped.load(std::sync::atomic::Ordering::Relaxed)
                || Instant::now() >= send_until,
            fatal: delivery.fatal,
            dedupe_error,
            http: (delivery.requests, delivery.retries, delivery.throttled),
            dedupe_requests,
        }
    }
}

/// How a record names its object in the dedupe table: bucket/key, and the version when known.
fn object_id(obj: &ObjectRef) -> String {
    match &obj.version_id {
        Some(v) => format!("{}/{}?v={v}", obj.bucket, obj.key),
        None => format!("{}/{}", obj.bucket, obj.key),
    }
}

/// The message that continues an object in a later invocation (the scan message shape).
pub fn continuation(obj: &ObjectRef) -> String {
    serde_json::json!({"s3import": {
        "bucket": obj.bucket, "key": obj.key, "version_id": obj.version_id,
        "size": obj.size, "etag": obj.etag, "reason": "continue"
    }})
    .to_string()
}

/// The claim's summary of a completed object.
fn summary(report: &Report, url: &str) -> String {
    serde_json::json!({"counts": report.counts, "report": url, "config_version": report.config_version,
        "invocations": report.invocations})
    .to_string()
}

/// The oldest dedupe call's result.
async fn next_check(
    checks: &mut VecDeque<tokio::task::JoinHandle<Checked>>,
) -> Option<Result<Checked, tokio::task::JoinError>> {
    Some(checks.pop_front()?.await)
}

async fn apply_verdicts(
    (events, verdicts): Checked,
    driver: &mut Driver,
    tracker: &mut Tracker,
    dedupe_error: &mut Option<String>,
) {
    match verdicts {
        Ok(verdicts) => {
            for ((item, _), verdict) in events.into_iter().zip(verdicts) {
                match verdict {
                    Verdict::Duplicate { .. } => tracker.duplicate(item.n),
                    Verdict::New | Verdict::Own => driver.push(item).await,
                }
            }
        }
        Err(e) => {
            for (item, _) in &events {
                tracker.settle(item.n, &Fate::NotSent(format!("dedupe: {e}")), None);
            }
            dedupe_error.get_or_insert(e);
        }
    }
}

fn settle(driver: &Driver, tracker: &mut Tracker) {
    let (fates, rejected) = driver.take_settled();
    apply_fates(tracker, fates, rejected);
}

fn apply_fates(tracker: &mut Tracker, fates: Vec<(u64, Kind, Fate)>, rejected: Vec<(u64, String)>) {
    let mut payloads: HashMap<u64, Vec<String>> = HashMap::new();
    for (n, json) in rejected {
        payloads.entry(n).or_default().push(json);
    }
    for (n, _, fate) in fates {
        let json = match fate {
            Fate::Rejected(_) => payloads.get_mut(&n).and_then(|v| v.pop()),
            _ => None,
        };
        tracker.settle(n, &fate, json.as_deref());
    }
}

/// The time left in an invocation whose context carries `deadline_ms`. Lambda sends epoch
/// milliseconds; a deadline already passed (or zero, or clock skew) leaves no time, and every
/// object is then handed back for retry rather than claimed with a lease in the past.
/// `cargo lambda watch` sends the timeout itself (e.g. 600000) instead of an epoch time: values
/// below 10^12 (2001) are read as such.
pub fn time_left(deadline_ms: u64, now_ms: u64) -> Duration {
    if deadline_ms < 1_000_000_000_000 {
        return Duration::from_millis(deadline_ms);
    }
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// What the Lambda function answers: for an SQS event, the partial batch response naming the
/// messages to retry (`batchItemFailures`, Lambda's casing); for other sources a summary, or an
/// error when something must be retried (Lambda then retries the invocation).
pub fn lambda_response(event: &Value, result: &EventResult) -> Result<Value, String> {
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
    let is_sqs = event
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|r| {
            r.iter()
                .any(|x| x.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
        });
    if is_sqs {
        let mut response = SqsBatchResponse::default();
        for id in result.failed_message_ids() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
        return serde_json::to_value(&response).map_err(|e| e.to_string());
    }
    let objects: Vec<Value> = result
        .messages
        .iter()
        .flat_map(|m| m.objects.iter())
        .map(|(o, outcome)| serde_json::json!({"bucket": o.bucket, "key": o.key, "outcome": outcome.label()}))
        .collect();
    if result.any_retry() {
        let why: Vec<String> = result
            .messages
            .iter()
            .flat_map(|m| {
                m.objects
                    .iter()
                    .filter(|(_, o)| o.unfinished())
                    .map(|(obj, o)| format!("s3://{}/{}: {}", obj.bucket, obj.key, o.label()))
                    .chain(m.error.clone())
            })
            .collect();
        return Err(format!("to be retried: {}", why.join("; ")));
    }
    Ok(serde_json::json!({ "objects": objects }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_epoch_deadlines_and_the_local_runtimes_timeouts() {
        let now = 1_795_871_569_856;
        assert_eq!(time_left(now + 900_000, now), Duration::from_secs(900));
        assert_eq!(time_left(now - 5, now), Duration::ZERO, "passed: no time");
        assert_eq!(time_left(0, now), Duration::ZERO, "missing: no time");
        assert_eq!(
            time_left(600_000, now),
            Duration::from_secs(600),
            "cargo lambda watch"
        );
    }
}
