//! One run over an object's bytes: read → convert (a blocking thread) → dedupe (calls in
//! flight, applied in order) → send, confirming records as their payloads meet their fates.

use std::collections::VecDeque;
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::finish::Attempt;
use super::outcome::ObjectOutcome;
use super::record::{convert_record, RecordResult};
use super::tracker::{OpenRecord, Restarts, Tracker};
use super::{Adapters, Pipeline};
use crate::config::FileType;
use crate::convert::{Converter, Origin};
use crate::decode::parquet::{ParquetFile, ReadAt};
use crate::decode::{read_records_from, DecodeError, Hold, Limits, Restart};
use crate::dedupe::{DedupeKey, DedupeStore, RecordRef, Verdict};
use crate::notify::ObjectRef;
use crate::report::RejectsFile;
use crate::sink::{Driver, Fate, Item};
use crate::source::ObjectReader;

/// Events checked against the dedupe table per call (five transactions of 100).
const DEDUPE_BATCH: usize = 500;
/// Records read between two looks at the finished dedupe calls and delivery fates.
const SETTLE_EVERY: u64 = 256;

/// Requests one run made.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestCounts {
    pub http: u64,
    pub http_retries: u64,
    pub throttled: u64,
    pub dedupe: u64,
}

/// How a run reads its object: a stream (JSON lines, CSV) from its first byte or from a restart
/// point, or byte ranges (Parquet: the footer, then the row groups from the checkpoint's on).
pub enum Input {
    /// From a restart point; `true`: inflated bytes are held back until their checksum is checked.
    Stream(ObjectReader, Option<Restart>, bool),
    Ranges(Arc<dyn ReadAt>),
}

/// Counts the bytes a stream hands over.
struct CountingReader {
    inner: ObjectReader,
    bytes: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Counts the bytes ranged reads fetch.
struct CountingRanges {
    inner: Arc<dyn ReadAt>,
    bytes: Arc<AtomicU64>,
}

impl ReadAt for CountingRanges {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<bytes::Bytes> {
        let b = self.inner.read_at(offset, len)?;
        self.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }
    fn read_ahead(&self) -> bool {
        self.inner.read_ahead()
    }
}

/// How many invocations' byte counts the progress keeps (later ones add to the last).
const BYTES_READ_KEPT: usize = 1000;

/// What one run over an object's bytes ended with.
pub struct RunEnd {
    pub tracker: Tracker,
    pub read: Result<(), DecodeError>,
    /// Stopped by the deadline: reading stopped, or sending ran out of time.
    pub stopped: bool,
    /// Delivery stopped on a permanent endpoint error (bad API key, …).
    pub fatal: Option<String>,
    pub dedupe_error: Option<String>,
    pub requests: RequestCounts,
    /// Set when a checkpoint found the claim taken over: nothing more may be written.
    pub claim_lost: Option<ObjectOutcome>,
}

/// A dedupe call's events and their verdicts (or why there are none).
type DedupeCall = (Vec<(Item, DedupeKey)>, Result<Vec<Verdict>, String>);

/// Dedupe calls in flight, applied in the order they were made, so that records reach the
/// sender in order and the checkpoint advances steadily. (A call that panicked leaves its
/// records unconfirmed: the object is then retried, never completed short.)
struct DedupeCalls<D> {
    store: Option<Arc<D>>,
    /// Calls in flight across the objects imported at the same time.
    shared: Arc<tokio::sync::Semaphore>,
    /// How the records of this object are named in the dedupe table.
    object: String,
    in_flight: usize,
    calls: VecDeque<JoinHandle<DedupeCall>>,
    batch: Vec<(Item, DedupeKey)>,
    error: Option<String>,
    /// Verdicts are waited for until then (sending stops then too); the records of a call
    /// still running then stay unconfirmed, and the next invocation reads them again.
    until: Instant,
}

impl<D: DedupeStore + 'static> DedupeCalls<D> {
    /// Starts a call for the events gathered so far, waiting for a free place first.
    async fn start(&mut self, now: i64, driver: &mut Driver, tracker: &mut Tracker) {
        let Some(store) = self.store.clone() else {
            return;
        };
        while self.calls.len() >= self.in_flight {
            self.apply_next(driver, tracker).await;
        }
        let events = std::mem::take(&mut self.batch);
        let object = self.object.clone();
        let shared = self.shared.clone();
        self.calls
            .push_back(tokio::spawn(crate::store::carried(async move {
                let _permit = shared.acquire_owned().await;
                let refs: Vec<(DedupeKey, RecordRef)> = events
                    .iter()
                    .map(|(item, key)| {
                        let record = RecordRef {
                            object: object.clone(),
                            n: item.n,
                        };
                        (key.clone(), record)
                    })
                    .collect();
                let verdicts = store
                    .check_and_mark(&refs, now)
                    .await
                    .map_err(|e| e.to_string());
                (events, verdicts)
            })));
    }

