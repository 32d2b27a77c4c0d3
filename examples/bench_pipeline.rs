//! The whole pipeline without the local stack: a folder for the bucket, the in-memory claims and
//! dedupe stores behind an adapter that adds a DynamoDB-like latency to every call, and the
//! endpoint emulator (in this process) with a latency per request. So the figures are our
//! code's, not LocalStack's.
//!
//! Usage: bench_pipeline LARGE.jsonl.gz CONVERTER.json
//! Settings (environment): BENCH_STORE_MS (per store call, default 5), BENCH_ENDPOINT_MS (per
//! request, default 50), BENCH_SMALL_OBJECTS (default 2000), BENCH_SMALL_RECORDS (records per
//! small object, default 20), S3I_OBJECT_CONCURRENCY (default: the importer's), S3I_THREADS.
//!
//! Prints events/s for the large object (dedupe on), then objects/s for the small ones handled
//! as SQS batches of 10 (as one Lambda instance would), at the configured concurrency and at
//! S3I_OBJECT_CONCURRENCY=1, and a last JSON line with the figures.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use s3_import::claims::{ClaimKey, ClaimOutcome, ClaimState, ClaimStore, Held, MemoryClaims};
use s3_import::dedupe::{DedupeKey, DedupeStore, MemoryDedupe, RecordRef, StoreError, Verdict};
use s3_import::emulator::{serve, EmulatorConfig};
use s3_import::notify::ObjectRef;
use s3_import::pipeline::{Clock, ObjectOutcome, Pipeline, Ports};
use s3_import::queue::MemoryQueue;
use s3_import::settings::Settings;
use s3_import::source::LocalSource;
use serde_json::json;
use tokio::time::Instant;

/// A store that takes `latency` per call, like a DynamoDB round trip.
struct Slow<T> {
    inner: T,
    latency: Duration,
    calls: AtomicU64,
}

impl<T> Slow<T> {
    fn new(inner: T, latency: Duration) -> Self {
        Slow {
            inner,
            latency,
            calls: AtomicU64::new(0),
        }
    }

    async fn wait(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
    }
}

impl<T: ClaimStore> ClaimStore for Slow<T> {
    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<ClaimOutcome, StoreError> {
        self.wait().await;
        self.inner.claim(key, owner, lease_until, now).await
    }
    async fn checkpoint(
        &self,
        key: &ClaimKey,
        owner: &str,
        records_confirmed: u64,
        progress: &s3_import::claims::Progress,
        lease_until: i64,
    ) -> Result<Held, StoreError> {
        self.wait().await;
        self.inner
            .checkpoint(key, owner, records_confirmed, progress, lease_until)
            .await
    }
    async fn complete(
        &self,
        key: &ClaimKey,
        owner: &str,
        summary: &s3_import::claims::Summary,
    ) -> Result<Held, StoreError> {
        self.wait().await;
        self.inner.complete(key, owner, summary).await
    }
    async fn fail(&self, key: &ClaimKey, owner: &str, reason: &str) -> Result<Held, StoreError> {
        self.wait().await;
        self.inner.fail(key, owner, reason).await
    }
    async fn release(&self, key: &ClaimKey, owner: &str, now: i64) -> Result<Held, StoreError> {
        self.wait().await;
        self.inner.release(key, owner, now).await
    }
    async fn reset_failed(
        &self,
        key: &ClaimKey,
        progress: &s3_import::claims::Progress,
    ) -> Result<bool, StoreError> {
        self.wait().await;
        self.inner.reset_failed(key, progress).await
    }
    async fn get(&self, key: &ClaimKey) -> Result<Option<ClaimState>, StoreError> {
        self.wait().await;
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[ClaimKey]) -> Result<Vec<Option<ClaimState>>, StoreError> {
        self.wait().await;
        self.inner.get_many(keys).await
    }
    async fn mark_queued(
        &self,
        keys: &[ClaimKey],
        queued_until: i64,
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        self.wait().await;
        self.inner.mark_queued(keys, queued_until, now).await
    }
    async fn unmark_queued(&self, key: &ClaimKey, queued_until: i64) -> Result<(), StoreError> {
        self.wait().await;
        self.inner.unmark_queued(key, queued_until).await
    }
    async fn confirm_queued(
        &self,
        keys: &[ClaimKey],
        from: i64,
        to: i64,
    ) -> Result<(), StoreError> {
        self.wait().await;
        self.inner.confirm_queued(keys, from, to).await
    }
    async fn clear_queued(&self, key: &ClaimKey) -> Result<bool, StoreError> {
        self.wait().await;
        self.inner.clear_queued(key).await
    }
    async fn list(&self, source: &str) -> Result<Vec<(ClaimKey, ClaimState)>, StoreError> {
        self.wait().await;
        self.inner.list(source).await
    }
}

