//! Backfills at scale. In memory (no stack needed): the objects of one batch are imported at
//! once and the partial batch response still names exactly the messages to retry; a notice that
//! comes too late in an invocation is handed on at once. On the local AWS stack (LocalStack):
//! a scan of a bucket over several time-limited invocations, continued by scan messages on the
//! queue, queues every object once (a second scan leaves the queued ones alone) and every
//! object is imported once. Run the stack tests with `AWS_ENDPOINT_URL` set (`make test`).

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use s3_import::aws::{AwsPipeline, Clients};
use s3_import::claims::{
    ClaimKey, ClaimOutcome, ClaimState, ClaimStore, Held, MemoryClaims, StoreError,
};
use s3_import::dedupe::MemoryDedupe;
use s3_import::invoke::lambda_response;
use s3_import::pipeline::{Clock, Pipeline, Ports};
use s3_import::queue::{Enqueue, MemoryQueue, NoQueue};
use s3_import::settings::Settings;
use s3_import::source::{
    Body, Content, ListPage, LocalSource, ObjectInfo, ObjectSource, Opened, Ranged, SourceError,
};
use serde_json::{json, Value};
use tokio::time::Instant;

use common::{events, unique, CONVERTER};

/// Claims that take `delay` per `claim` call and record how many calls were in flight at once.
struct Watched {
    inner: MemoryClaims,
    delay: Duration,
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Watched {
    fn new(delay: Duration) -> Self {
        Watched {
            inner: MemoryClaims::default(),
            delay,
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        }
    }
}

impl ClaimStore for Watched {
    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<ClaimOutcome, StoreError> {
        let at_once = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(at_once, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
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
        self.inner.complete(key, owner, summary).await
    }
    async fn fail(&self, key: &ClaimKey, owner: &str, reason: &str) -> Result<Held, StoreError> {
        self.inner.fail(key, owner, reason).await
    }
    async fn release(&self, key: &ClaimKey, owner: &str, now: i64) -> Result<Held, StoreError> {
        self.inner.release(key, owner, now).await
    }
    async fn reset_failed(
        &self,
        key: &ClaimKey,
        progress: &s3_import::claims::Progress,
    ) -> Result<bool, StoreError> {
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
    async fn list(&self, source: &str) -> Result<Vec<(ClaimKey, ClaimState)>, StoreError> {
        self.inner.list(source).await
    }
}

/// A bucket folder with the converter, an emulator and settings for them (in memory).
struct Local {
    root: PathBuf,
    received: PathBuf,
    vars: HashMap<String, String>,
}

impl Local {
    async fn new(name: &str, latency: Duration) -> Local {
        let (endpoint, received) = common::emulator(&format!("s3i-scale-{name}"), |c| {
            c.api_key = Some("test-key".into());
            c.latency = latency;
        })
        .await;
        let root = std::env::temp_dir().join(unique(&format!("s3i-scale-{name}-buckets")));
        let vars = [
            ("S3I_SOURCE", unique(name)),
            ("S3I_CONVERTER", "s3://data/config/converter.json".into()),
            ("S3I_REPORTS", "s3://data/reports/".into()),
            ("S3I_PREFIX", "in/".into()),
            ("AMPLITUDE_API_KEY", "test-key".into()),
            ("S3I_ENDPOINT", endpoint),
            ("S3I_STOP_MARGIN_SECS", "1".into()),
            ("S3I_MAX_RUN_SECS", "60".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let l = Local {
            root,
            received,
            vars,
        };
        l.put("config/converter.json", CONVERTER.as_bytes());
        l
    }

    fn put(&self, key: &str, body: &[u8]) {
        let path = self.root.join("data").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let mut vars = self.vars.clone();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        Settings::from_lookup(&|k| vars.get(k).cloned()).unwrap()
    }

    fn pipeline<C: ClaimStore + 'static, Q: Enqueue + 'static>(
        &self,
        claims: C,
        queue: Q,
        extra: &[(&str, &str)],
    ) -> Pipeline<(C, MemoryDedupe, LocalSource, Q)> {
        Pipeline::new(
            Ports {
                claims,
                dedupe: Some(MemoryDedupe::default()),
                source: LocalSource::new(&self.root),
                queue,
                http: reqwest::Client::new(),
                clock: Clock::system(),
            },
            self.settings(extra),
        )
    }
}

/// An SQS event of (message id, body) records.
fn sqs_event(bodies: &[(String, String)]) -> Value {
    json!({"Records": bodies.iter().map(|(id, body)| json!({
        "messageId": id, "receiptHandle": format!("h-{id}"), "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q", "awsRegion": "us-east-1"
    })).collect::<Vec<_>>()})
}

fn object_message(key: &str) -> String {
    json!({"s3import": {"bucket": "data", "key": key}}).to_string()
}

fn failures(response: &Value) -> Vec<String> {
    let mut ids: Vec<String> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_objects_of_a_batch_are_imported_at_once_and_the_batch_response_stays_exact() {
    let mut bodies: Vec<(String, String)> = (0..8)
        .map(|i| (format!("m{i}"), object_message(&format!("in/o{i}.json"))))
        .collect();
    bodies.push(("m-unreadable".into(), "{not json".into()));
    bodies.push(("m-broken".into(), object_message("in/broken.json.gz")));
    bodies.push(("m-held".into(), object_message("in/held.json")));
    let event = sqs_event(&bodies);

    let mut runs = BTreeMap::new();
    for concurrency in ["1", "10"] {
        let l = Local::new(&format!("batch{concurrency}"), Duration::from_millis(50)).await;
        for i in 0..8 {
            l.put(&format!("in/o{i}.json"), &events(&format!("o{i}"), 0..30));
        }
        l.put("in/broken.json.gz", b"\x1f\x8b\x08\x00 not gzip at all");
        l.put("in/held.json", &events("held", 0..5));
        let p = l.pipeline(
            Watched::new(Duration::from_millis(100)),
            MemoryQueue::default(),
            &[("S3I_OBJECT_CONCURRENCY", concurrency)],
        );
        // Another invocation holds one object with a live lease.
        let held = ClaimKey {
            source: p.settings().source.clone(),
            bucket: "data".into(),
            key: "in/held.json".into(),
        };
        p.claims()
            .inner
            .claim(&held, "someone", i64::MAX / 2, 0)
            .await
            .unwrap();
        let started = Instant::now();
        let result =
            s3_import::invoke::handle(&p, &event, Instant::now() + Duration::from_secs(60), "req")
                .await;
        let took = started.elapsed();
        let response = lambda_response(&event, &result).unwrap();
        // Exactly the unreadable message and the held object's come back; the broken object
        // failed for good (acknowledged), the others completed.
        assert_eq!(
            failures(&response),
            ["m-held", "m-unreadable"],
            "{response}"
        );
        let labels: BTreeMap<String, String> = result
            .messages
            .iter()
            .flat_map(|m| m.objects.iter())
            .map(|(o, outcome)| (o.key.clone(), outcome.label()))
            .collect();
        for i in 0..8 {
            assert_eq!(labels[&format!("in/o{i}.json")], "completed", "{labels:?}");
        }
        assert!(
            labels["in/broken.json.gz"].starts_with("failed"),
            "{labels:?}"
        );
        let held_msg = result
            .messages
            .iter()
            .find(|m| m.message_id.as_deref() == Some("m-held"))
            .unwrap();
        assert!(held_msg
            .retry_after
            .is_some_and(|d| d > Duration::from_secs(60)));
        // Every event of the completed objects arrived once.
        let received = common::received(&l.received);
        assert_eq!(received.len(), 8 * 30);
        assert!(received.values().all(|n| *n == 1), "{received:?}");
        runs.insert(concurrency, (p.claims().most.load(Ordering::SeqCst), took));
    }
    let (one, one_took) = runs["1"];
    let (ten, ten_took) = runs["10"];
    assert_eq!(one, 1, "one at a time");
    assert!(
        ten >= 8,
        "{ten} claims at once with S3I_OBJECT_CONCURRENCY=10"
    );
    assert!(
        ten_took < one_took,
        "at once {ten_took:?}, one at a time {one_took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_that_comes_too_late_is_handed_on_at_once() {
    let l = Local::new("late", Duration::ZERO).await;
    l.put("in/late.json", &events("late", 0..10));
    let event = sqs_event(&[("m1".into(), object_message("in/late.json"))]);
    // Stop margin 1 s + 2 s of work needed: 2 s left is too little.
    let late = || Instant::now() + Duration::from_secs(2);

    // With a queue: a continuation message carries the object; the notice is acknowledged,
    // so the dead-letter queue's receive count is not spent on it.
    let p = l.pipeline(MemoryClaims::default(), MemoryQueue::default(), &[]);
    let result = s3_import::invoke::handle(&p, &event, late(), "req").await;
    let response = lambda_response(&event, &result).unwrap();
    assert_eq!(failures(&response), Vec::<String>::new(), "{response}");
    let sent = p.queue().take();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&sent[0]).unwrap()["s3import"]["key"],
        "in/late.json"
    );
    // The continuation imports it in the next invocation.
    let next = sqs_event(&[("m2".into(), sent[0].clone())]);
    let result =
        s3_import::invoke::handle(&p, &next, Instant::now() + Duration::from_secs(60), "req2")
            .await;
    assert_eq!(result.messages[0].objects[0].1.label(), "completed");

    // Without a queue: handed back with visibility 0 (back at once).
    let p = l.pipeline(MemoryClaims::default(), NoQueue, &[]);
    let result = s3_import::invoke::handle(&p, &event, late(), "req").await;
    let response = lambda_response(&event, &result).unwrap();
    assert_eq!(failures(&response), ["m1"]);
    assert_eq!(result.messages[0].retry_after, Some(Duration::ZERO));
}

/// The bucket folder, read slowly while `slow` is set (a trickle of 4 KiB every 50 ms, as a
/// throttled or far-away store would give): the integrity pass of a compressed object then
/// takes seconds.
struct SlowSource {
    inner: LocalSource,
    slow: Arc<AtomicBool>,
    /// While set, a read hangs for 4 s (a stalled connection).
    stall: Arc<AtomicBool>,
}

struct Trickle {
    inner: Box<dyn std::io::Read + Send>,
    slow: Arc<AtomicBool>,
    stall: Arc<AtomicBool>,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stall.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(4));
        }
        if !self.slow.load(Ordering::SeqCst) {
            return self.inner.read(buf);
        }
        std::thread::sleep(Duration::from_millis(50));
        let n = buf.len().min(4096);
        self.inner.read(&mut buf[..n])
    }
}

impl ObjectSource for SlowSource {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        want: &Content,
        from: u64,
    ) -> Result<Opened, SourceError> {
        let opened = self.inner.open(bucket, key, want, from).await?;
        Ok(Opened {
            reader: Box::new(Trickle {
                inner: opened.reader,
                slow: self.slow.clone(),
                stall: self.stall.clone(),
            }),
            content: opened.content,
        })
    }
    async fn ranges(&self, bucket: &str, key: &str, want: &Content) -> Result<Ranged, SourceError> {
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
        self.inner.list_page(bucket, prefix, start_after, max).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrity_pass_that_cannot_finish_in_time_is_handed_on_not_timed_out() {
    let l = Local::new("verify-late", Duration::ZERO).await;
    // About 250 KB of gzip: some 3 s to read at the trickle, more than the 2.5 s left.
    let lines: Vec<u8> = (0..20_000u64)
        .flat_map(|i| {
            format!(
                "{{\"id\":\"v-{i}\",\"type\":\"Played\",\"device\":\"device-{}\",\"ts\":{},\"pad\":\"{:x}\"}}\n",
                i % 50,
                1_790_000_000_000u64 + i,
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )
            .into_bytes()
        })
        .collect();
    let data = common::gzip(&lines);
    assert!(data.len() > 200_000, "{} bytes", data.len());
    l.put("in/late.json.gz", &data);
    let slow = Arc::new(AtomicBool::new(true));
    let p = Pipeline::new(
        Ports {
            claims: MemoryClaims::default(),
            dedupe: Some(MemoryDedupe::default()),
            source: SlowSource {
                inner: LocalSource::new(&l.root),
                slow: slow.clone(),
                stall: Arc::default(),
            },
            queue: MemoryQueue::default(),
            http: reqwest::Client::new(),
            clock: Clock::system(),
        },
        l.settings(&[]),
    );
    let event = sqs_event(&[("m1".into(), object_message("in/late.json.gz"))]);
    // 3.5 s left (stop margin 1 s): enough to start the object, not to check it.
    let started = Instant::now();
    let deadline = started + Duration::from_millis(3_500);
    let result = s3_import::invoke::handle(&p, &event, deadline, "req1").await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3_500),
        "the invocation ran into its deadline: {took:?}"
    );
    let label = result.messages[0].objects[0].1.label();
    assert!(
        label.contains("integrity check stopped at the deadline"),
        "{label}"
    );
    // Handed on: the notice is acknowledged, a continuation carries the object, its claim is
    // free at once, and nothing was sent.
    assert_eq!(
        failures(&lambda_response(&event, &result).unwrap()),
        Vec::<String>::new()
    );
    let sent = p.queue().take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let key = ClaimKey {
        source: p.settings().source.clone(),
        bucket: "data".into(),
        key: "in/late.json.gz".into(),
    };
    match p.claims().get(&key).await.unwrap() {
        Some(ClaimState::InProgress { lease_until, .. }) => {
            assert!(lease_until < p.clock().now_secs(), "released")
        }
        other => panic!("{other:?}"),
    }
    assert!(common::received(&l.received).is_empty());

