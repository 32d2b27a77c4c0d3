//! What the DynamoDB adapters cost, on the local AWS stack: the dedupe's write units per event
//! (new, duplicate and own events; expired marks taken over by exactly one of several racers)
//! and the release of a mark, also end to end: events the endpoint rejected do not make their
//! corrected upload a duplicate. Run with `AWS_ENDPOINT_URL` set to the stack (`make test`).

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{from_fn, Next};
use axum::response::IntoResponse;
use s3_import::dedupe::dynamo::DynamoDedupe;
use s3_import::dedupe::{DedupeKey, DedupeStore, RecordRef, Verdict, WINDOW_SECS};
use s3_import::emulator::EmulatorConfig;
use s3_import::notify::ObjectRef;
use s3_import::pipeline::ObjectOutcome;
use s3_import::settings::Settings;

use common::{events, soon, unique, CLAIMS, CONVERTER, DEDUPE};

fn batch(source: &str, object: &str, ids: std::ops::Range<u64>) -> Vec<(DedupeKey, RecordRef)> {
    ids.map(|i| {
        (
            DedupeKey::for_event(
                source,
                Some(&format!("d{}", i % 7)),
                None,
                &format!("id-{i}"),
            )
            .unwrap(),
            RecordRef {
                object: object.into(),
                n: i,
            },
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dedupe_writes_one_unit_per_event_new_duplicate_or_own() {
    let c = common::stack_with_tables().await;
    let dedupe = DynamoDedupe::new(c.dynamodb.clone(), DEDUPE);
    let source = unique("wcu");
    let now = 1_800_000_000;
    let first = batch(&source, "b/one.json", 0..300);

    let before = dedupe.capacity();
    let v = dedupe.check_and_mark(&first, now).await.unwrap();
    assert!(v.iter().all(|v| *v == Verdict::New));
    let new = dedupe.capacity().since(before);
    assert_eq!((new.write_units, new.read_units), (300, 0), "{new:?}");

    // The same events from another object: every one a duplicate, one write and one read each.
    let second = batch(&source, "b/two.json", 0..300);
    let before = dedupe.capacity();
    let v = dedupe.check_and_mark(&second, now + 5).await.unwrap();
    assert!(v
        .iter()
        .all(|v| matches!(v, Verdict::Duplicate { first } if first.object == "b/one.json")));
    let dup = dedupe.capacity().since(before);
    assert!(dup.write_units <= 300, "{dup:?}");
    assert!(dup.read_units <= 300, "{dup:?}");

    // The first object resumed: its own events, sent again.
    let before = dedupe.capacity();
    let v = dedupe.check_and_mark(&first, now + 10).await.unwrap();
    assert!(v.iter().all(|v| *v == Verdict::Own));
    let own = dedupe.capacity().since(before);
    assert!(own.write_units <= 300, "{own:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_mark_goes_to_exactly_one_of_several_racers() {
    let c = common::stack_with_tables().await;
    let dedupe = Arc::new(DynamoDedupe::new(c.dynamodb.clone(), DEDUPE));
    let source = unique("expired-race");
    let now = 1_800_000_000;
    // Marks made 8 days ago: expired, still stored (TTL deletes lazily, and not on the stack).
    let old = batch(&source, "b/old.json", 0..40);
    dedupe
        .check_and_mark(&old, now - WINDOW_SECS - 86_400)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for obj in 0..5 {
        let (dedupe, source) = (dedupe.clone(), source.clone());
        tasks.push(tokio::spawn(async move {
            let events = batch(&source, &format!("b/new-{obj}.json"), 0..40);
            dedupe.check_and_mark(&events, now).await.unwrap()
        }));
    }
    let mut new = [0u32; 40];
    for t in tasks {
        for (i, v) in t.await.unwrap().into_iter().enumerate() {
            match v {
                Verdict::New => new[i] += 1,
                Verdict::Duplicate { first } => assert_ne!(first.object, "b/old.json"),
                Verdict::Own => panic!("no racer owned these before"),
            }
        }
    }
    assert!(
        new.iter().all(|&n| n == 1),
        "each key new exactly once: {new:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_mark_frees_its_key_and_only_its_holder_releases_it() {
    let c = common::stack_with_tables().await;
    let dedupe = DynamoDedupe::new(c.dynamodb.clone(), DEDUPE);
    let source = unique("release");
    let now = 1_800_000_000;
    let a = batch(&source, "b/a.json", 0..30);
    dedupe.check_and_mark(&a, now).await.unwrap();
    let b = batch(&source, "b/b.json", 0..30);
    assert_eq!(dedupe.release(&b).await.unwrap(), 0);
    let before = dedupe.capacity();
    assert_eq!(dedupe.release(&a[..10]).await.unwrap(), 10);
    assert_eq!(dedupe.capacity().since(before).write_units, 10);
    let v = dedupe.check_and_mark(&b, now + 60).await.unwrap();
    assert!(v[..10].iter().all(|v| *v == Verdict::New), "{v:?}");
    assert!(
        v[10..]
            .iter()
            .all(|v| matches!(v, Verdict::Duplicate { .. })),
        "{v:?}"
    );
}

/// An emulator that, while `reject` holds, answers every event request 400 (the whole batch
/// invalid, as for a silenced device or bad field values).
async fn rejecting_emulator(name: &str, reject: Arc<AtomicBool>) -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = EmulatorConfig::new(dir.clone());
    config.api_key = Some("test-key".into());
    let app =
        s3_import::emulator::router(config).layer(from_fn(move |req: Request, next: Next| {
            let reject = reject.clone();
            async move {
                if req.uri().path() == "/2/httpapi" && reject.load(Ordering::SeqCst) {
                    let body = r#"{"code": 400, "error": "Invalid field values on some events"}"#;
                    return (StatusCode::BAD_REQUEST, body).into_response();
                }
                next.run(req).await
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), dir)
}

/// The importer of a source of its own over `bucket`'s `in/`, sending to `endpoint`.
fn importer(
    c: &s3_import::aws::Clients,
    bucket: &str,
    endpoint: String,
    source: &str,
) -> s3_import::aws::AwsPipeline {
    let vars: std::collections::HashMap<&str, String> = [
        ("S3I_SOURCE", unique(source)),
        (
            "S3I_CONVERTER",
            format!("s3://{bucket}/config/converter.json"),
        ),
        ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
        ("S3I_PREFIX", "in/".to_string()),
        ("S3I_CLAIMS_TABLE", CLAIMS.to_string()),
        ("S3I_DEDUPE_TABLE", DEDUPE.to_string()),
        ("AMPLITUDE_API_KEY", "test-key".to_string()),
        ("S3I_ENDPOINT", endpoint),
        ("S3I_STOP_MARGIN_SECS", "1".to_string()),
    ]
    .into_iter()
    .collect();
    let settings = Settings::from_lookup(&|k| vars.get(k).cloned()).unwrap();
    s3_import::aws::pipeline(c, settings)
}

/// A new bucket holding the converter and `objects` under their keys; its name.
async fn bucket_with(
    c: &s3_import::aws::Clients,
    name: &str,
    objects: &[(&str, Vec<u8>)],
) -> String {
    let bucket = unique(name);
    c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let converter = ("config/converter.json", CONVERTER.as_bytes().to_vec());
    for (key, body) in std::iter::once(&converter).chain(objects) {
        c.s3.put_object()
            .bucket(&bucket)
            .key(*key)
            .body(body.clone().into())
            .send()
            .await
            .unwrap();
    }
    bucket
}

fn object(bucket: &str, key: &str) -> ObjectRef {
    ObjectRef {
        bucket: bucket.into(),
        key: key.into(),
        version_id: None,
        size: None,
        etag: None,
        sequencer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_report_carries_its_own_objects_units_and_status_adds_them_up() {
    let c = common::stack_with_tables().await;
    let (endpoint, _received) =
        common::emulator("s3i-cost-units", |c| c.api_key = Some("test-key".into())).await;
    // The small one again as "again": all 50 duplicates (1 write unit each, a failed
    // condition, and a read of the mark that holds the id).
    let bucket = bucket_with(
        &c,
        "t-units",
        &[
            ("in/big.json", events("units-big", 0..600)),
            ("in/small.json", events("units-small", 0..50)),
            ("in/again.json", events("units-small", 0..50)),
        ],
    )
    .await;
    let p = importer(&c, &bucket, endpoint, "units");
    let total = |p: &s3_import::aws::AwsPipeline| {
        p.dedupe().unwrap().capacity() + s3_import::claims::ClaimStore::capacity(p.claims())
    };
    let before = total(&p);
    // Two objects at once (their dedupe calls interleave), then the duplicates.
    let (big, small) = (
        object(&bucket, "in/big.json"),
        object(&bucket, "in/small.json"),
    );
    let (big, small) = tokio::join!(
        p.import(&big, soon(60), "big"),
        p.import(&small, soon(60), "small"),
    );
    let again = p
        .import(&object(&bucket, "in/again.json"), soon(60), "again")
        .await;
    let reports: Vec<_> = [big, small, again]
        .into_iter()
        .map(|o| match o {
            ObjectOutcome::Completed(r) => r,
            other => panic!("not completed: {other:?}"),
        })
        .collect();
    let units: Vec<_> = reports.iter().map(|r| r.dynamodb).collect();
    // Each object: one write unit per event (custom ids), plus its claim's few writes.
    for (r, events) in reports.iter().zip([600, 50, 50]) {
        let w = r.dynamodb.write_units;
        assert!(
            w >= events && w <= events + 5,
            "{}: {:?}",
            r.key,
            r.dynamodb
        );
    }
    assert_eq!(reports[2].counts.duplicates, 50);
    assert!(
        units[0].read_units < 5,
        "new events read nothing: {:?}",
        units[0]
    );
    assert!(
        units[2].read_units >= 50,
        "each duplicate reads its mark: {:?}",
        units[2]
    );
    // Exactly the adapters' units: each object's own, none counted twice, plus the claims'
    // final writes (one a completed object, after its report).
    let sum = units
        .iter()
        .fold(s3_import::store::Capacity::default(), |a, &u| a + u);
    let spent = total(&p).since(before);
    assert_eq!(spent.read_units, sum.read_units);
    assert_eq!(spent.write_units, sum.write_units + 3, "{spent:?} {sum:?}");

    let s = p.status_summary().await.unwrap();
    assert_eq!(
        (s.completed, s.failed, s.in_progress, s.queued),
        (3, 0, 0, 0)
    );
    assert_eq!((s.counts.sent, s.counts.duplicates), (650, 50));
    assert_eq!(s.dynamodb, sum, "the claims keep each object's units");
    let shown = s.to_string();
    assert!(shown.contains("3 objects completed"), "{shown}");
    assert!(
        shown.contains(&format!("{} write units", sum.write_units)),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_endpoint_rejected_do_not_make_their_corrected_upload_a_duplicate() {
    let c = common::stack_with_tables().await;
    let reject = Arc::new(AtomicBool::new(true));
    let (endpoint, received) = rejecting_emulator("s3i-cost-rejected", reject.clone()).await;
    let bucket = bucket_with(
        &c,
        "t-rejected",
        &[
            ("in/a.json", events("fix", 0..120)),
            ("in/b.json", events("fix", 0..120)),
        ],
    )
    .await;
    let p = importer(&c, &bucket, endpoint, "rejected");
    let obj = |key: &str| object(&bucket, key);
    // Object A: every event rejected by the endpoint.
    let ObjectOutcome::Completed(a) = p.import(&obj("in/a.json"), soon(60), "a").await else {
        panic!("a did not complete");
    };
    assert_eq!(
        (a.counts.rejected, a.counts.sent, a.counts.duplicates),
        (120, 0, 0)
    );
    assert!(common::received(&received).is_empty());
    // Object B, the corrected upload with the same insert_ids, within the window: all sent.
    reject.store(false, Ordering::SeqCst);
    let ObjectOutcome::Completed(b) = p.import(&obj("in/b.json"), soon(60), "b").await else {
        panic!("b did not complete");
    };
    assert_eq!(
        (b.counts.sent, b.counts.duplicates),
        (120, 0),
        "{:?}",
        b.counts
    );
    assert_eq!(common::received(&received).len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_scan_reads_only_the_claims_of_objects_modified_since_the_last_one() {
    let c = common::stack_with_tables().await;
    let (endpoint, _received) = common::emulator("s3i-cost-scan", |config| {
        config.api_key = Some("test-key".into());
    })
    .await;
    let bucket = unique("t-scan-mark");
    c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let put = |key: String, body: Vec<u8>| {
        c.s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.into())
            .send()
    };
    put(
        "config/converter.json".into(),
        CONVERTER.as_bytes().to_vec(),
    )
    .await
    .unwrap();
    const OBJECTS: usize = 120;
    for i in 0..OBJECTS {
        put(format!("in/o{i:03}.json"), events(&format!("o{i}"), 0..2))
            .await
            .unwrap();
    }
    let pipeline = |full_every: &str| {
        let vars: std::collections::HashMap<&str, String> = [
            ("S3I_SOURCE", format!("scan-{bucket}")),
            (
                "S3I_CONVERTER",
                format!("s3://{bucket}/config/converter.json"),
            ),
            ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
            ("S3I_PREFIX", "in/".to_string()),
            ("S3I_CLAIMS_TABLE", CLAIMS.to_string()),
            ("S3I_DEDUPE_TABLE", "off".to_string()),
            ("AMPLITUDE_API_KEY", "test-key".to_string()),
            ("S3I_ENDPOINT", endpoint.clone()),
            ("S3I_REPORTS_FOR", "problems".to_string()),
            // S3 dates objects to the second: no margin beyond that, here.
            ("S3I_SCAN_MARGIN_SECS", "0".to_string()),
            ("S3I_SCAN_FULL_EVERY_SECS", full_every.to_string()),
        ]
        .into_iter()
        .collect();
        let settings = Settings::from_lookup(&|k| vars.get(k).cloned()).unwrap();
        s3_import::aws::pipeline(&c, settings)
    };
    let p = pipeline("86400");
    // Objects dated strictly before the first scan began.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let first = p
        .scan(&bucket, "in/", false, "scan-1", |_| {})
        .await
        .unwrap();
    assert!(first.full, "{first}");
    assert_eq!(first.imported, OBJECTS, "{first}");
    assert!(
        first.claims_capacity.read_units >= OBJECTS as u64,
        "{first:?}"
    );

    let second = p
        .scan(&bucket, "in/", false, "scan-2", |_| {})
        .await
        .unwrap();
    assert!(!second.full, "{second}");
    assert_eq!(
        (second.unchanged, second.completed_before),
        (OBJECTS, 0),
        "{second}"
    );
    let per_object = second.claims_capacity.read_units as f64 / OBJECTS as f64;
    assert!(
        per_object <= 0.05,
        "{per_object} read units per kept object: {second:?}"
    );

    // A new object is read and imported; the others still are not read.
    put("in/new.json".into(), events("new", 0..2))
        .await
        .unwrap();
    let third = p
        .scan(&bucket, "in/", false, "scan-3", |_| {})
        .await
        .unwrap();
    assert_eq!((third.imported, third.unchanged), (1, OBJECTS), "{third}");

    // Full passes only (S3I_SCAN_FULL_EVERY_SECS=0): every claim is read, as before marks.
    let full = pipeline("0")
        .scan(&bucket, "in/", false, "scan-4", |_| {})
        .await
        .unwrap();
    assert!(full.full);
    assert_eq!(
        (full.completed_before, full.unchanged),
        (OBJECTS + 1, 0),
        "{full}"
    );
}