impl<T: DedupeStore> DedupeStore for Slow<T> {
    async fn check_and_mark(
        &self,
        events: &[(DedupeKey, RecordRef)],
        now: i64,
    ) -> Result<Vec<Verdict>, StoreError> {
        self.wait().await;
        self.inner.check_and_mark(events, now).await
    }

    async fn release(&self, events: &[(DedupeKey, RecordRef)]) -> Result<usize, StoreError> {
        self.wait().await;
        self.inner.release(events).await
    }

    fn requests(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

type Bench = Pipeline<(
    Slow<MemoryClaims>,
    Slow<MemoryDedupe>,
    LocalSource,
    MemoryQueue,
)>;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// An emulator with `latency` per request, on a free loopback port: its base URL.
async fn emulator(dir: PathBuf, latency: Duration) -> String {
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = EmulatorConfig::new(dir);
    config.latency = latency;
    let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    tokio::spawn(async move {
        let _ = serve("127.0.0.1:0".parse().unwrap(), config, move |a| {
            let _ = tx.send(a);
        })
        .await;
    });
    format!("http://{}", rx.await.unwrap())
}

struct Setup {
    root: PathBuf,
    work: PathBuf,
    store: Duration,
    endpoint: Duration,
}

impl Setup {
    /// A pipeline over fresh stores and a fresh emulator, at `concurrency` objects at once.
    async fn pipeline(&self, name: &str, concurrency: Option<usize>) -> Bench {
        let endpoint = emulator(self.work.join(format!("received-{name}")), self.endpoint).await;
        let concurrency = concurrency.map(|c| c.to_string());
        let get = |k: &str| -> Option<String> {
            match k {
                "S3I_SOURCE" => Some(name.to_string()),
                "S3I_CONVERTER" => Some("s3://bench/config/converter.json".into()),
                "S3I_REPORTS" => Some("s3://bench/reports/".into()),
                "S3I_PREFIX" => Some("in/".into()),
                "AMPLITUDE_API_KEY" => Some("bench".into()),
                "S3I_ENDPOINT" => Some(endpoint.clone()),
                "S3I_OBJECT_CONCURRENCY" if concurrency.is_some() => concurrency.clone(),
                k => std::env::var(k).ok().filter(|v| !v.is_empty()),
            }
        };
        let settings = Settings::from_lookup(&get).unwrap_or_else(|e| panic!("{e:?}"));
        Pipeline::new(
            Ports {
                claims: Slow::new(MemoryClaims::default(), self.store),
                dedupe: Some(Slow::new(MemoryDedupe::default(), self.store)),
                source: LocalSource::new(&self.root),
                queue: MemoryQueue::default(),
                http: reqwest::Client::new(),
                clock: Clock::system(),
            },
            settings,
        )
    }

    fn put(&self, key: &str, body: &[u8]) {
        let path = self.root.join("bench").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The first `n` lines of a gzip file, whole.
fn first_lines(path: &Path, n: usize) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).unwrap();
    let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file));
    reader
        .split(b'\n')
        .take(n)
        .map(|l| {
            let mut l = l.unwrap();
            l.push(b'\n');
            l
        })
        .collect()
}