    /// Applies the oldest call's verdicts: new and own events go to the sender.
    async fn apply_next(&mut self, driver: &mut Driver, tracker: &mut Tracker) {
        let Some(call) = self.calls.pop_front() else {
            return;
        };
        let Ok(Ok((events, verdicts))) = tokio::time::timeout_at(self.until, call).await else {
            return;
        };
        match verdicts {
            Ok(verdicts) => {
                for ((item, _), verdict) in events.into_iter().zip(verdicts) {
                    match verdict {
                        Verdict::Duplicate { .. } => tracker.record_duplicate(item.n),
                        Verdict::New | Verdict::Own => driver.push(item).await,
                    }
                }
            }
            Err(e) => {
                for (item, _) in &events {
                    tracker.record_fate(item.n, &Fate::NotSent(format!("dedupe: {e}")), None);
                }
                self.error.get_or_insert(e);
            }
        }
    }

    /// Applies the calls that have finished, in order, without waiting.
    async fn apply_finished(&mut self, driver: &mut Driver, tracker: &mut Tracker) {
        while self.calls.front().is_some_and(|h| h.is_finished()) {
            self.apply_next(driver, tracker).await;
        }
    }
}

/// The conversion thread: its records, its end, and whether it stopped for the deadline.
struct Conversion {
    records: mpsc::Receiver<RecordResult>,
    end: JoinHandle<Result<(), DecodeError>>,
    stopped: Arc<AtomicBool>,
    /// Bytes read from the object so far.
    bytes_read: Arc<AtomicU64>,
    /// The restart points reading passed.
    restarts: Restarts,
}

