//! The use case: one notice → claim → converter → stream → convert → dedupe → send →
//! checkpoint → complete, over ports only (claims, dedupe, storage, queue; the endpoint is
//! HTTP through an injected client). No AWS or Lambda types appear here: `crate::aws` wires
//! the adapters and `crate::invoke` is the Lambda edge.
//!
//! Exactly once per (source, bucket, key): the claim decides who works on an object. Every
//! record ends in one counted outcome. Progress is *confirmed* up to the first record that
//! still has a payload without a fate (`tracker`); that is the checkpoint a later invocation
//! resumes from: by a ranged read from the last restart point at or before it (uncompressed
//! JSON lines and CSV keep one about every MiB; Parquet starts at the row group), else by
//! reading a compressed stream from its start and skipping the confirmed records. Records after it
//! may be sent again on resume: their insert_ids are this object's own, so our dedupe lets
//! them through and the endpoint's insert_id dedupe absorbs the overlap.
//!
//! Stages: `mod.rs` (notices, converter), `import.rs` (one object: claim, open, run, finish), `record.rs` (one record → payloads),
//! `run.rs` (read → convert → dedupe → send), `tracker.rs` (confirmation), `finish.rs`
//! (pause, complete or fail on the claim, reports).

mod clock;
mod finish;
mod import;
mod observe;
mod outcome;
pub mod record;
mod run;
pub mod tracker;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use clock::Clock;
pub use observe::Observer;
pub use outcome::{EventResult, MessageResult, ObjectOutcome, RetryReason, CONVERTER_UNUSABLE};

use crate::claims::{ClaimKey, ClaimStore};
use crate::convert::Converter;
use crate::dedupe::DedupeStore;
use crate::notify::{ObjectRef, QueueMessage};
use crate::queue::Enqueue;
use crate::report::Progress;
use crate::settings::{S3Url, Settings};
use crate::source::{Content, ObjectSource, SourceError};

/// The largest converter file accepted.
const MAX_CONVERTER_BYTES: usize = 1 << 20;
/// Below this much time left before the stop margin, an object is not started.
const MIN_WORK: Duration = Duration::from_secs(2);
/// Invocations whose integrity pass may stop at the deadline and hand the object on in a new
/// message; after them the notice is retried (and counted toward the dead-letter queue).
const MAX_VERIFY_HANDOVERS: u32 = 3;
/// An import still running `stop_margin / CUT_OFF_SHARE` before the deadline is cut off (1 s
/// with the default margin of 20 s: time to release the claim and answer; sending stops at half
/// the margin, so a healthy import is done long before).
const CUT_OFF_SHARE: u32 = 20;

/// What an object's message needs after it.
pub(crate) enum Then {
    /// Nothing more: acknowledged (done, or carried on by a continuation message).
    Done,
    /// Back after the queue's visibility timeout.
    Retry,
    /// Back after this long.
    RetryAfter(Duration),
}

/// The adapters a pipeline runs over, named once: any four adapters, as the tuple
/// `(claims, dedupe, source, queue)`.
pub trait Adapters: Send + Sync + 'static {
    type Claims: ClaimStore + 'static;
    type Dedupe: DedupeStore + 'static;
    type Source: ObjectSource + 'static;
    type Queue: Enqueue + 'static;
}

impl<C, D, S, Q> Adapters for (C, D, S, Q)
where
    C: ClaimStore + 'static,
    D: DedupeStore + 'static,
    S: ObjectSource + 'static,
    Q: Enqueue + 'static,
{
    type Claims = C;
    type Dedupe = D;
    type Source = S;
    type Queue = Q;
}

/// The importer, over its ports.
pub struct Pipeline<A: Adapters> {
    pub(crate) claims: A::Claims,
    pub(crate) dedupe: Option<Arc<A::Dedupe>>,
    pub(crate) source: A::Source,
    pub(crate) queue: A::Queue,
    pub(crate) settings: Settings,
    pub(crate) clock: Clock,
    http: reqwest::Client,
    /// The compiled converter and the ETag it was compiled from.
    /// The compiled converter, its file's ETag, and when S3 last confirmed that ETag.
    converter: tokio::sync::Mutex<Option<(String, Arc<Converter>, std::time::Instant)>>,
    /// Requests to the endpoint in flight (`S3I_MAX_IN_FLIGHT`) and dedupe calls in flight
    /// (`S3I_DEDUPE_IN_FLIGHT`), shared by every object imported at the same time.
    budget: Budget,
    /// Told of bytes read and counts confirmed (the command line's progress line).
    pub(crate) observer: Option<Arc<dyn Observer>>,
}

/// What the objects imported at the same time share.
struct Budget {
    requests: Arc<tokio::sync::Semaphore>,
    dedupe: Arc<tokio::sync::Semaphore>,
}

/// The ports a pipeline runs over.
pub struct Ports<C, D, S, Q> {
    pub claims: C,
    /// `None`: nothing is deduped (the endpoint's own insert_id dedupe still applies).
    pub dedupe: Option<D>,
    pub source: S,
    pub queue: Q,
    /// The endpoint's client (shared by every object of the process).
    pub http: reqwest::Client,
    pub clock: Clock,
}