/// Imports `keys` as SQS batches of 10 messages, one batch after another; seconds taken.
async fn small_run(p: &Bench, keys: &[String]) -> f64 {
    let started = Instant::now();
    for (b, batch) in keys.chunks(10).enumerate() {
        let records: Vec<_> = batch
            .iter()
            .enumerate()
            .map(|(i, key)| {
                json!({"messageId": format!("{b}-{i}"), "receiptHandle": "h", "eventSource": "aws:sqs",
                       "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q",
                       "body": json!({"s3import": {"bucket": "bench", "key": key}}).to_string()})
            })
            .collect();
        let event = json!({ "Records": records });
        let result = s3_import::invoke::handle(
            p,
            &event,
            Instant::now() + Duration::from_secs(600),
            "bench",
        )
        .await;
        for m in &result.messages {
            for (o, outcome) in &m.objects {
                assert!(
                    matches!(outcome, ObjectOutcome::Completed(_)),
                    "{}: {}",
                    o.key,
                    outcome.label()
                );
            }
        }
    }
    started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, large, converter] = &args[..] else {
        eprintln!("usage: bench_pipeline LARGE.jsonl.gz CONVERTER.json");
        std::process::exit(2);
    };
    let work = std::env::temp_dir().join(format!("s3i-bench-pipeline-{}", std::process::id()));
    let setup = Setup {
        root: work.join("buckets"),
        work: work.clone(),
        store: Duration::from_millis(env_num("BENCH_STORE_MS", 5)),
        endpoint: Duration::from_millis(env_num("BENCH_ENDPOINT_MS", 50)),
    };
    setup.put("config/converter.json", &std::fs::read(converter).unwrap());
    let path = setup.root.join("bench/in/large.jsonl.gz");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(large, &path).unwrap();
    println!(
        "in memory: store calls +{} ms each (claims, dedupe), endpoint +{} ms per request",
        setup.store.as_millis(),
        setup.endpoint.as_millis()
    );

    // One large object, dedupe on.
    let p = setup.pipeline("large", None).await;
    let obj = ObjectRef {
        bucket: "bench".into(),
        key: "in/large.jsonl.gz".into(),
        version_id: None,
        size: None,
        etag: None,
        sequencer: None,
    };
    let started = Instant::now();
    let outcome = p.import_to_end(&obj, "bench").await;
    let secs = started.elapsed().as_secs_f64();
    let ObjectOutcome::Completed(report) = outcome else {
        panic!("large object: {}", outcome.label());
    };
    let sent = report.counts.sent;
    let large_eps = sent as f64 / secs;
    println!(
        "one large object: {} records, {sent} events sent in {secs:.1} s = {large_eps:.0} events/s \
         (dedupe on, {} dedupe calls; threads {})",
        report.counts.records, report.dedupe_requests, p.settings().threads
    );
    drop(p);

    // Many small objects, from the large one's first lines.
    let n = env_num("BENCH_SMALL_OBJECTS", 2000) as usize;
    let per = env_num("BENCH_SMALL_RECORDS", 20) as usize;
    let lines = first_lines(large.as_ref(), per * 50);
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let start = (i * per) % lines.len().max(1);
        let mut body = Vec::new();
        for l in lines.iter().cycle().skip(start).take(per) {
            body.extend_from_slice(l);
        }
        let key = format!("in/small/{i:05}.jsonl.gz");
        setup.put(&key, &gzip(&body));
        keys.push(key);
    }
    let p = setup.pipeline("small-at-once", None).await;
    let at_once = p.settings().object_concurrency;
    let secs = small_run(&p, &keys).await;
    let fast = n as f64 / secs;
    println!(
        "{n} small objects ({per} records each), S3I_OBJECT_CONCURRENCY={at_once}: {secs:.1} s = {fast:.1} objects/s"
    );
    drop(p);
    let p = setup.pipeline("small-one", Some(1)).await;
    let secs = small_run(&p, &keys).await;
    let slow = n as f64 / secs;
    println!(
        "{n} small objects, S3I_OBJECT_CONCURRENCY=1: {secs:.1} s = {slow:.1} objects/s; at once is {:.1}× faster",
        fast / slow
    );
    println!(
        "{}",
        json!({"large_events": sent, "large_events_per_sec": large_eps.round(),
               "small_objects": n, "small_concurrency": at_once,
               "small_objects_per_sec": (fast * 10.0).round() / 10.0,
               "small_objects_per_sec_one_at_a_time": (slow * 10.0).round() / 10.0,
               "speedup": (fast / slow * 100.0).round() / 100.0})
    );
    let _ = std::fs::remove_dir_all(&work);
}