    // Still too slow in the next invocation: handed on again; in the third, no longer (an
    // object no invocation gets through goes the way of the receive count, to the DLQ).
    let next = sqs_event(&[("m2".into(), sent[0].clone())]);
    let result = s3_import::invoke::handle(
        &p,
        &next,
        Instant::now() + Duration::from_millis(3_500),
        "req2",
    )
    .await;
    assert_eq!(
        failures(&lambda_response(&next, &result).unwrap()),
        Vec::<String>::new()
    );
    let sent = p.queue().take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let third = sqs_event(&[("m3".into(), sent[0].clone())]);
    let result = s3_import::invoke::handle(
        &p,
        &third,
        Instant::now() + Duration::from_millis(3_500),
        "req3",
    )
    .await;
    let label = result.messages[0].objects[0].1.label();
    assert!(label.contains("in each of 3 invocations"), "{label}");
    assert_eq!(failures(&lambda_response(&third, &result).unwrap()), ["m3"]);
    assert!(p.queue().take().is_empty(), "no continuation");

    // The next invocation (the store fast again) takes the message and completes the object.
    slow.store(false, Ordering::SeqCst);
    let result =
        s3_import::invoke::handle(&p, &third, Instant::now() + Duration::from_secs(60), "req4")
            .await;
    assert_eq!(result.messages[0].objects[0].1.label(), "completed");
    let got = common::received(&l.received);
    assert_eq!(got.len(), 20_000);
    assert!(got.values().all(|n| *n == 1), "every event once");
    println!("handed on after {took:?} of a 3.5 s invocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_stuck_at_the_deadline_is_cut_off_and_the_invocation_still_answers() {
    let l = Local::new("stalled", Duration::ZERO).await;
    l.put("in/stalled.json", &events("s", 0..200));
    let stall = Arc::new(AtomicBool::new(true));
    let p = Pipeline::new(
        Ports {
            claims: MemoryClaims::default(),
            dedupe: Some(MemoryDedupe::default()),
            source: SlowSource {
                inner: LocalSource::new(&l.root),
                slow: Arc::default(),
                stall: stall.clone(),
            },
            queue: MemoryQueue::default(),
            http: reqwest::Client::new(),
            clock: Clock::system(),
        },
        l.settings(&[]),
    );
    // The object's first read hangs for 4 s; the invocation has 3.5 s.
    let event = sqs_event(&[("m1".into(), object_message("in/stalled.json"))]);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(3_500);
    let result = s3_import::invoke::handle(&p, &event, deadline, "req1").await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3_500),
        "answered after {took:?}"
    );
    assert_eq!(
        result.messages[0].objects[0].1.label(),
        "to be retried: cut off at the invocation's deadline"
    );
    // The notice comes back at once, and its object is free to be claimed at once.
    assert_eq!(failures(&lambda_response(&event, &result).unwrap()), ["m1"]);
    assert_eq!(result.messages[0].retry_after, Some(Duration::ZERO));
    let key = ClaimKey {
        source: p.settings().source.clone(),
        bucket: "data".into(),
        key: "in/stalled.json".into(),
    };
    match p.claims().get(&key).await.unwrap() {
        Some(ClaimState::InProgress { lease_until, .. }) => {
            assert!(lease_until < p.clock().now_secs(), "released")
        }
        other => panic!("{other:?}"),
    }
    stall.store(false, Ordering::SeqCst);
    let result =
        s3_import::invoke::handle(&p, &event, Instant::now() + Duration::from_secs(60), "req2")
            .await;
    assert_eq!(result.messages[0].objects[0].1.label(), "completed");
    let got = common::received(&l.received);
    assert_eq!(got.len(), 200);
    assert!(got.values().all(|n| *n == 1), "every event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_in_memory_queues_once_and_stops_at_its_budget() {
    let l = Local::new("scan-mem", Duration::ZERO).await;
    for i in 0..250 {
        l.put(&format!("in/k{i:04}.json"), &events(&format!("k{i}"), 0..1));
    }
    l.put("in/z-empty.json", b"");
    let p = l.pipeline(
        MemoryClaims::default(),
        MemoryQueue::default(),
        &[("S3I_QUEUE_URL", "memory")],
    );
    // No time left: one chunk of 100, then a continuation after its last key.
    let job = s3_import::ops::ScanJob {
        bucket: "data".into(),
        prefix: "in/".into(),
        start_after: None,
        enqueue: true,
        deadline: Some(Instant::now()),
        pass: None,
    };
    let first = p.scan_from(&job, "scan", |_| {}).await.unwrap();
    assert_eq!((first.listed, first.enqueued), (100, 100), "{first}");
    assert_eq!(first.next.as_deref(), Some("in/k0099.json"));
    assert!(first.continued);
    let sent = p.queue().take();
    assert_eq!(sent.len(), 101);
    let mut cont: Value = serde_json::from_str(sent.last().unwrap()).unwrap();
    // The scan's pass goes along, so that its last part leaves the scan mark.
    let pass = cont["s3import-scan"]
        .as_object_mut()
        .unwrap()
        .remove("pass")
        .unwrap();
    assert_eq!(pass["marks"], true, "{pass}");
    assert_eq!(
        cont,
        json!({"s3import-scan": {"bucket": "data", "prefix": "in/", "start_after": "in/k0099.json"}})
    );
    // A whole scan now: the first 100 are in flight, the rest queued once.
    let all = p.scan("data", "in/", true, "scan", |_| {}).await.unwrap();
    assert_eq!(
        (all.listed, all.in_flight, all.enqueued, all.ignored),
        (251, 100, 150, 1),
        "{all}"
    );
    // The continuation finds nothing left to queue.
    let event = sqs_event(&[("c1".into(), sent.last().unwrap().clone())]);
    let result = s3_import::invoke::handle(&p, &event, Instant::now(), "cont").await;
    assert!(!result.any_retry(), "{result:?}");
    let again = p.queue().take();
    assert_eq!(
        again.len(),
        150 + 1,
        "the whole scan's 150 and a continuation"
    );
    assert!(again.last().unwrap().contains("s3import-scan"));
}

// ---------------------------------------------------------------------------------------------
// On the local AWS stack.

use common::{CLAIMS, DEDUPE};

/// The local stack's clients, with the test tables.
async fn clients() -> Clients {
    common::stack_with_tables().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_over_several_short_invocations_queues_and_imports_every_object_once() {
    const N: usize = 450;
    let c = clients().await;
    let bucket = unique("t-scale");
    c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let (endpoint, received) = common::emulator("s3i-scale-stack", |config| {
        config.api_key = Some("test-key".into());
    })
    .await;
    let queue = c
        .sqs
        .create_queue()
        .queue_name(unique("scale"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let put = |key: String, body: Vec<u8>| {
        let (s3, bucket) = (c.s3.clone(), bucket.clone());
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
    };
    put(
        "config/converter.json".into(),
        CONVERTER.as_bytes().to_vec(),
    )
    .await;
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..N {
        puts.spawn(put(
            format!("in/{i:04}.json"),
            events(&format!("e{i}"), 0..2),
        ));
        if puts.len() >= 16 {
            puts.join_next().await;
        }
    }
    while puts.join_next().await.is_some() {}

    let vars: HashMap<&str, String> = [
        ("S3I_SOURCE", unique("scale")),
        (
            "S3I_CONVERTER",
            format!("s3://{bucket}/config/converter.json"),
        ),
        ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
        ("S3I_PREFIX", "in/".into()),
        ("S3I_CLAIMS_TABLE", CLAIMS.into()),
        ("S3I_DEDUPE_TABLE", DEDUPE.into()),
        ("AMPLITUDE_API_KEY", "test-key".into()),
        ("S3I_ENDPOINT", endpoint),
        ("S3I_STOP_MARGIN_SECS", "1".into()),
        ("S3I_QUEUE_URL", queue.clone()),
    ]
    .into_iter()
    .collect();
    let settings = Settings::from_lookup(&|k| vars.get(k).cloned()).unwrap();
    let p: AwsPipeline = s3_import::aws::pipeline(&c, settings);
    // A scan invocation with about no time: one chunk of 100 keys, then its continuation.
    let short = || Instant::now() + Duration::from_millis(1_100);
    let scan = json!({"s3import-scan": {"bucket": bucket, "prefix": "in/"}});
    let answer = s3_import::invoke::invoke(&p, &scan, short(), "scheduled-1", |_| {})
        .await
        .unwrap();
    let first = &answer["summary"];
    assert_eq!(first["enqueued"], 100, "{answer}");
    assert_eq!(first["continued"], true, "{answer}");
    // The scan's own requests: 1 claims read + 1 transaction of marks + 10 batches of 10 +
    // the continuation, for 100 objects.
    let per_object = (first["claims_requests"].as_u64().unwrap()
        + first["queue_requests"].as_u64().unwrap()) as f64
        / 100.0;
    assert!(
        per_object <= 0.2,
        "{per_object} requests per object: {answer}"
    );
    // The next scheduled scan starts over while those copies are in flight: it leaves them
    // alone and queues the rest.
    let answer = s3_import::invoke::invoke(&p, &scan, short(), "scheduled-2", |_| {})
        .await
        .unwrap();
    assert_eq!(answer["summary"]["in_flight"], 100, "{answer}");

    // The queue drives the rest, as Lambda would: scan messages in short invocations, the
    // objects' messages in longer ones.
    let mut object_messages: BTreeMap<String, u32> = BTreeMap::new();
    let mut scan_invocations = 2;
    let mut idle = 0;
    while idle < 3 {
        let got = common::receive_as_lambda(&c.sqs, &queue, 1).await;
        if got.handles.is_empty() {
            idle += 1;
            continue;
        }
        idle = 0;
        let records = got.event["Records"].as_array().unwrap().clone();
        let (scans, objects): (Vec<Value>, Vec<Value>) = records
            .into_iter()
            .partition(|r| r["body"].as_str().unwrap().contains("s3import-scan"));
        let mut failed = Vec::new();
        for r in scans {
            scan_invocations += 1;
            let event = json!({"Records": [r]});
            let answer = s3_import::invoke::invoke(&p, &event, short(), "scan", |_| {})
                .await
                .unwrap();
            failed.extend(failures(&answer));
        }
        if !objects.is_empty() {
            for r in &objects {
                let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
                *object_messages
                    .entry(body["s3import"]["key"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            let event = json!({"Records": objects});
            let deadline = Instant::now() + Duration::from_secs(60);
            let answer = s3_import::invoke::invoke(&p, &event, deadline, "objects", |_| {})
                .await
                .unwrap();
            failed.extend(failures(&answer));
        }
        assert!(failed.is_empty(), "{failed:?}");
        s3_import::queue::sqs::settle(&c.sqs, &queue, &got.handles, &HashMap::new())
            .await
            .unwrap();
    }
    assert!(scan_invocations >= 4, "{scan_invocations} scan invocations");
    assert_eq!(object_messages.len(), N, "every object queued");
    assert!(
        object_messages.values().all(|n| *n == 1),
        "queued more than once: {:?}",
        object_messages
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );
    let got = common::received(&received);
    assert_eq!(got.len(), N * 2);
    assert!(got.values().all(|n| *n == 1), "every event once");
    // A last scan finds every object completed.
    let answer = s3_import::invoke::invoke(
        &p,
        &scan,
        Instant::now() + Duration::from_secs(60),
        "last",
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(answer["summary"]["completed_before"], N, "{answer}");
    assert_eq!(answer["summary"]["enqueued"], 0, "{answer}");
}