/// A converter that could not be had.
pub(crate) enum ConfigProblem {
    /// Bad, missing or denied file: objects wait (their notices come back, nothing is
    /// claimed) until it is fixed, then import by themselves.
    Unusable(String),
    Transient(String),
}

impl ConfigProblem {
    /// Why, as an outcome's reason says it.
    pub(crate) fn reason(&self) -> RetryReason {
        match self {
            ConfigProblem::Unusable(why) => RetryReason::ConverterUnusable(why.clone()),
            ConfigProblem::Transient(why) => RetryReason::Other(why.clone()),
        }
    }
}

/// A storage error while reading the converter file: retry when the store is unavailable,
/// wait for a fix when the file is missing or denied.
fn config_problem(c: &S3Url, e: SourceError) -> ConfigProblem {
    match e {
        SourceError::Unavailable(_) => ConfigProblem::Transient(format!("converter file: {e}")),
        _ => ConfigProblem::Unusable(format!("converter file {c}: {e}")),
    }
}

impl<C, D, S, Q> Pipeline<(C, D, S, Q)>
where
    (C, D, S, Q): Adapters<Claims = C, Dedupe = D, Source = S, Queue = Q>,
{
    pub fn new(ports: Ports<C, D, S, Q>, settings: Settings) -> Self {
        let budget = Budget {
            requests: Arc::new(tokio::sync::Semaphore::new(
                settings.sink.max_in_flight.max(1),
            )),
            dedupe: Arc::new(tokio::sync::Semaphore::new(
                settings.dedupe_in_flight.max(1),
            )),
        };
        Pipeline {
            claims: ports.claims,
            dedupe: ports.dedupe.map(Arc::new),
            source: ports.source,
            queue: ports.queue,
            settings,
            clock: ports.clock,
            http: ports.http,
            converter: tokio::sync::Mutex::new(None),
            budget,
            observer: None,
        }
    }
}

impl<A: Adapters> Pipeline<A> {
    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Its settings, to change between imports (e.g. a rotated API key).
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// Its claims store (tests and operations read claims through it).
    pub fn claims(&self) -> &A::Claims {
        &self.claims
    }

    /// Its dedupe store (`None`: no dedupe).
    pub fn dedupe(&self) -> Option<&A::Dedupe> {
        self.dedupe.as_deref()
    }

    /// Its object storage.
    pub fn source(&self) -> &A::Source {
        &self.source
    }

    /// Its queue.
    pub fn queue(&self) -> &A::Queue {
        &self.queue
    }

    /// Its clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The same pipeline, telling `observer` of its progress.
    pub fn observed_by(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Tells the observer an object's confirmed counts.
    fn tell_confirmed(&self, progress: &Progress) {
        if let Some(o) = &self.observer {
            o.confirmed(progress.counts.records, progress.counts.sent);
        }
    }

    /// Opens an object's body from byte `from`, its bytes told to the observer.
    async fn open_body(
        &self,
        obj: &ObjectRef,
        want: &Content,
        from: u64,
    ) -> Result<crate::source::Opened, SourceError> {
        let mut opened = self.source.open(&obj.bucket, &obj.key, want, from).await?;
        if let Some(o) = &self.observer {
            o.opened(&format!("{}/{}", obj.bucket, obj.key));
            opened.reader = observe::ObservedReader::wrap(opened.reader, Some(o));
        }
        Ok(opened)
    }

    /// One notice's object imported (or handed on), and what its message needs then.
    pub(crate) async fn import_notice(
        &self,
        obj: &ObjectRef,
        deadline: Instant,
        owner: &str,
    ) -> (ObjectOutcome, Then) {
        let late = self.too_late(deadline)
            && self
                .ignores(&obj.bucket, &obj.key, obj.size, None)
                .is_none();
        // Whatever a step waits on (a stalled read, a store that hangs), the invocation
        // answers before its deadline: an import still running then is cut off, its claim
        // released, and its notice comes back at once (a crash's worth of re-sent events at
        // most, which the endpoint's insert_id dedupe absorbs).
        let cut_off = deadline - self.settings.stop_margin / CUT_OFF_SHARE;
        let outcome = if late {
            ObjectOutcome::Retry(RetryReason::TooLate(None))
        } else {
            match tokio::time::timeout_at(cut_off, self.import(obj, deadline, owner)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::warn!(bucket = %obj.bucket, key = %obj.key, "cut off at the deadline");
                    self.release(&self.claim_key(obj), owner).await;
                    ObjectOutcome::Retry(RetryReason::CutOff)
                }
            }
        };
        tracing::info!(bucket = %obj.bucket, key = %obj.key, outcome = %outcome.label(), "object");
        let then = match &outcome {
            ObjectOutcome::Paused { .. } => {
                if self.continue_later(obj).await {
                    Then::Done
                } else {
                    Then::Retry
                }
            }
            ObjectOutcome::HeldByOther { lease_until } => {
                // Back when the lease ends: if its holder died, the object is taken over
                // then, without a scan; if it is healthy, the notice finds the object
                // completed and is acknowledged.
                let left = (lease_until - self.clock.now_secs()).max(0) as u64 + 1;
                Then::RetryAfter(Duration::from_secs(left))
            }
            // Never started: handed on at once in a new message (a fresh receive count, so
            // the dead-letter queue's budget is not spent on it), else made visible again now.
            ObjectOutcome::Retry(RetryReason::TooLate(_)) => {
                if self.continue_later(obj).await {
                    Then::Done
                } else {
                    Then::RetryAfter(Duration::ZERO)
                }
            }
            ObjectOutcome::Retry(RetryReason::CutOff) => Then::RetryAfter(Duration::ZERO),
            o if o.unfinished() => Then::Retry,
            _ => Then::Done,
        };
        (outcome, then)
    }

