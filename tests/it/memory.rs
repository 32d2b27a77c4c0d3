//! The whole pipeline over its in-memory twins (claims, dedupe), a folder for a bucket and the
//! real endpoint emulator on loopback, with a clock the tests move: takeovers, resumes,
//! duplicates, failures mid-object, the Own verdict and mirror mutations, without LocalStack.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{from_fn, Next};
use axum::response::IntoResponse;

use s3_import::claims::{ClaimKey, ClaimOutcome, ClaimState, ClaimStore, Held, MemoryClaims};
use s3_import::dedupe::{DedupeKey, DedupeStore, MemoryDedupe, RecordRef, Verdict};
use s3_import::emulator::EmulatorConfig;
use s3_import::notify::ObjectRef;
use s3_import::pipeline::{Clock, ObjectOutcome, Pipeline, Ports, RetryReason};
use s3_import::queue::NoQueue;
use s3_import::report::Report;
use s3_import::settings::Settings;
use s3_import::source::LocalSource;
use serde_json::{json, Value};
use tokio::time::Instant;

use common::{events, gzip, soon, unique, CONVERTER};

type MemoryPipeline = Pipeline<(MemoryClaims, MemoryDedupe, LocalSource, NoQueue)>;

/// Where the manual clock starts (epoch ms).
const T0: i64 = 1_800_000_000_000;

/// One test's world: a bucket (a folder) with the converter, an emulator, a manual clock, and
/// settings for them.
struct World {
    root: PathBuf,
    bucket: String,
    endpoint: String,
    received: PathBuf,
    clock: Clock,
    vars: HashMap<String, String>,
}

impl World {
    async fn new(name: &str, emulator: impl FnOnce(&mut EmulatorConfig)) -> World {
        let (endpoint, dir) = common::emulator(&format!("s3i-memory-{name}"), |config| {
            config.api_key = Some("test-key".into());
            emulator(config);
        })
        .await;
        World::at(name, endpoint, dir)
    }

