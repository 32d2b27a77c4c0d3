//! The progress line on standard error (`convert`, `send`, `import`, `scan`): bytes read of
//! the total, records, events sent and the rates, redrawn a few times a second while standard
//! error is a terminal, and nothing at all when it is not (pipes, files, CI logs).
//!
//! The counters are atomics that the work updates as it goes: a reader that counts the bytes
//! it hands on, and for the importer the source and claims ports wrapped (`MeteredSource`,
//! `MeteredClaims`) so that the pipeline itself knows nothing of it.

use std::io::{self, IsTerminal, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::claims::{ClaimKey, ClaimOutcome, ClaimState, ClaimStore, Held, StoreError};
use crate::report::Progress;
use crate::source::{
    Body, Content, ListPage, ObjectInfo, ObjectSource, Opened, Ranged, SourceError,
};

/// What the line shows, updated by the work from any thread.
#[derive(Default)]
pub struct Meter {
    pub bytes: AtomicU64,
    /// Bytes to read in all (0: unknown).
    pub total: AtomicU64,
    pub records: AtomicU64,
    pub sent: AtomicU64,
    /// Objects finished (scan).
    pub objects: AtomicU64,
    /// Whether the counts of events sent mean anything for this command.
    pub sends: AtomicBool,
    /// Whether the line is drawn (standard error is a terminal): extra requests that only
    /// serve the line (a HEAD for the size) are made only then.
    pub visible: AtomicBool,
    /// Records and events of the objects finished before the current one (scan).
    done_records: AtomicU64,
    done_sent: AtomicU64,
    /// The object being read and the byte count when it was first opened: reading it again
    /// (the integrity check, then the import; a resume) does not count its bytes twice.
    current: Mutex<(String, u64)>,
}

impl Meter {
    fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(0.001);
        let bytes = self.bytes.load(Relaxed);
        let total = self.total.load(Relaxed);
        let mut out = if total > 0 {
            format!(
                "read {} of {} ({:.0}%)",
                HumanBytes(bytes),
                HumanBytes(total),
                (bytes as f64 * 100.0 / total as f64).min(100.0)
            )
        } else {
            format!("read {}", HumanBytes(bytes))
        };
        let objects = self.objects.load(Relaxed);
        if objects > 0 {
            out.push_str(&format!(" · objects {objects}"));
        }
        let records = self.records.load(Relaxed);
        if records > 0 {
            out.push_str(&format!(
                " · records {records} ({:.0}/s)",
                records as f64 / secs
            ));
        }
        if self.sends.load(Relaxed) {
            let sent = self.sent.load(Relaxed);
            out.push_str(&format!(
                " · events sent {sent} ({:.0}/s)",
                sent as f64 / secs
            ));
        }
        out.push_str(&format!(
            " · {}/s",
            HumanBytes((bytes as f64 / secs) as u64)
        ));
        out
    }

    /// An object's confirmed counts (from its claim's progress).
    fn object_counts(&self, records: u64, sent: u64) {
        self.records
            .store(self.done_records.load(Relaxed) + records, Relaxed);
        self.sent
            .store(self.done_sent.load(Relaxed) + sent, Relaxed);
    }

    /// An object ended with these counts: they become part of the totals.
    fn object_done(&self, records: u64, sent: u64) {
        self.done_records.fetch_add(records, Relaxed);
        self.done_sent.fetch_add(sent, Relaxed);
        self.object_counts(0, 0);
        self.objects.fetch_add(1, Relaxed);
    }

    /// Starts (or starts again) reading `key`.
    fn opening(&self, key: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 == key {
            self.bytes.store(current.1, Relaxed);
        } else {
            *current = (key.to_string(), self.bytes.load(Relaxed));
        }
    }
}

/// The line itself: drawn on standard error when it is a terminal, hidden otherwise.
pub struct ProgressLine {
    pub meter: Arc<Meter>,
    bar: ProgressBar,
}