    /// Whether too little time is left before `deadline` to start (or go on with) an object.
    fn too_late(&self, deadline: Instant) -> bool {
        deadline.saturating_duration_since(Instant::now()) < self.settings.stop_margin + MIN_WORK
    }

    /// Sends a continuation message for a paused object; false when none could be sent.
    async fn continue_later(&self, obj: &ObjectRef) -> bool {
        match self.queue.enqueue(QueueMessage::Import(obj.clone())).await {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "no continuation message; the notice will be retried");
                false
            }
        }
    }

    /// The converter, compiled once per version of its file (cached by ETag).
    pub(crate) async fn load_converter(&self) -> Result<(String, Arc<Converter>), ConfigProblem> {
        let c = &self.settings.converter;
        // A converter checked moments ago is used as it is: no HEAD per object of a batch of
        // small files (a changed file is seen within S3I_CONVERTER_REUSE_SECS).
        if let Some((tag, conv, at)) = self.converter.lock().await.as_ref() {
            if at.elapsed() < self.settings.converter_reuse {
                return Ok((tag.clone(), conv.clone()));
            }
        }
        let head = self
            .source
            .head(&c.bucket, &c.key)
            .await
            .map_err(|e| config_problem(c, e))?;
        let etag = head.etag.unwrap_or_default();
        let mut cached = self.converter.lock().await;
        if let Some((tag, conv, at)) = cached.as_mut() {
            if *tag == etag && !etag.is_empty() {
                *at = std::time::Instant::now();
                return Ok((tag.clone(), conv.clone()));
            }
        }
        let (bytes, tag) = self
            .source
            .get_small(&c.bucket, &c.key, MAX_CONVERTER_BYTES)
            .await
            .map_err(|e| config_problem(c, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ConfigProblem::Unusable(format!("converter file {c}: not UTF-8")))?;
        let conv = Converter::load(&text)
            .map_err(|e| ConfigProblem::Unusable(format!("bad converter file {c}: {e}")))?;
        if let Some(why) = crate::sink::routes::unserved(&conv.file, &self.settings.sink.base_url) {
            return Err(ConfigProblem::Unusable(format!(
                "converter file {c}: {why}"
            )));
        }
        let tag = tag.unwrap_or(etag);
        let conv = Arc::new(conv);
        *cached = Some((tag.clone(), conv.clone(), std::time::Instant::now()));
        tracing::info!(converter = %c, etag = %tag, "converter compiled");
        Ok((tag, conv))
    }

    /// Why the import leaves an object alone, if it does: a folder marker (`prefix/`), an
    /// empty object, the reports location or the converter file, a key outside `S3I_PREFIX`
    /// or `S3I_FILTER_PATTERN`, and (with the converter) outside its `filterPattern`. The
    /// import and the scan both ask this, so that a scan queues exactly what the import takes.
    pub fn ignores(
        &self,
        bucket: &str,
        key: &str,
        size: Option<u64>,
        converter: Option<&Converter>,
    ) -> Option<String> {
        if key.ends_with('/') {
            return Some("a folder marker".into());
        }
        if size == Some(0) {
            return Some("an empty object".into());
        }
        if let Some(why) = self.settings.excludes(bucket, key) {
            return Some(why);
        }
        match converter {
            Some(c) if !c.file.key_matches(key) => Some(format!(
                "does not match the converter's filterPattern `{}`",
                c.file.filter_pattern().unwrap_or("")
            )),
            _ => None,
        }
    }

    pub fn claim_key(&self, obj: &ObjectRef) -> ClaimKey {
        ClaimKey {
            source: self.settings.source.clone(),
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
        }
    }
}

/// What was sent of an object found damaged: nothing of the damaged gzip member or zstd frame
/// (its checksum is checked before its records are read), only the `records` before it.
pub(super) fn sent_before(records: u64) -> String {
    match records {
        0 => "found before sending: no record was sent".into(),
        n => format!(
            "found before sending its records: only the {n} records before the damaged gzip \
             member or zstd frame were read"
        ),
    }
}