impl<A: Adapters> Pipeline<A> {
    /// Reads and converts the records from `checkpoint` on, on a blocking thread, until the
    /// object ends or `stop_reading`. A Parquet object is read by ranges from the row group
    /// holding the checkpoint; earlier row groups are not fetched.
    fn start_conversion(
        &self,
        input: Input,
        converter: Arc<Converter>,
        at: &Attempt<'_>,
        stop_reading: std::time::Instant,
    ) -> Conversion {
        let (tx, records) = mpsc::channel::<RecordResult>(4096);
        let stopped = Arc::new(AtomicBool::new(false));
        let bytes_read = Arc::new(AtomicU64::new(0));
        let checkpoint = at.checkpoint;
        let bucket = at.obj.bucket.clone();
        // The origin names the object in default insert_ids: `<bucket>/<key>:<n>`, or
        // `<bucket>/<key>@<tag>:<n>` for new content imported after a change under the key.
        let key = match &at.progress.id_tag {
            Some(tag) => format!("{}@{tag}", at.obj.key),
            None => at.obj.key.clone(),
        };
        let dedupe_source = self.dedupe.is_some().then(|| self.settings.source.clone());
        let dedupe_mode = self.settings.dedupe_mode;
        let (limits, threads) = (self.settings.limits, self.settings.threads);
        let hold_max_bytes = self.settings.hold_max_bytes;
        let stop = stopped.clone();
        let counter = bytes_read.clone();
        let restarts = Restarts::default();
        let passed = restarts.clone();
        let config = at.config_version.clone();
        let end = tokio::task::spawn_blocking(move || {
            let origin = Origin {
                bucket: &bucket,
                key: &key,
            };
            let file = &converter.file;
            let mut each = |n: u64, rec: crate::decode::Rec<'_>| {
                if n < checkpoint {
                    return ControlFlow::Continue(());
                }
                if std::time::Instant::now() >= stop_reading {
                    stop.store(true, Ordering::Relaxed);
                    return ControlFlow::Break(());
                }
                let result = convert_record(
                    &converter,
                    origin,
                    dedupe_source.as_deref().map(|s| (s, dedupe_mode)),
                    n,
                    rec,
                );
                match tx.blocking_send(result) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            };
            match input {
                Input::Ranges(inner) if file.file_type == FileType::Parquet => {
                    let parquet = ParquetFile::open(CountingRanges {
                        inner,
                        bytes: counter,
                    })?;
                    let from = parquet.position_of(checkpoint);
                    parquet.read(&file.record_keys, from, &mut each).map(|_| ())
                }
                Input::Ranges(_) => Err(DecodeError::Io {
                    offset: 0,
                    detail: "only Parquet objects are read by ranges".into(),
                }),
                Input::Stream(reader, from, held) => {
                    let limits = Limits {
                        hold: held.then_some(Hold {
                            max_bytes: hold_max_bytes,
                            stop: Some(stop_reading),
                        }),
                        ..limits
                    };
                    let reader = CountingReader {
                        inner: reader,
                        bytes: counter,
                    };
                    let keys = &file.record_keys;
                    let mut mark = |r: Restart| {
                        passed.push(Restart {
                            config: config.clone(),
                            ..r
                        })
                    };
                    read_records_from(
                        reader,
                        file,
                        keys,
                        limits,
                        threads,
                        from.as_ref(),
                        &mut mark,
                        each,
                    )
                    .map(|_| ())
                }
            }
        });
        Conversion {
            records,
            end,
            stopped,
            bytes_read,
            restarts,
        }
    }

    /// Streams, converts, dedupes and sends the records from the attempt's checkpoint on,
    /// saving the confirmed progress on the claim every `checkpoint_every`.
    pub(super) async fn run(
        &self,
        input: Input,
        converter: Arc<Converter>,
        at: &mut Attempt<'_>,
        deadline: Instant,
    ) -> RunEnd {
        let margin = self.settings.stop_margin;
        let send_until = deadline - margin / 2;
        let checkpoint = at.checkpoint;
        let mut conversion =
            self.start_conversion(input, converter, at, (deadline - margin).into_std());
        let dedupe_before = self.dedupe.as_ref().map_or(0, |d| d.requests());
        let object = object_id(at.obj);
        let tag = format!(
            "{}-{checkpoint}-{}",
            object_tag(at.obj),
            self.clock.now_ms()
        );
        let counts = at.progress.counts.clone();
        let mut tracker = Tracker::new(checkpoint, counts, RejectsFile::new(&tag));
        tracker.restarts = conversion.restarts.clone();
        let mut saved = (Instant::now(), checkpoint);
        let mut claim_lost = None;
        let requests = self.budget.requests.clone();
        let mut driver = Driver::sharing(&self.http, &self.settings.sink, send_until, requests);
        let mut dedupe = DedupeCalls {
            store: self.dedupe.clone(),
            shared: self.budget.dedupe.clone(),
            object,
            in_flight: self.settings.dedupe_in_flight,
            calls: VecDeque::new(),
            batch: Vec::new(),
            error: None,
            until: send_until,
        };
        let mut seen = 0u64;
        loop {
            let next = conversion.records.recv().await;
            let closing = next.is_none();
            if let Some(result) = next {
                self.take_record(result, &mut tracker, &mut driver, &mut dedupe)
                    .await;
                seen += 1;
            }
            // Dedupe in batches, several in flight; verdicts feed the sender.
            let full = dedupe.batch.len() >= DEDUPE_BATCH;
            let idle = conversion.records.is_empty();
            if !dedupe.batch.is_empty() && (full || idle || closing) {
                dedupe
                    .start(self.clock.now_secs(), &mut driver, &mut tracker)
                    .await;
            }
            if closing || seen.is_multiple_of(SETTLE_EVERY) {
                dedupe.apply_finished(&mut driver, &mut tracker).await;
                let (fates, rejected) = driver.take_settled();
                tracker.record_fates(fates, rejected);
                self.release_marks(&dedupe.object, &mut tracker).await;
                tracker.confirm_settled();
                if saved.0.elapsed() >= self.settings.checkpoint_every && tracker.base > saved.1 {
                    if let Err(lost) = self.checkpoint_run(at, &mut tracker).await {
                        // Taken over (our lease ran out): stop; nothing more is ours to write.
                        tracing::warn!(bucket = %at.obj.bucket, key = %at.obj.key, outcome = %lost.label(), "checkpoint refused");
                        claim_lost = Some(lost);
                        conversion.records.close();
                    }
                    saved = (Instant::now(), tracker.base);
                }
            }
            if dedupe.error.is_some() && !conversion.records.is_closed() {
                // Stop reading: nothing more can be checked. What was read stays unconfirmed.
                conversion.records.close();
            }
            if closing {
                break;
            }
        }
        while !dedupe.calls.is_empty() {
            dedupe.apply_next(&mut driver, &mut tracker).await;
        }
        let delivery = driver.finish().await;
        tracker.record_fates(delivery.fates, delivery.rejected_payloads);
        self.release_marks(&dedupe.object, &mut tracker).await;
        let read = match conversion.end.await {
            Ok(r) => r,
            Err(e) => Err(DecodeError::Io {
                offset: 0,
                detail: format!("conversion thread: {e}"),
            }),
        };
        let dedupe_requests = self.dedupe.as_ref().map_or(0, |d| d.requests()) - dedupe_before;
        // The object's units so far: this invocation's (its claim, dedupe calls and
        // releases; the claim's final write follows) added to the earlier invocations'.
        at.progress.capacity = at.progress.capacity + crate::store::charged();
        let bytes_read = conversion.bytes_read.load(Ordering::Relaxed);
        let kept = &mut at.progress.bytes_read;
        if kept.len() < BYTES_READ_KEPT {
            kept.push(bytes_read);
        } else if let Some(last) = kept.last_mut() {
            *last += bytes_read;
        }
        RunEnd {
            tracker,
            read,
            stopped: conversion.stopped.load(Ordering::Relaxed) || Instant::now() >= send_until,
            fatal: delivery.fatal,
            dedupe_error: dedupe.error,
            claim_lost,
            requests: RequestCounts {
                http: delivery.requests,
                http_retries: delivery.retries,
                throttled: delivery.throttled,
                dedupe: dedupe_requests,
            },
        }
    }

    /// Releases the dedupe marks of events that will not be delivered (the tracker gathers
    /// them), so that a corrected upload within the window is not dropped as their duplicate.
    /// A release that fails is noted among the object's first errors.
    pub(super) async fn release_marks(&self, object: &str, tracker: &mut Tracker) {
        if tracker.release.is_empty() {
            return;
        }
        let marks = std::mem::take(&mut tracker.release);
        let Some(store) = &self.dedupe else { return };
        let events: Vec<(DedupeKey, RecordRef)> = marks
            .into_iter()
            .map(|(n, key)| {
                let record = RecordRef {
                    object: object.to_string(),
                    n,
                };
                (key, record)
            })
            .collect();
        match store.release(&events).await {
            Ok(released) => {
                tracing::info!(
                    object,
                    marks = events.len(),
                    released,
                    "dedupe marks of undelivered events released"
                )
            }
            Err(e) => {
                let error = format!(
                    "{} dedupe marks of events not delivered were not released ({e}): a corrected \
                     upload of those events within 7 days would be dropped as duplicates",
                    events.len()
                );
                tracing::warn!(object, error = %error, "dedupe marks not released");
                if tracker.errors.len() < crate::report::FIRST_ERRORS {
                    tracker.errors.push(error);
                }
            }
        }
    }

    /// Opens one converted record in the tracker and routes its payloads: events with a
    /// dedupe key to the next dedupe call, the rest straight to the sender.
    async fn take_record(
        &self,
        result: RecordResult,
        tracker: &mut Tracker,
        driver: &mut Driver,
        dedupe: &mut DedupeCalls<A::Dedupe>,
    ) {
        match result {
            RecordResult::Payloads(n, items) => {
                let mut record = OpenRecord::converted(items.len());
                if dedupe.error.is_none() {
                    record.dedupe = items.iter().find_map(|(_, key)| key.clone());
                }
                tracker.open(n, record);
                for (item, key) in items {
                    match key {
                        Some(key) if dedupe.error.is_none() => dedupe.batch.push((item, key)),
                        Some(_) => tracker.record_fate(
                            n,
                            &Fate::NotSent("dedupe unavailable".into()),
                            None,
                        ),
                        None => driver.push(item).await,
                    }
                }
            }
            RecordResult::Skipped(n) => tracker.open(n, OpenRecord::skipped()),
            RecordResult::Invalid { n, reason, raw } => {
                tracker.open(n, OpenRecord::invalid(n, &reason, &raw))
            }
        }
    }
}

/// A short, file-name-safe name for an object (temporary files; keys may be 1,024 bytes).
pub(super) fn object_tag(obj: &ObjectRef) -> String {
    use md5::{Digest, Md5};
    Md5::digest(object_id(obj).as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a record names its object in the dedupe table: bucket/key, and the version when known.
pub(super) fn object_id(obj: &ObjectRef) -> String {
    match &obj.version_id {
        Some(v) => format!("{}/{}?v={v}", obj.bucket, obj.key),
        None => format!("{}/{}", obj.bucket, obj.key),
    }
}