impl ProgressLine {
    /// A line for a command; `sends`: whether it sends events.
    pub fn start(sends: bool) -> ProgressLine {
        let meter = Arc::new(Meter::default());
        meter.sends.store(sends, Relaxed);
        let visible = io::stderr().is_terminal();
        meter.visible.store(visible, Relaxed);
        let bar = if visible {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
        } else {
            ProgressBar::hidden()
        };
        let m = meter.clone();
        let style = ProgressStyle::with_template("{spinner} {line}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key(
                "line",
                move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&m.line(state.elapsed()));
                },
            );
        bar.set_style(style);
        if visible {
            bar.enable_steady_tick(Duration::from_millis(250));
        }
        ProgressLine { meter, bar }
    }

    /// Wraps a reader so that its bytes are counted.
    pub fn reader<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader {
            inner,
            meter: self.meter.clone(),
        }
    }

    /// Prints `text` (made only when needed) to standard output without tearing the line.
    pub fn bar_println(&self, text: impl FnOnce() -> String) {
        let text = text();
        if self.bar.is_hidden() {
            print!("{text}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else {
            self.bar.suspend(|| {
                print!("{text}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            });
        }
    }

    /// Removes the line (before the command prints its result).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A reader that counts the bytes it hands on.
pub struct CountingReader<R> {
    inner: R,
    meter: Arc<Meter>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.bytes.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

/// A local file read by ranges (Parquet in place), its bytes counted as they are read.
impl crate::decode::parquet::ReadAt for CountingReader<std::fs::File> {
    fn len(&self) -> u64 {
        crate::decode::parquet::ReadAt::len(&self.inner)
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<bytes::Bytes> {
        let b = crate::decode::parquet::ReadAt::read_at(&self.inner, offset, len)?;
        self.meter.bytes.fetch_add(b.len() as u64, Relaxed);
        Ok(b)
    }
}

/// The storage port, with the bytes read counted and a listing's sizes as the total.
pub struct MeteredSource<S> {
    pub inner: S,
    pub meter: Arc<Meter>,
}

impl<S: ObjectSource> ObjectSource for MeteredSource<S> {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        want: &Content,
        from: u64,
    ) -> Result<Opened, SourceError> {
        if self.meter.visible.load(Relaxed) && self.meter.total.load(Relaxed) == 0 {
            if let Ok(info) = self.inner.head(bucket, key).await {
                self.meter.total.store(info.size, Relaxed);
            }
        }
        let opened = self.inner.open(bucket, key, want, from).await?;
        self.meter.opening(&format!("{bucket}/{key}"));
        Ok(Opened {
            reader: Box::new(CountingReader {
                inner: opened.reader,
                meter: self.meter.clone(),
            }),
            content: opened.content,
        })
    }

    async fn ranges(&self, bucket: &str, key: &str, want: &Content) -> Result<Ranged, SourceError> {
        // Parquet reads by ranges; its progress shows at each checkpoint.
        self.inner.ranges(bucket, key, want).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, SourceError> {
        self.inner.head(bucket, key).await
    }

    async fn get_small(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, Option<String>), SourceError> {
        self.inner.get_small(bucket, key, max_bytes).await
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        content_type: &str,
    ) -> Result<(), SourceError> {
        self.inner.put(bucket, key, body, content_type).await
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<ListPage, SourceError> {
        let page = self
            .inner
            .list_page(bucket, prefix, start_after, max)
            .await?;
        self.meter
            .total
            .fetch_add(page.objects.iter().map(|o| o.size).sum(), Relaxed);
        Ok(page)
    }
}

/// The claims port, with each checkpoint's confirmed counts shown.
pub struct MeteredClaims<C> {
    pub inner: C,
    pub meter: Arc<Meter>,
}

fn counts_of(progress: &str) -> (u64, u64) {
    let c = Progress::parse(progress).counts;
    (c.records, c.sent)
}

impl<C: ClaimStore> ClaimStore for MeteredClaims<C> {
    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<ClaimOutcome, StoreError> {
        let out = self.inner.claim(key, owner, lease_until, now).await?;
        if let ClaimOutcome::Acquired { progress, .. } = &out {
            let (records, sent) = counts_of(progress);
            self.meter.object_counts(records, sent);
        }
        Ok(out)
    }

    async fn checkpoint(
        &self,
        key: &ClaimKey,
        owner: &str,
        records_confirmed: u64,
        progress: &str,
        lease_until: i64,
    ) -> Result<Held, StoreError> {
        let (records, sent) = counts_of(progress);
        self.meter.object_counts(records, sent);
        self.inner
            .checkpoint(key, owner, records_confirmed, progress, lease_until)
            .await
    }

    async fn complete(
        &self,
        key: &ClaimKey,
        owner: &str,
        summary: &str,
    ) -> Result<Held, StoreError> {
        let v: serde_json::Value = serde_json::from_str(summary).unwrap_or_default();
        let c = &v["counts"];
        self.meter.object_done(
            c["records"].as_u64().unwrap_or(0),
            c["sent"].as_u64().unwrap_or(0),
        );
        self.inner.complete(key, owner, summary).await
    }

    async fn fail(&self, key: &ClaimKey, owner: &str, reason: &str) -> Result<Held, StoreError> {
        self.meter.object_done(0, 0);
        self.inner.fail(key, owner, reason).await
    }

    async fn release(&self, key: &ClaimKey, owner: &str, now: i64) -> Result<Held, StoreError> {
        self.inner.release(key, owner, now).await
    }

    async fn reset_failed(&self, key: &ClaimKey, progress: &str) -> Result<bool, StoreError> {
        self.inner.reset_failed(key, progress).await
    }

    async fn get(&self, key: &ClaimKey) -> Result<Option<ClaimState>, StoreError> {
        self.inner.get(key).await
    }

    async fn get_many(&self, keys: &[ClaimKey]) -> Result<Vec<Option<ClaimState>>, StoreError> {
        self.inner.get_many(keys).await
    }

    async fn mark_queued(
        &self,
        keys: &[ClaimKey],
        queued_until: i64,
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        self.inner.mark_queued(keys, queued_until, now).await
    }

    async fn unmark_queued(&self, key: &ClaimKey, queued_until: i64) -> Result<(), StoreError> {
        self.inner.unmark_queued(key, queued_until).await
    }

    async fn confirm_queued(
        &self,
        keys: &[ClaimKey],
        from: i64,
        to: i64,
    ) -> Result<(), StoreError> {
        self.inner.confirm_queued(keys, from, to).await
    }

    async fn clear_queued(&self, key: &ClaimKey) -> Result<bool, StoreError> {
        self.inner.clear_queued(key).await
    }

    fn requests(&self) -> u64 {
        self.inner.requests()
    }

    async fn list(&self, source: &str) -> Result<Vec<(ClaimKey, ClaimState)>, StoreError> {
        self.inner.list(source).await
    }
}

/// The importer on AWS (or a local stack) with its progress counted: what `import`, `scan`
/// and `retry` run.
pub type MeteredPipeline = crate::pipeline::Pipeline<
    MeteredClaims<crate::claims::dynamo::DynamoClaims>,
    crate::dedupe::dynamo::DynamoDedupe,
    MeteredSource<crate::source::s3::S3Source>,
    crate::queue::sqs::SqsQueue,
>;

/// `crate::aws::pipeline`, with the claims and the source counted by `meter`.
pub fn metered_pipeline(
    clients: &crate::aws::Clients,
    settings: crate::settings::Settings,
    meter: Arc<Meter>,
) -> MeteredPipeline {
    let claims =
        crate::claims::dynamo::DynamoClaims::new(clients.dynamodb.clone(), &settings.claims_table);
    let dedupe = settings
        .dedupe_table
        .as_ref()
        .map(|t| crate::dedupe::dynamo::DynamoDedupe::new(clients.dynamodb.clone(), t));
    let queue = crate::queue::sqs::SqsQueue::new(clients.sqs.clone(), settings.queue_url.clone());
    let source = crate::aws::source(clients);
    let ports = crate::pipeline::Ports {
        claims: MeteredClaims {
            inner: claims,
            meter: meter.clone(),
        },
        dedupe,
        source: MeteredSource {
            inner: source,
            meter,
        },
        queue,
        http: reqwest::Client::new(),
        clock: crate::pipeline::Clock::system(),
    };
    crate::pipeline::Pipeline::new(ports, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_bytes_of_the_total_records_events_and_rates() {
        let m = Meter::default();
        m.sends.store(true, Relaxed);
        m.total.store(4 << 20, Relaxed);
        m.opening("b/k");
        m.bytes.store(1 << 20, Relaxed);
        m.object_counts(1000, 900);
        let line = m.line(Duration::from_secs(2));
        assert_eq!(
            line,
            "read 1.00 MiB of 4.00 MiB (25%) · records 1000 (500/s) · events sent 900 (450/s) · 512.00 KiB/s"
        );
        // Reading the same object again (check, then import) does not count it twice.
        m.opening("b/k");
        assert_eq!(m.bytes.load(Relaxed), 0);
        m.object_done(1000, 900);
        m.object_counts(10, 5);
        assert!(m
            .line(Duration::from_secs(1))
            .contains("objects 1 · records 1010"));
    }
}