    /// A world whose endpoint is already running.
    fn at(name: &str, endpoint: String, received: PathBuf) -> World {
        let root = std::env::temp_dir().join(unique(&format!("s3i-memory-{name}-buckets")));
        let bucket = "data".to_string();
        let w = World {
            vars: [
                ("S3I_SOURCE", unique(name)),
                (
                    "S3I_CONVERTER",
                    format!("s3://{bucket}/config/converter.json"),
                ),
                ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
                ("S3I_PREFIX", "in/".to_string()),
                ("AMPLITUDE_API_KEY", "test-key".to_string()),
                ("S3I_ENDPOINT", endpoint.clone()),
                ("S3I_STOP_MARGIN_SECS", "1".to_string()),
                ("S3I_MAX_RUN_SECS", "60".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            root,
            bucket,
            endpoint,
            received,
            clock: Clock::manual(T0),
        };
        w.put("config/converter.json", CONVERTER.as_bytes());
        w
    }

    fn settings(&self) -> Settings {
        let vars = self.vars.clone();
        let mut s = Settings::from_lookup(&|k| vars.get(k).cloned()).unwrap();
        s.sink.backoff_base = Duration::from_millis(5);
        s.sink.backoff_max = Duration::from_millis(50);
        s
    }

    /// A pipeline over fresh in-memory claims and dedupe, the bucket folder and the clock.
    fn pipeline(&self) -> MemoryPipeline {
        Pipeline::new(
            Ports {
                claims: MemoryClaims::default(),
                dedupe: Some(MemoryDedupe::default()),
                source: LocalSource::new(&self.root),
                queue: NoQueue,
                http: reqwest::Client::new(),
                clock: self.clock.clone(),
            },
            self.settings(),
        )
    }

    fn put(&self, key: &str, body: &[u8]) {
        let path = self.root.join(&self.bucket).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    fn report(&self, key: &str) -> Report {
        let path = self
            .root
            .join(&self.bucket)
            .join(format!("reports/{}/{key}.report.json", self.bucket));
        let bytes = std::fs::read(&path).unwrap_or_else(|_| panic!("no report for {key}"));
        serde_json::from_slice(&bytes).unwrap()
    }

    fn report_missing(&self, key: &str) -> bool {
        !self
            .root
            .join(&self.bucket)
            .join(format!("reports/{}/{key}.report.json", self.bucket))
            .exists()
    }

    fn obj(&self, key: &str) -> ObjectRef {
        ObjectRef {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            version_id: None,
            size: None,
            etag: None,
            sequencer: None,
        }
    }

    fn claim_key(&self, key: &str) -> ClaimKey {
        ClaimKey {
            source: self.vars["S3I_SOURCE"].clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
    }

    /// insert_id → how many times the endpoint accepted it.
    fn received(&self) -> BTreeMap<String, u32> {
        common::received(&self.received)
    }

    async fn stats(&self) -> Value {
        common::stats(&self.endpoint).await
    }
}

/// The record numbers of the received insert_ids `<tag>-<n>`.
fn numbers(got: &BTreeMap<String, u32>, tag: &str) -> Vec<u64> {
    let mut ns: Vec<u64> = got
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{tag}-")))
        .map(|n| n.parse().unwrap())
        .collect();
    ns.sort_unstable();
    ns
}

fn completed(outcome: &ObjectOutcome) -> &Report {
    match outcome {
        ObjectOutcome::Completed(r) => r,
        other => panic!("expected completed, got {other:?}"),
    }
}

fn assert_adds_up(r: &Report) {
    assert!(r.counts.add_up(), "counts do not add up: {:?}", r.counts);
    assert_eq!(r.counts.not_sent, 0, "{:?}", r.counts);
}

/// Every record before `checkpoint` reached the endpoint: the checkpoint covers only
/// confirmed records.
fn assert_confirmed(got: &BTreeMap<String, u32>, tag: &str, checkpoint: u64) {
    let missing: Vec<u64> = (0..checkpoint)
        .filter(|n| !got.contains_key(&format!("{tag}-{n}")))
        .collect();
    assert!(
        missing.is_empty(),
        "checkpoint {checkpoint} passed records never received: {} of them, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

async fn checkpoint_of(p: &MemoryPipeline, key: &ClaimKey) -> u64 {
    match p.claims().get(key).await.unwrap() {
        Some(ClaimState::InProgress { checkpoint, .. }) => checkpoint,
        other => panic!("expected a claim in progress, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_from_its_checkpoint_and_a_live_one_left_alone() {
    let w = World::new("lease", |_| {}).await;
    w.put("in/l.json", &events("l", 0..1000));
    let p = w.pipeline();
    let key = w.claim_key("in/l.json");
    let now = w.clock.now_secs();
    assert!(matches!(
        p.claims()
            .claim(&key, "crashed", now + 600, now)
            .await
            .unwrap(),
        ClaimOutcome::Acquired { .. }
    ));
    // The holder confirmed 600 records, then died with its lease running.
    let progress = json!({"counts": {"records": 600, "converted": 600, "payloads": 600, "sent": 600},
                          "invocations": 1, "started_ms": 1});
    assert_eq!(
        p.claims()
            .checkpoint(
                &key,
                "crashed",
                600,
                &s3_import::claims::Progress::parse(&progress.to_string()),
                now + 600
            )
            .await
            .unwrap(),
        Held::Yes
    );
    let o = p.import(&w.obj("in/l.json"), soon(60), "t1").await;
    assert!(matches!(o, ObjectOutcome::HeldByOther { .. }), "{o:?}");
    w.clock.advance(Duration::from_secs(600));
    let o = p.import(&w.obj("in/l.json"), soon(60), "t2").await;
    assert!(
        matches!(o, ObjectOutcome::HeldByOther { .. }),
        "the lease's last second: {o:?}"
    );
    assert!(w.received().is_empty());

    // The lease ends: the next import takes over and resumes after the 600 confirmed records.
    w.clock.advance(Duration::from_secs(1));
    let o = p.import(&w.obj("in/l.json"), soon(60), "t3").await;
    let r = completed(&o);
    assert_eq!(r.invocations, 2);
    assert_eq!((r.counts.records, r.counts.sent), (1000, 1000));
    assert_adds_up(r);
    let got = w.received();
    assert_eq!(
        numbers(&got, "l"),
        (600..1000).collect::<Vec<_>>(),
        "only the records from the checkpoint on are sent"
    );
    assert!(got.values().all(|&n| n == 1));
    assert_eq!(&w.report("in/l.json"), r);
    // The old owner can no longer write.
    assert_eq!(
        p.claims()
            .complete(&key, "crashed", &Default::default())
            .await
            .unwrap(),
        Held::Lost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_paused_by_its_deadline_resumes_from_its_checkpoint_and_arrives_once() {
    // 20 requests of 100 events, one at a time, 150 ms each: about 3 s of sending, more than
    // one invocation of about 2 s gives.
    let mut w = World::new("deadline", |c| c.latency = Duration::from_millis(150)).await;
    w.vars.insert("S3I_STOP_MARGIN_SECS".into(), "0".into());
    w.vars.insert("S3I_MAX_IN_FLIGHT".into(), "1".into());
    w.vars.insert("S3I_BATCH_EVENTS".into(), "100".into());
    w.put("in/big.json.gz", &gzip(&events("big", 0..2000)));
    let p = w.pipeline();
    let key = w.claim_key("in/big.json.gz");
    let (mut invocations, mut paused, mut last) = (0, 0, 0);
    let report = loop {
        invocations += 1;
        assert!(invocations <= 20, "not finished after 20 invocations");
        let deadline = Instant::now() + Duration::from_millis(2200);
        let o = p
            .import(
                &w.obj("in/big.json.gz"),
                deadline,
                &format!("inv-{invocations}"),
            )
            .await;
        eprintln!("invocation {invocations}: {}", o.label());
        match o {
            ObjectOutcome::Completed(report) => break report,
            ObjectOutcome::Paused { checkpoint } => {
                paused += 1;
                assert!(checkpoint > last, "a pause follows progress");
                assert_eq!(checkpoint_of(&p, &key).await, checkpoint);
                assert_confirmed(&w.received(), "big", checkpoint);
                last = checkpoint;
            }
            // No record confirmed in time (a slow, shared machine): tried again.
            ObjectOutcome::Retry(_) => {
                let checkpoint = checkpoint_of(&p, &key).await;
                assert_confirmed(&w.received(), "big", checkpoint);
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(paused >= 1, "the object was paused at least once");
    assert_eq!(report.invocations, invocations);
    assert_eq!((report.counts.records, report.counts.sent), (2000, 2000));
    assert_adds_up(&report);
    let got = w.received();
    assert_eq!(numbers(&got, "big"), (0..2000).collect::<Vec<_>>());
    assert!(got.values().all(|&n| n == 1), "every event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_id_in_two_objects_is_sent_once_and_counted_as_a_duplicate() {
    let w = World::new("dedupe", |_| {}).await;
    w.put("in/a.json", &events("x", 0..400));
    w.put("in/b.json", &events("x", 300..700));
    let p = w.pipeline();
    let a = p.import(&w.obj("in/a.json"), soon(60), "t-a").await;
    assert_eq!(completed(&a).counts.sent, 400);
    let b = p.import(&w.obj("in/b.json"), soon(60), "t-b").await;
    let b = completed(&b);
    assert_eq!(
        (b.counts.records, b.counts.sent, b.counts.duplicates),
        (400, 300, 100)
    );
    assert_adds_up(b);
    let got = w.received();
    assert_eq!(numbers(&got, "x"), (0..700).collect::<Vec<_>>());
    assert!(got.values().all(|&n| n == 1));
    assert_eq!(
        w.stats().await["duplicates"],
        0,
        "our dedupe dropped them, not the endpoint's"
    );
}

/// The emulator (API key `test-key`) on a free loopback port, its routes wrapped by `wrap`.
async fn emulator_behind(
    name: &str,
    wrap: impl FnOnce(axum::Router) -> axum::Router,
) -> (String, PathBuf) {
    let dir = std::env::temp_dir().join(unique(&format!("s3i-memory-{name}")));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = EmulatorConfig::new(dir.clone());
    config.api_key = Some("test-key".into());
    let app = wrap(s3_import::emulator::router(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), dir)
}

/// An emulator behind a switch: while `budget` is positive each event request uses one and
/// goes through; after that every event request is answered 503 before the emulator sees it.
async fn emulator_that_stops(name: &str, budget: Arc<AtomicI64>) -> (String, PathBuf) {
    emulator_behind(name, |router| {
        router.layer(from_fn(move |req: Request, next: Next| {
            let budget = budget.clone();
            async move {
                if req.uri().path() == "/2/httpapi" && budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
                    return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
                }
                next.run(req).await
            }
        }))
    })
    .await
}

/// An emulator that also keeps the body of every request to `path`, as it came.
async fn emulator_recording(
    name: &str,
    path: &'static str,
    bodies: Arc<Mutex<Vec<Value>>>,
) -> (String, PathBuf) {
    emulator_behind(name, |router| {
        router.layer(from_fn(move |req: Request, next: Next| {
            let bodies = bodies.clone();
            async move {
                if req.uri().path() != path {
                    return next.run(req).await;
                }
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                bodies
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&bytes).unwrap());
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
        }))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_stops_mid_object_leaves_it_to_retry_from_the_confirmed_prefix() {
    let budget = Arc::new(AtomicI64::new(5));
    let (endpoint, dir) = emulator_that_stops("stops", budget.clone()).await;
    let mut w = World::at("stops", endpoint, dir);
    w.vars.insert("S3I_MAX_IN_FLIGHT".into(), "1".into());
    w.vars.insert("S3I_BATCH_EVENTS".into(), "100".into());
    w.vars.insert("S3I_MAX_ATTEMPTS".into(), "2".into());
    w.put("in/s.json", &events("s", 0..1500));
    let p = w.pipeline();
    let key = w.claim_key("in/s.json");

    // Five requests of 100 go through, then the endpoint is down: not completed short.
    let o = p.import(&w.obj("in/s.json"), soon(60), "t1").await;
    assert!(matches!(o, ObjectOutcome::Retry(_)), "{o:?}");
    let checkpoint = checkpoint_of(&p, &key).await;
    let got = w.received();
    assert!(
        checkpoint > 0 && checkpoint < 1500,
        "stopped mid-object: {checkpoint}"
    );
    assert_confirmed(&got, "s", checkpoint);
    // The checkpoint never runs ahead of what arrived; it may trail it by the last batch when
    // the stop is noticed before that batch's outcome (seen once under load: 400 of 500); the
    // resume then sends those again and the endpoint's insert_id dedupe absorbs them.
    assert!(
        checkpoint <= got.len() as u64 && checkpoint + 100 >= got.len() as u64,
        "the checkpoint is the confirmed prefix: {checkpoint} of {} received",
        got.len()
    );

    // The endpoint is back: the next import finishes the object, every event once.
    budget.store(i64::MAX / 2, Ordering::SeqCst);
    let o = p.import(&w.obj("in/s.json"), soon(60), "t2").await;
    let r = completed(&o);
    assert_eq!(r.invocations, 2);
    assert_eq!((r.counts.records, r.counts.sent), (1500, 1500));
    assert_adds_up(r);
    let got = w.received();
    assert_eq!(numbers(&got, "s"), (0..1500).collect::<Vec<_>>());
    assert!(got.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_corrupt_in_the_middle_fails_with_counts_that_add_up() {
    let mut w = World::new("corrupt", |_| {}).await;
    let mut data = gzip(&events("c", 0..20_000));
    let middle = data.len() / 2;
    data[middle..middle + 64].fill(0xA5);
    w.put("in/c.json.gz", &data);
    w.put("in/trusted.json.gz", &data);
    let p = w.pipeline();
    let o = p.import(&w.obj("in/c.json.gz"), soon(60), "t").await;
    let r = match &o {
        ObjectOutcome::Failed(r) => r,
        other => panic!("expected failed, got {other:?}"),
    };
    let reason = r.reason.as_deref().unwrap();
    assert!(
        reason.contains("unreadable object") && reason.contains("no record was sent"),
        "{reason}"
    );
    assert_eq!(
        r.counts.records, 0,
        "checked before sending: {:?}",
        r.counts
    );
    assert_eq!(w.received().len(), 0, "no garbled event was sent");
    assert_eq!(&w.report("in/c.json.gz"), r.as_ref());
    match p.claims().get(&w.claim_key("in/c.json.gz")).await.unwrap() {
        Some(ClaimState::Failed { reason, .. }) => {
            assert!(reason.contains("unreadable"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // With the check off (trusted writers), the records before the damage are sent and the
    // object fails with counts that add up.
    w.vars
        .insert("S3I_VERIFY_COMPRESSED".into(), "false".into());
    let p = w.pipeline();
    let o = p.import(&w.obj("in/trusted.json.gz"), soon(60), "t").await;
    let ObjectOutcome::Failed(r) = &o else {
        panic!("expected failed, got {o:?}");
    };
    assert!(
        r.counts.records > 0 && r.counts.records < 20_000,
        "{:?}",
        r.counts
    );
    assert!(r.counts.add_up(), "{:?}", r.counts);
    assert_eq!(r.counts.sent as usize, w.received().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_too_large_to_hold_goes_on_at_once_checked_by_a_pass_of_its_own() {
    // About 1 MB inflated in one gzip stream; at most 300 KB may wait for its checksum.
    let mut w = World::new("hold-full", |_| {}).await;
    w.vars.insert("S3I_HOLD_MAX_BYTES".into(), "300000".into());
    w.put("in/big.json.gz", &gzip(&events("h", 0..12_000)));
    let p = w.pipeline();
    let first = p.import(&w.obj("in/big.json.gz"), soon(60), "t1").await;
    assert!(
        matches!(first, ObjectOutcome::Paused { checkpoint: 0 }),
        "handed on in a continuation, nothing read: {first:?}"
    );
    assert_eq!(w.received().len(), 0);
    let second = p.import(&w.obj("in/big.json.gz"), soon(60), "t2").await;
    let r = completed(&second);
    assert_eq!((r.counts.records, r.counts.sent), (12_000, 12_000));
    let got = w.received();
    assert_eq!(got.len(), 12_000);
    assert!(got.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_object_resends_the_events_it_marked_as_its_own() {
    let w = World::new("own", |_| {}).await;
    w.put("in/c.json", &events("y", 0..500));
    let mut p = w.pipeline();

    // The first attempt marks its events in the dedupe store, but the endpoint refuses the key.
    p.settings_mut().sink.api_key = "wrong-key".into();
    let first = p.import(&w.obj("in/c.json"), soon(60), "t1").await;
    match &first {
        ObjectOutcome::Retry(why) => assert!(why.to_string().contains("API key"), "{why}"),
        other => panic!("expected a retry, got {other:?}"),
    }
    assert_eq!(checkpoint_of(&p, &w.claim_key("in/c.json")).await, 0);
    assert!(w.received().is_empty());
    let marked = p
        .dedupe()
        .unwrap()
        .check_and_mark(
            &[(
                DedupeKey::for_event(&p.settings().source, Some("device-7"), None, "y-7").unwrap(),
                RecordRef {
                    object: format!("{}/in/c.json", w.bucket),
                    n: 7,
                },
            )],
            w.clock.now_secs(),
        )
        .await
        .unwrap();
    assert_eq!(marked, vec![Verdict::Own], "the first attempt marked them");

    // The retry sends them: they are this object's own, not duplicates.
    p.settings_mut().sink.api_key = "test-key".into();
    let second = p.import(&w.obj("in/c.json"), soon(60), "t2").await;
    let second = completed(&second);
    assert_eq!((second.counts.sent, second.counts.duplicates), (500, 0));
    assert_eq!(second.invocations, 2);
    assert_adds_up(second);
    assert_eq!(numbers(&w.received(), "y"), (0..500).collect::<Vec<_>>());
}

const MIRROR: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "none",
  "importStrategy": "mirror",
  "convertToAmplitudeFunc": {"insert_id": "id", "event_type": "type", "device_id": "device",
    "user_id": "user", "time": "ts", "mutation_type": "m"}}}"#;

/// Imports INSERT, UPDATE and DELETE records of one insert_id with a mirror converter, to an
/// emulator that records the bodies sent to `/mutations`.
async fn import_mirror(name: &str) -> (World, Report, Vec<Value>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (endpoint, dir) = emulator_recording(name, "/mutations", bodies.clone()).await;
    let w = mirror_world(name, endpoint, dir);
    let o = w
        .pipeline()
        .import(&w.obj("in/m.json"), soon(60), "t")
        .await;
    let report = completed(&o).clone();
    let bodies = bodies.lock().unwrap().clone();
    (w, report, bodies)
}

/// (mutation_type, insert_id) of each mutation.
fn mutation_ids<'a>(mutations: impl IntoIterator<Item = &'a Value>) -> Vec<(String, String)> {
    mutations
        .into_iter()
        .map(|m| {
            (
                m["mutation_type"].as_str().unwrap().to_string(),
                m["event"]["insert_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn insert_update_delete() -> Vec<(String, String)> {
    ["INSERT", "UPDATE", "DELETE"]
        .map(|m| (m.to_string(), "m-1".to_string()))
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_mutations_of_one_insert_id_are_not_deduped_and_all_reach_the_endpoint_in_order() {
    let (w, r, bodies) = import_mirror("mirror").await;
    assert_eq!(
        (r.counts.records, r.counts.sent, r.counts.duplicates),
        (3, 3, 0),
        "no mutation dropped as a duplicate"
    );
    assert_adds_up(&r);
    let sent: Vec<&Value> = bodies
        .iter()
        .flat_map(|b| b["mutations"].as_array().unwrap())
        .collect();
    assert_eq!(mutation_ids(sent), insert_update_delete());
    let stats = w.stats().await;
    assert_eq!(stats["events"], 0, "all went to the mutation API: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_keeps_every_mutation_of_one_insert_id() {
    let (w, _, _) = import_mirror("mirror-kept").await;
    let kept = common::lines(&w.received, "mutations.jsonl");
    assert_eq!(
        mutation_ids(&kept),
        insert_update_delete(),
        "{}",
        w.stats().await
    );
}

/// How many calls are in flight at once, and the most there were.
#[derive(Default)]
struct Gauge {
    now: AtomicI64,
    most: AtomicI64,
}

impl Gauge {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    fn most(&self) -> i64 {
        self.most.load(Ordering::SeqCst)
    }
}

/// Dedupe in memory that takes 20 ms a call and gauges the calls in flight.
struct GaugedDedupe {
    inner: MemoryDedupe,
    gauge: Arc<Gauge>,
}

impl DedupeStore for GaugedDedupe {
    async fn check_and_mark(
        &self,
        events: &[(DedupeKey, RecordRef)],
        now: i64,
    ) -> Result<Vec<Verdict>, s3_import::store::StoreError> {
        self.gauge.enter();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let verdicts = self.inner.check_and_mark(events, now).await;
        self.gauge.leave();
        verdicts
    }
    async fn release(
        &self,
        events: &[(DedupeKey, RecordRef)],
    ) -> Result<usize, s3_import::store::StoreError> {
        self.inner.release(events).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_imported_at_once_share_one_budget_of_requests_and_dedupe_calls() {
    let http = Arc::new(Gauge::default());
    let gauge = http.clone();
    let (endpoint, dir) = emulator_behind("budget", |router| {
        router.layer(from_fn(move |req: Request, next: Next| {
            let gauge = gauge.clone();
            async move {
                if req.uri().path() != "/2/httpapi" {
                    return next.run(req).await;
                }
                gauge.enter();
                tokio::time::sleep(Duration::from_millis(30)).await;
                let response = next.run(req).await;
                gauge.leave();
                response
            }
        }))
    })
    .await;
    let mut w = World::at("budget", endpoint, dir);
    for (k, v) in [
        ("S3I_OBJECT_CONCURRENCY", "10"),
        ("S3I_MAX_IN_FLIGHT", "3"),
        ("S3I_DEDUPE_IN_FLIGHT", "2"),
        ("S3I_BATCH_EVENTS", "50"),
    ] {
        w.vars.insert(k.into(), v.into());
    }
    let mut messages = Vec::new();
    for i in 0..10 {
        let key = format!("in/b{i}.json");
        w.put(&key, &events(&format!("b{i}"), 0..1200));
        let body = json!({"s3import": {"bucket": w.bucket, "key": key}}).to_string();
        messages.push(
            json!({"messageId": format!("m{i}"), "receiptHandle": format!("h{i}"),
                             "body": body, "eventSource": "aws:sqs"}),
        );
    }
    let dedupe = Arc::new(Gauge::default());
    let p = Pipeline::new(
        Ports {
            claims: MemoryClaims::default(),
            dedupe: Some(GaugedDedupe {
                inner: MemoryDedupe::default(),
                gauge: dedupe.clone(),
            }),
            source: LocalSource::new(&w.root),
            queue: NoQueue,
            http: reqwest::Client::new(),
            clock: w.clock.clone(),
        },
        w.settings(),
    );
    let result =
        s3_import::invoke::handle(&p, &json!({ "Records": messages }), soon(60), "inv").await;
    let outcomes: Vec<String> = result
        .messages
        .iter()
        .flat_map(|m| m.objects.iter().map(|(_, o)| o.label()))
        .collect();
    assert_eq!(outcomes, vec!["completed".to_string(); 10]);
    let got = w.received();
    assert_eq!(got.len(), 12_000);
    assert!(got.values().all(|&n| n == 1));
    // Ten objects at once, but never more than the invocation's budget in flight: 3 requests
    // (24 per object) and 2 dedupe calls (3 per object). Each object alone may use all of it.
    assert_eq!(http.most(), 3, "requests in flight at most");
    assert_eq!(dedupe.most(), 2, "dedupe calls in flight at most");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_object_resumes_from_its_byte_checkpoint_with_its_header() {
    // 40 requests of 100 rows, one at a time, 100 ms each: more than one invocation of 2.5 s.
    let mut w = World::new("csv-restart", |c| c.latency = Duration::from_millis(100)).await;
    w.vars.insert("S3I_STOP_MARGIN_SECS".into(), "0".into());
    w.vars.insert("S3I_MAX_IN_FLIGHT".into(), "1".into());
    w.vars.insert("S3I_BATCH_EVENTS".into(), "100".into());
    w.put(
        "config/converter.json",
        br#"{"converterConfig": {"fileType": "csv", "compressionType": "auto",
             "convertToAmplitudeFunc": {"insert_id": "id", "event_type": "type", "device_id": "device"}}}"#,
    );
    let mut data = b"type,id,note,device\r\n".to_vec();
    let mut starts = Vec::new();
    for i in 0..4000u64 {
        starts.push(data.len() as u64);
        let note = format!(
            "\"line one\nline \"\"two\"\" {}\"",
            "x".repeat(1000 + (i % 50) as usize)
        );
        data.extend_from_slice(format!("Played,csv-{i},{note},device-{}\r\n", i % 50).as_bytes());
    }
    let size = data.len() as u64;
    w.put("in/rows.csv", &data);
    let p = w.pipeline();
    let key = w.claim_key("in/rows.csv");
    let (mut invocations, mut checkpoints) = (0, Vec::new());
    let report = loop {
        invocations += 1;
        assert!(invocations <= 20, "not finished after 20 invocations");
        checkpoints.push(match p.claims().get(&key).await.unwrap() {
            None => 0,
            Some(_) => checkpoint_of(&p, &key).await,
        });
        let deadline = Instant::now() + Duration::from_millis(2500);
        let o = p
            .import(
                &w.obj("in/rows.csv"),
                deadline,
                &format!("inv-{invocations}"),
            )
            .await;
        eprintln!("invocation {invocations}: {}", o.label());
        match o {
            ObjectOutcome::Completed(report) => break report,
            ObjectOutcome::Paused { .. } | ObjectOutcome::Retry(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!((report.counts.records, report.counts.sent), (4000, 4000));
    assert_adds_up(&report);
    let got = w.received();
    assert_eq!(numbers(&got, "csv"), (0..4000).collect::<Vec<_>>());
    assert!(got.values().all(|&n| n == 1), "every event once");
    // Each resume read from a restart point at most 1 MiB (and a row) before its checkpoint.
    eprintln!(
        "{size} bytes; read {:?}; checkpoints {checkpoints:?}",
        report.bytes_read
    );
    let mut resumed_late = false;
    for (&read, &c) in report.bytes_read.iter().zip(&checkpoints) {
        let at = starts[c as usize];
        assert!(
            read <= size - at.saturating_sub((1 << 20) + 1100),
            "{read} from row {c}"
        );
        resumed_late |= at > (1 << 20) + 1100;
    }
    assert!(resumed_late, "{checkpoints:?}");
}

/// Three mirror mutations in `in/m.json` of a world whose converter is MIRROR.
fn mirror_world(name: &str, endpoint: String, dir: PathBuf) -> World {
    let mut w = World::at(name, endpoint, dir);
    w.put("config/mirror.json", MIRROR.as_bytes());
    w.vars.insert(
        "S3I_CONVERTER".into(),
        format!("s3://{}/config/mirror.json", w.bucket),
    );
    let mut data = String::new();
    for m in ["INSERT", "UPDATE", "DELETE"] {
        let record = json!({"id": "m-1", "type": "Played", "device": "device-1", "user": "user-1",
                            "ts": 1_790_000_000_000u64, "m": m});
        data.push_str(&record.to_string());
        data.push('\n');
    }
    w.put("in/m.json", data.as_bytes());
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_converter_aimed_at_amplitudes_hosts_waits_unclaimed_as_an_unusable_converter() {
    // Amplitude's public hosts have no mutation route: refused before anything is claimed or
    // sent (the host is never contacted).
    let (_, dir) = common::emulator("s3i-memory-mirror-amp", |_| {}).await;
    for host in ["https://api2.amplitude.com", "https://api.eu.amplitude.com"] {
        let w = mirror_world("mirror-amp", host.to_string(), dir.clone());
        let p = w.pipeline();
        let o = p.import(&w.obj("in/m.json"), soon(60), "t").await;
        let ObjectOutcome::Retry(RetryReason::ConverterUnusable(why)) = &o else {
            panic!("{o:?}")
        };
        assert!(
            why.contains("/mutations") && why.contains("S3I_ENDPOINT"),
            "{why}"
        );
        let claim = p.claims().get(&w.claim_key("in/m.json")).await.unwrap();
        assert!(claim.is_none(), "nothing claimed: {claim:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_404_for_a_route_pauses_the_object_and_it_completes_once_served() {
    // An endpoint that, like Amplitude's hosts, has no /mutations route (until `served`).
    let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switch = served.clone();
    let (endpoint, dir) = emulator_behind("mirror-404", |router| {
        router.layer(from_fn(move |req: Request, next: Next| {
            let served = switch.clone();
            async move {
                if req.uri().path() == "/mutations" && !served.load(Ordering::SeqCst) {
                    return (StatusCode::NOT_FOUND, "Not Found").into_response();
                }
                next.run(req).await
            }
        }))
    })
    .await;
    let w = mirror_world("mirror-404", endpoint, dir);
    let p = w.pipeline();
    let o = p.import(&w.obj("in/m.json"), soon(60), "t").await;
    let ObjectOutcome::Retry(RetryReason::ConverterUnusable(why)) = &o else {
        panic!("never COMPLETED with its payloads rejected: {o:?}")
    };
    assert!(why.starts_with("delivery stopped: no such route"), "{why}");
    assert!(why.contains("/mutations"), "{why}");
    assert!(w.report_missing("in/m.json"), "no COMPLETED report");
    // Once the endpoint serves the route, the same object completes with every mutation sent.
    served.store(true, Ordering::SeqCst);
    w.clock.advance(Duration::from_secs(120));
    let o = p.import(&w.obj("in/m.json"), soon(60), "t2").await;
    let r = completed(&o);
    assert_eq!(
        (r.counts.records, r.counts.sent, r.counts.rejected),
        (3, 3, 0)
    );
    assert_adds_up(r);
}

/// Dedupe in memory that counts the events it is asked about.
struct CountingDedupe {
    inner: MemoryDedupe,
    events: Arc<AtomicI64>,
}

impl DedupeStore for CountingDedupe {
    async fn check_and_mark(
        &self,
        events: &[(DedupeKey, RecordRef)],
        now: i64,
    ) -> Result<Vec<Verdict>, s3_import::store::StoreError> {
        self.events.fetch_add(events.len() as i64, Ordering::SeqCst);
        self.inner.check_and_mark(events, now).await
    }
    async fn release(
        &self,
        events: &[(DedupeKey, RecordRef)],
    ) -> Result<usize, s3_import::store::StoreError> {
        self.inner.release(events).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_insert_ids_cost_no_dedupe_write_in_auto_mode_and_custom_ones_are_still_deduped() {
    const DEFAULT_IDS: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "auto",
      "convertToAmplitudeFunc": {"event_type": "type", "device_id": "device", "time": "ts"}}}"#;
    for (mode, converter, file_ids, checked) in [
        ("auto", DEFAULT_IDS, false, 0),
        ("all", DEFAULT_IDS, false, 200),
        ("auto", CONVERTER, true, 200),
        ("", CONVERTER, true, 200),
    ] {
        let mut w = World::new(&format!("dedupe-mode-{mode}"), |_| {}).await;
        w.vars.insert("S3I_DEDUPE".into(), mode.into());
        w.put("config/converter.json", converter.as_bytes());
        // The same 100 ids in two objects: custom ids are duplicates the second time.
        w.put("in/a.json", &events("d", 0..100));
        w.put("in/b.json", &events("d", 0..100));
        let counted = Arc::new(AtomicI64::new(0));
        let p = Pipeline::new(
            Ports {
                claims: MemoryClaims::default(),
                dedupe: Some(CountingDedupe {
                    inner: MemoryDedupe::default(),
                    events: counted.clone(),
                }),
                source: LocalSource::new(&w.root),
                queue: NoQueue,
                http: reqwest::Client::new(),
                clock: w.clock.clone(),
            },
            w.settings(),
        );
        let a = p.import(&w.obj("in/a.json"), soon(60), "t").await;
        let b = p.import(&w.obj("in/b.json"), soon(60), "t").await;
        let (a, b) = (completed(&a), completed(&b));
        assert_eq!(
            counted.load(Ordering::SeqCst),
            checked,
            "{mode}: events checked"
        );
        assert_eq!(a.counts.sent, 100, "{mode}");
        if file_ids {
            assert_eq!((b.counts.sent, b.counts.duplicates), (0, 100), "{mode}");
        } else {
            // Default ids name their object: the second object's are its own, all sent.
            assert_eq!((b.counts.sent, b.counts.duplicates), (100, 0), "{mode}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_converter_is_reused_for_a_while_and_reports_can_be_kept_for_problems_only() {
    const RENAMED: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "auto",
      "convertToAmplitudeFunc": {"insert_id": "id", "event_type": ["value", "Renamed"],
        "device_id": "device", "time": "ts"}}}"#;
    for (reuse, want) in [("30", "Played"), ("0", "Renamed")] {
        let mut w = World::new(&format!("reuse-{reuse}"), |_| {}).await;
        w.vars
            .insert("S3I_CONVERTER_REUSE_SECS".into(), reuse.into());
        w.vars.insert("S3I_REPORTS_FOR".into(), "problems".into());
        w.put("in/a.json", &events("a", 0..3));
        let mut bad = events("b", 0..3);
        bad.extend_from_slice(b"{not json\n");
        w.put("in/b.json", &bad);
        let p = w.pipeline();
        completed(&p.import(&w.obj("in/a.json"), soon(60), "t").await);
        // The converter file changes between two objects of one warm container.
        w.put("config/converter.json", RENAMED.as_bytes());
        let b = p.import(&w.obj("in/b.json"), soon(60), "t").await;
        assert_eq!(completed(&b).counts.invalid, 1);
        let types: Vec<String> = common::lines(&w.received, "events.jsonl")
            .iter()
            .filter(|e| e["insert_id"].as_str().unwrap().starts_with("b-"))
            .map(|e| e["event_type"].as_str().unwrap().to_string())
            .collect();
        assert!(
            !types.is_empty() && types.iter().all(|t| t == want),
            "{reuse}: {types:?}"
        );
        // A clean object has no report file; one with an invalid record has its report.
        assert!(w.report_missing("in/a.json"), "{reuse}");
        assert_eq!(w.report("in/b.json").counts.invalid, 1);
    }
}
