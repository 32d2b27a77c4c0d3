//! The importer against the local AWS stack (LocalStack: S3, SQS, DynamoDB) and the endpoint
//! emulator, over real connections: claims, dedupe, deadlines and resumes, failures, event
//! shapes, reports and the scan mode. `make test` starts the stack; run alone, set
//! `AWS_ENDPOINT_URL` to a running stack.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use s3_import::aws::{AwsPipeline, Clients};
use s3_import::claims::dynamo::DynamoClaims;
use s3_import::claims::{ClaimKey, ClaimState, ClaimStore};
use s3_import::dedupe::dynamo::DynamoDedupe;
use s3_import::dedupe::{DedupeKey, DedupeStore, RecordRef, Verdict};
use s3_import::emulator::EmulatorConfig;
use s3_import::invoke::lambda_response;
use s3_import::notify::ObjectRef;
use s3_import::pipeline::{ObjectOutcome, RetryReason};
use s3_import::report::Report;
use s3_import::settings::Settings;
use serde_json::{json, Value};
use tokio::time::Instant;

use common::{events, gzip, soon, unique, CONVERTER};

use common::{CLAIMS, DEDUPE};

/// The local stack's clients, with the test tables.
async fn clients() -> Clients {
    common::stack_with_tables().await
}

/// One test's world: a bucket with the converter, an emulator, and settings for both.
struct World {
    c: Clients,
    bucket: String,
    endpoint: String,
    received: PathBuf,
    vars: HashMap<String, String>,
}

impl World {
    async fn new(name: &str, emulator: impl FnOnce(&mut EmulatorConfig)) -> World {
        let c = clients().await;
        let bucket = unique(&format!("t-{name}"));
        c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let (endpoint, dir) = common::emulator(&format!("s3i-pipeline-{name}"), |config| {
            config.api_key = Some("test-key".into());
            emulator(config);
        })
        .await;
        let w = World {
            c,
            vars: [
                ("S3I_SOURCE", unique(name)),
                (
                    "S3I_CONVERTER",
                    format!("s3://{bucket}/config/converter.json"),
                ),
                ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
                ("S3I_PREFIX", "in/".to_string()),
                ("S3I_CLAIMS_TABLE", CLAIMS.to_string()),
                ("S3I_DEDUPE_TABLE", DEDUPE.to_string()),
                ("AMPLITUDE_API_KEY", "test-key".to_string()),
                ("S3I_ENDPOINT", endpoint.clone()),
                ("S3I_STOP_MARGIN_SECS", "1".to_string()),
                ("S3I_MAX_RUN_SECS", "60".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            bucket,
            endpoint,
            received: dir,
        };
        w.put("config/converter.json", CONVERTER.as_bytes()).await;
        w
    }

    /// A new queue's URL.
    async fn queue(&self, name: &str) -> String {
        let out = self
            .c
            .sqs
            .create_queue()
            .queue_name(unique(name))
            .send()
            .await;
        out.unwrap().queue_url().unwrap().to_string()
    }

    fn settings(&self) -> Settings {
        let vars = self.vars.clone();
        Settings::from_lookup(&|k| vars.get(k).cloned()).unwrap()
    }

    fn pipeline(&self) -> AwsPipeline {
        s3_import::aws::pipeline(&self.c, self.settings())
    }

    async fn put(&self, key: &str, body: &[u8]) {
        self.c
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let out = self
            .c
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(out.body.collect().await.unwrap().to_vec())
    }

    async fn report(&self, key: &str) -> Report {
        let bytes = self
            .get(&format!("reports/{}/{key}.report.json", self.bucket))
            .await
            .unwrap_or_else(|| panic!("no report for {key}"));
        serde_json::from_slice(&bytes).unwrap()
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

    async fn claim(&self, key: &str) -> Option<ClaimState> {
        DynamoClaims::new(self.c.dynamodb.clone(), CLAIMS)
            .get(&self.claim_key(key))
            .await
            .unwrap()
    }

    /// insert_id → how many times the endpoint accepted it.
    fn received(&self) -> BTreeMap<String, u32> {
        common::received(&self.received)
    }

    async fn stats(&self) -> Value {
        common::stats(&self.endpoint).await
    }
}

/// An S3 notification record as AWS writes it; `raw_key` is form-encoded as AWS encodes it.
fn s3_record(bucket: &str, raw_key: &str, size: u64) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-28T10:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "import",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": raw_key, "size": size, "eTag": "e", "sequencer": "00A1"}}
    })
}

fn sqs_event(bodies: &[(&str, String)]) -> Value {
    json!({"Records": bodies.iter().map(|(id, body)| json!({
        "messageId": id, "receiptHandle": format!("h-{id}"), "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q", "awsRegion": "us-east-1"
    })).collect::<Vec<_>>()})
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_dedupe_on_dynamodb_meet_the_contracts() {
    let c = clients().await;
    let claims = DynamoClaims::new(c.dynamodb.clone(), CLAIMS);
    s3_import::claims::contract::run(&claims, &unique("contract")).await;
    let dedupe = DynamoDedupe::new(c.dynamodb.clone(), DEDUPE);
    s3_import::dedupe::contract::run(&dedupe, &unique("contract")).await;

    // Ten claims at once: one winner.
    let claims = Arc::new(claims);
    let key = ClaimKey {
        source: unique("race"),
        bucket: "b".into(),
        key: "k".into(),
    };
    let now = 1_800_000_000;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (claims, key) = (claims.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            claims
                .claim(&key, &format!("owner-{i}"), now + 60, now)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += matches!(
            t.await.unwrap(),
            s3_import::claims::ClaimOutcome::Acquired { .. }
        ) as u32;
    }
    assert_eq!(won, 1);

    // Two objects carrying the same insert_id at the same time: one sends it.
    let dedupe = Arc::new(dedupe);
    let source = unique("dedupe-race");
    let mut tasks = Vec::new();
    for obj in 0..6 {
        let (dedupe, source) = (dedupe.clone(), source.clone());
        tasks.push(tokio::spawn(async move {
            let events: Vec<(DedupeKey, RecordRef)> = (0..150)
                .map(|i| {
                    (
                        DedupeKey::for_event(&source, Some("d"), None, &format!("same-{i}"))
                            .unwrap(),
                        RecordRef {
                            object: format!("b/obj-{obj}"),
                            n: i,
                        },
                    )
                })
                .collect();
            dedupe.check_and_mark(&events, now).await.unwrap()
        }));
    }
    let mut new = vec![0; 150];
    for t in tasks {
        for (i, v) in t.await.unwrap().into_iter().enumerate() {
            new[i] += (v == Verdict::New) as u32;
        }
    }
    assert!(
        new.iter().all(|&n| n == 1),
        "each key new exactly once: {new:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_deliveries_of_one_notification_import_it_once() {
    let w = World::new("dup10", |_| {}).await;
    let data = gzip(&events("d", 0..3000));
    w.put("in/batch 1.json.gz", &data).await;
    let p = Arc::new(w.pipeline());
    let event = sqs_event(&[(
        "m",
        json!({"Records": [s3_record(&w.bucket, "in/batch+1.json.gz", data.len() as u64)]})
            .to_string(),
    )]);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (p, event) = (p.clone(), event.clone());
        tasks.push(tokio::spawn(async move {
            let r = s3_import::invoke::handle(&p, &event, soon(60), &format!("req-{i}")).await;
            let response = lambda_response(&event, &r).unwrap();
            (r, response)
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        let (r, response) = t.await.unwrap();
        let m = &r.messages[0];
        if matches!(m.objects[0].1, ObjectOutcome::HeldByOther { .. }) {
            // A copy that met the live lease comes back when the lease ends (then finds the
            // object completed), in case the holder died.
            assert_eq!(
                response,
                json!({"batchItemFailures": [{"itemIdentifier": "m"}]})
            );
            let after = m.retry_after.expect("handed back until the lease ends");
            assert!(after > Duration::from_secs(30), "{after:?}");
        } else {
            assert_eq!(response, json!({"batchItemFailures": []}), "acknowledged");
        }
        for (_, o) in &m.objects {
            outcomes.push(o.label());
        }
    }
    assert_eq!(
        outcomes.iter().filter(|o| *o == "completed").count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.iter().all(|o| o == "completed"
        || o == "already completed"
        || o == "being imported by another invocation"));
    let got = w.received();
    assert_eq!(got.len(), 3000);
    assert!(got.values().all(|&n| n == 1), "no event sent twice");
    assert_eq!(w.stats().await["duplicates"], 0);
    let r = w.report("in/batch 1.json.gz").await;
    assert_eq!(r.counts.sent, 3000);
    assert_adds_up(&r);
    // One BatchExecuteStatement per 25 events (DynamoDB's most), a few reads besides.
    assert!(
        r.dedupe_requests <= 3000 / 25 + 10,
        "{} dedupe requests for 3000 events",
        r.dedupe_requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_id_in_two_objects_is_sent_once_and_a_retried_object_resends_its_own() {
    let w = World::new("dedupe", |_| {}).await;
    w.put("in/a.json", &events("x", 0..400)).await;
    w.put("in/b.json", &events("x", 300..700)).await;
    let p = w.pipeline();
    let a = p.import(&w.obj("in/a.json"), soon(60), "t-a").await;
    assert_eq!(completed(&a).counts.sent, 400);
    let b = p.import(&w.obj("in/b.json"), soon(60), "t-b").await;
    let b = completed(&b);
    assert_eq!((b.counts.sent, b.counts.duplicates), (300, 100));
    assert_adds_up(b);
    assert_eq!(w.received().len(), 700);

    // An object whose first attempt marked its events but could not send them (a wrong API
    // key) sends them on the retry: they are its own, not duplicates.
    w.put("in/c.json", &events("y", 0..500)).await;
    let mut wrong = w.settings();
    wrong.sink.api_key = "wrong-key".into();
    let first = s3_import::aws::pipeline(&w.c, wrong)
        .import(&w.obj("in/c.json"), soon(60), "t-c1")
        .await;
    match &first {
        ObjectOutcome::Retry(why) => assert!(why.to_string().contains("API key"), "{why}"),
        other => panic!("expected a retry, got {other:?}"),
    }
    assert!(matches!(
        w.claim("in/c.json").await,
        Some(ClaimState::InProgress { checkpoint: 0, .. })
    ));
    let second = p.import(&w.obj("in/c.json"), soon(60), "t-c2").await;
    let second = completed(&second);
    assert_eq!((second.counts.sent, second.counts.duplicates), (500, 0));
    assert_eq!(second.invocations, 2);
    assert_eq!(
        w.received().keys().filter(|k| k.starts_with("y-")).count(),
        500
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_too_big_for_one_invocation_completes_over_several_through_the_queue() {
    let w = World::new("deadline", |c| c.latency = Duration::from_millis(150)).await;
    let queue = w.queue("cont").await;
    let mut w = w;
    w.vars.insert("S3I_QUEUE_URL".into(), queue.clone());
    w.vars.insert("S3I_MAX_IN_FLIGHT".into(), "1".into());
    w.vars.insert("S3I_BATCH_EVENTS".into(), "100".into());
    let data = gzip(&events("big", 0..4000));
    w.put("in/big.json.gz", &data).await;
    let p = w.pipeline();

    // Each invocation has 4 s; 40 requests of 150 ms one at a time need about 6 s (and the
    // local DynamoDB checks about 1,500 events a second).
    let mut event = sqs_event(&[(
        "first",
        json!({"Records": [s3_record(&w.bucket, "in/big.json.gz", data.len() as u64)]}).to_string(),
    )]);
    let (mut invocations, mut paused, mut cut_off) = (0, 0, 0);
    let report = loop {
        invocations += 1;
        assert!(invocations <= 30, "not finished after 30 invocations");
        let r = s3_import::invoke::handle(&p, &event, soon(4), "inv").await;
        eprintln!(
            "invocation {invocations}: {}",
            r.messages[0].objects[0].1.label()
        );
        match &r.messages[0].objects[0].1 {
            ObjectOutcome::Completed(report) => break report.clone(),
            ObjectOutcome::Paused { checkpoint } => {
                assert!(*checkpoint > 0);
                assert!(r.failed_message_ids().is_empty(), "continued, not retried");
                paused += 1;
                // The continuation message is on the queue: the next invocation gets it.
                let got = common::receive_as_lambda(&w.c.sqs, &queue, 5).await;
                assert_eq!(got.handles.len(), 1, "one continuation message");
                s3_import::queue::sqs::settle(&w.c.sqs, &queue, &got.handles, &Default::default())
                    .await
                    .unwrap();
                event = got.event;
            }
            // No record confirmed in time (a slow, shared machine), or still finishing at the
            // very end and cut off (its claim released, this invocation not in the report):
            // the message is retried.
            ObjectOutcome::Retry(why) => {
                assert_eq!(r.failed_message_ids().len(), 1);
                if *why == RetryReason::CutOff {
                    cut_off += 1;
                }
            }
            // Cut off after its claim was completed (the invocation's very last step): the
            // retried notice finds the object done, and its report is the one written then.
            ObjectOutcome::AlreadyCompleted if cut_off > 0 => {
                break Box::new(w.report("in/big.json.gz").await);
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(paused >= 1, "the object was continued by a message");
    assert!(invocations >= 2, "the object needed several invocations");
    // A cut-off invocation may have saved its progress before it was cut off, or not.
    assert!(
        report.invocations <= invocations && report.invocations + cut_off >= invocations,
        "{} in the report, {invocations} invocations, {cut_off} cut off",
        report.invocations
    );
    assert_eq!(report.counts.records, 4000);
    assert_eq!(report.counts.sent, 4000);
    assert_adds_up(&report);
    let got = w.received();
    assert_eq!(got.len(), 4000, "every event arrived");
    assert!(got.values().all(|&n| n == 1), "and only once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lease_is_left_alone_and_an_expired_one_is_taken_over_from_its_checkpoint() {
    let w = World::new("lease", |_| {}).await;
    w.put("in/l.json", &events("l", 0..1000)).await;
    let claims = DynamoClaims::new(w.c.dynamodb.clone(), CLAIMS);
    let key = w.claim_key("in/l.json");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    claims.claim(&key, "crashed", now + 600, now).await.unwrap();
    let p = w.pipeline();
    let o = p.import(&w.obj("in/l.json"), soon(60), "t1").await;
    assert!(matches!(o, ObjectOutcome::HeldByOther { .. }), "{o:?}");
    assert!(w.received().is_empty());

    // The holder confirmed 600 records, then died; its lease ends.
    let progress = json!({"counts": {"records": 600, "converted": 600, "payloads": 600, "sent": 600},
                          "invocations": 1, "started_ms": 1});
    claims
        .checkpoint(
            &key,
            "crashed",
            600,
            &s3_import::claims::Progress::parse(&progress.to_string()),
            now - 1,
        )
        .await
        .unwrap();
    let o = p.import(&w.obj("in/l.json"), soon(60), "t2").await;
    let r = completed(&o);
    assert_eq!(r.invocations, 2);
    assert_eq!((r.counts.records, r.counts.sent), (1000, 1000));
    assert_adds_up(r);
    let got = w.received();
    assert_eq!(
        got.len(),
        400,
        "only the records after the checkpoint are sent"
    );
    assert!(got
        .keys()
        .all(|k| k["l-".len()..].parse::<u64>().unwrap() >= 600));
    // The old owner can no longer write.
    assert_eq!(
        claims
            .complete(&key, "crashed", &Default::default())
            .await
            .unwrap(),
        s3_import::claims::Held::Lost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_object_is_never_imported_again_even_when_overwritten() {
    let w = World::new("once", |_| {}).await;
    w.put("in/o.json", &events("o", 0..50)).await;
    let p = w.pipeline();
    completed(&p.import(&w.obj("in/o.json"), soon(60), "t1").await);
    w.put("in/o.json", &events("o2", 0..50)).await;
    let event = json!({"Records": [s3_record(&w.bucket, "in/o.json", 10)]});
    let r = s3_import::invoke::handle(&p, &event, soon(60), "t2").await;
    assert!(matches!(
        r.messages[0].objects[0].1,
        ObjectOutcome::AlreadyCompleted
    ));
    assert!(lambda_response(&event, &r).is_ok());
    assert_eq!(w.received().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_failed_with_a_reason_acknowledged_and_retryable_on_purpose() {
    let w = World::new("fail", |_| {}).await;
    let good = gzip(&events("g", 0..300));
    let mut truncated = gzip(&events("t", 0..20_000));
    truncated.truncate(truncated.len() * 2 / 3);
    w.put("in/cut.json.gz", &truncated).await;
    let p = w.pipeline();
    let event = sqs_event(&[
        (
            "missing",
            json!({"Records": [s3_record(&w.bucket, "in/never.json", 5)]}).to_string(),
        ),
        (
            "cut",
            json!({"Records": [s3_record(&w.bucket, "in/cut.json.gz", 5)]}).to_string(),
        ),
    ]);
    let r = s3_import::invoke::handle(&p, &event, soon(60), "t1").await;
    assert_eq!(
        lambda_response(&event, &r).unwrap(),
        json!({"batchItemFailures": []}),
        "permanent failures are acknowledged, not retried forever"
    );
    let labels: Vec<String> = r.messages.iter().map(|m| m.objects[0].1.label()).collect();
    assert!(
        labels[0].starts_with("gone before it was read"),
        "{labels:?}"
    );
    assert!(
        labels[1].starts_with("failed: unreadable object"),
        "{labels:?}"
    );
    match w.claim("in/cut.json.gz").await {
        Some(ClaimState::Failed { reason, .. }) => {
            assert!(reason.contains("unreadable"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The corrupt file was checked to its end before anything was sent.
    let cut = w.report("in/cut.json.gz").await;
    assert_eq!(cut.outcome, "FAILED");
    assert!(cut.counts.add_up(), "{:?}", cut.counts);
    assert_eq!((cut.counts.records, w.received().len()), (0, 0));

    // A missing object never blocks its key: its new content imports on its notice. A FAILED
    // object is not imported again by a notice, only by `retry`.
    w.put("in/never.json", &good).await;
    w.put("in/cut.json.gz", &gzip(&events("c", 0..10))).await;
    let again = s3_import::invoke::handle(&p, &event, soon(60), "t2").await;
    assert_eq!(completed(&again.messages[0].objects[0].1).counts.sent, 300);
    assert!(matches!(
        again.messages[1].objects[0].1,
        ObjectOutcome::AlreadyFailed(_)
    ));
    let retried = p.retry(&w.obj("in/cut.json.gz"), "t3").await.unwrap();
    assert_eq!(completed(&retried).counts.sent, 10);

    // A bad converter fails nothing: nothing is claimed, the notice comes back (with the
    // load errors as its reason) until the file is fixed; then the object imports by itself.
    let mut bad = w.settings();
    bad.converter.key = "config/bad.json".into();
    w.put("config/bad.json", br#"{"converterConfig": {"fileType": "json", "compressionType": "none", "convertToAmplitudeFunc": {"event_type": ["nosuchop", "x"]}}}"#).await;
    w.put("in/x.json", &events("x", 0..5)).await;
    let notice = sqs_event(&[(
        "x",
        json!({"Records": [s3_record(&w.bucket, "in/x.json", 5)]}).to_string(),
    )]);
    let paused = s3_import::aws::pipeline(&w.c, bad.clone());
    let r = s3_import::invoke::handle(&paused, &notice, soon(60), "t4").await;
    match &r.messages[0].objects[0].1 {
        ObjectOutcome::Retry(RetryReason::ConverterUnusable(reason)) => assert!(
            reason.starts_with("bad converter file") && reason.contains("nosuchop"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        lambda_response(&notice, &r).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "x"}]}),
        "the notice comes back"
    );
    assert!(
        w.claim("in/x.json").await.is_none(),
        "not claimed, never FAILED"
    );
    // Missing is the same wait.
    let mut missing = bad.clone();
    missing.converter.key = "config/not-there.json".into();
    let o = s3_import::aws::pipeline(&w.c, missing)
        .import(&w.obj("in/x.json"), soon(60), "t5")
        .await;
    assert!(
        matches!(&o, ObjectOutcome::Retry(RetryReason::ConverterUnusable(_))),
        "{o:?}"
    );
    assert!(w.claim("in/x.json").await.is_none());
    // Fixed: the same pipeline (its converter cache included) imports the waiting object.
    w.put("config/bad.json", CONVERTER.as_bytes()).await;
    let r = s3_import::invoke::handle(&paused, &notice, soon(60), "t6").await;
    assert_eq!(completed(&r.messages[0].objects[0].1).counts.sent, 5);
    let received = w.received();
    for i in 0..5 {
        assert_eq!(received.get(&format!("x-{i}")), Some(&1), "x-{i} once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_shape_and_awkward_keys_reach_the_right_object() {
    let w = World::new("shapes", |_| {}).await;
    let keys = [
        "in/a b.json",
        "in/a+b.json",
        "in/dt=2024-01-01/10:47:07.json",
        "in/é (1) copy.json",
    ];
    for (i, k) in keys.iter().enumerate() {
        w.put(k, &events(&format!("k{i}"), 0..10)).await;
    }
    let b = &w.bucket;
    // As AWS encodes keys: form encoding, `+` for space, `%2B` for `+`.
    let direct = json!({"Records": [s3_record(b, "in/a+b.json", 10)]});
    let sns = sqs_event(&[(
        "sns",
        json!({"Type": "Notification", "MessageId": "x", "Message":
            json!({"Records": [s3_record(b, "in/a%2Bb.json", 10)]}).to_string()})
        .to_string(),
    )]);
    let eventbridge = json!({"version": "0", "id": "e", "detail-type": "Object Created", "source": "aws.s3",
        "account": "000000000000", "time": "2026-11-28T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"version": "0", "bucket": {"name": b},
                   "object": {"key": "in/dt=2024-01-01/10:47:07.json", "size": 10, "etag": "e"}}});
    let scan = json!({"s3import": {"bucket": b, "key": "in/é (1) copy.json"}});
    let p = w.pipeline();
    for (event, key) in [
        (&direct, keys[0]),
        (&sns, keys[1]),
        (&eventbridge, keys[2]),
        (&scan, keys[3]),
    ] {
        let r = s3_import::invoke::handle(&p, event, soon(60), "shape").await;
        let (obj, outcome) = &r.messages[0].objects[0];
        assert_eq!(obj.key, key);
        assert_eq!(completed(outcome).counts.sent, 10, "{key}");
    }
    // Test events, folders, empty objects and other prefixes are acknowledged, not imported.
    let ignored = sqs_event(&[
        (
            "test",
            json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": b}).to_string(),
        ),
        (
            "folder",
            json!({"Records": [s3_record(b, "in/folder/", 0)]}).to_string(),
        ),
        (
            "empty",
            json!({"Records": [s3_record(b, "in/empty.json", 0)]}).to_string(),
        ),
        (
            "report",
            json!({"Records": [s3_record(b, "reports/x.json", 5)]}).to_string(),
        ),
        ("bad", "not json".to_string()),
    ]);
    let r = s3_import::invoke::handle(&p, &ignored, soon(60), "ign").await;
    assert_eq!(r.messages.iter().map(|m| m.ignored.len()).sum::<usize>(), 3);
    assert!(matches!(
        r.messages[3].objects[0].1,
        ObjectOutcome::Ignored(_)
    ));
    // Only the unreadable message comes back, with Lambda's casing.
    assert_eq!(
        lambda_response(&ignored, &r).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "bad"}]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_from_the_bucket_drive_the_worker() {
    let w = World::new("notify", |_| {}).await;
    let queue = s3_import::aws::setup(
        &w.c,
        CLAIMS,
        Some(DEDUPE),
        &w.bucket,
        &unique("q"),
        "in/",
        s3_import::aws::Announce::Queue,
    )
    .await
    .unwrap();
    // Keys that emulators and AWS encode differently in notifications.
    let keys = ["in/a b.json", "in/a+b.json", "in/10:47:07 é.json"];
    for (i, k) in keys.iter().enumerate() {
        w.put(k, &gzip(&events(&format!("n{i}"), 0..100))).await;
    }
    let p = w.pipeline();
    let mut lines = String::new();
    s3_import::aws::work_queue(
        &p,
        &w.c.sqs,
        &queue,
        Some(Duration::from_secs(3)),
        Duration::from_secs(1),
        |t| lines.push_str(t),
    )
    .await
    .unwrap();
    for k in keys {
        assert!(
            matches!(w.claim(k).await, Some(ClaimState::Completed { .. })),
            "{k} not completed; worker said:\n{lines}"
        );
    }
    assert_eq!(w.received().len(), 300);
    let status = p.status(false).await.unwrap();
    assert_eq!(status.matches("COMPLETED").count(), 3, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_imports_objects_that_were_never_announced_and_skips_completed_ones() {
    let w = World::new("scan", |_| {}).await;
    for i in 0..3 {
        w.put(&format!("in/s{i}.json"), &events(&format!("s{i}"), 0..20))
            .await;
    }
    w.put("in/folder/", b"").await;
    w.put("other/x.json", &events("z", 0..5)).await;
    let p = w.pipeline();
    let first = p
        .scan(&w.bucket, "in/", false, "scan", |_| {})
        .await
        .unwrap();
    assert_eq!((first.imported, first.ignored), (3, 1), "{first}");
    w.put("in/s3.json", &events("s3", 0..20)).await;
    let second = p
        .scan(&w.bucket, "in/", false, "scan", |_| {})
        .await
        .unwrap();
    assert_eq!(
        (second.imported, second.completed_before),
        (1, 3),
        "{second}"
    );
    assert_eq!(w.received().len(), 80);
    // The scheduled scan of the Lambda function queues what it finds; the queue then drives
    // the same handler.
    let queue = w.queue("scan").await;
    let mut w = w;
    w.vars.insert("S3I_QUEUE_URL".into(), queue.clone());
    w.put("in/s4.json", &events("s4", 0..20)).await;
    w.put("in/s5.json", &events("s5", 0..20)).await;
    let p = w.pipeline();
    let scan = json!({"s3import-scan": {"bucket": w.bucket, "prefix": "in/"}});
    let answer = s3_import::invoke::invoke(&p, &scan, soon(60), "scheduled", |_| {})
        .await
        .unwrap();
    assert!(
        answer["scan"].as_str().unwrap().contains("queued 2"),
        "{answer}"
    );
    let mut lines = String::new();
    s3_import::aws::work_queue(
        &p,
        &w.c.sqs,
        &queue,
        Some(Duration::from_secs(2)),
        Duration::from_secs(1),
        |t| lines.push_str(t),
    )
    .await
    .unwrap();
    assert_eq!(lines.matches(": completed").count(), 2, "{lines}");
    assert_eq!(w.received().len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_add_up_and_keep_invalid_records_with_their_raw_text() {
    let w = World::new("report", |_| {}).await;
    let mut data = events("r", 0..10);
    data.extend_from_slice(b"{not json\n");
    data.extend_from_slice(
        b"{\"id\": \"h\", \"type\": \"Heartbeat\", \"device\": \"d\", \"ts\": 1}\n",
    );
    data.extend_from_slice(
        b"{\"id\": \"t\", \"type\": \"Played\", \"device\": \"d\", \"ts\": 1.5}\n",
    );
    data.extend_from_slice(&events("r", 0..2)); // the same insert_ids again, in other records
                                                // Stored gzip with Content-Encoding: gzip must still arrive as stored (the SDK does not
                                                // decode it) and be decoded once, by us.
    w.c.s3
        .put_object()
        .bucket(&w.bucket)
        .key("in/r.json.gz")
        .content_encoding("gzip")
        .body(gzip(&data).into())
        .send()
        .await
        .unwrap();
    let p = w.pipeline();
    let r = p.import(&w.obj("in/r.json.gz"), soon(60), "t").await;
    let r = completed(&r);
    let c = &r.counts;
    assert_eq!(
        (
            c.records,
            c.converted,
            c.skipped,
            c.invalid,
            c.sent,
            c.duplicates
        ),
        (15, 12, 1, 2, 10, 2)
    );
    assert_adds_up(r);
    let stored = w.report("in/r.json.gz").await;
    assert_eq!(&stored, r);
    assert_eq!(r.rejects.len(), 1);
    let key = r.rejects[0]
        .strip_prefix(&format!("s3://{}/", w.bucket))
        .unwrap();
    let lines: Vec<Value> = String::from_utf8(w.get(key).await.unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["record"], 10);
    assert_eq!(lines[0]["raw"], "{not json");
    assert_eq!(lines[1]["record"], 12);
    assert!(lines[1]["reason"].as_str().unwrap().contains("time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_time_left_means_no_claim_and_the_message_comes_back() {
    let w = World::new("notime", |_| {}).await;
    w.put("in/t.json", &events("t", 0..10)).await;
    let p = w.pipeline();
    let event = sqs_event(&[(
        "late",
        json!({"Records": [s3_record(&w.bucket, "in/t.json", 10)]}).to_string(),
    )]);
    // A context whose deadline has passed (or is zero) must not claim with a lease in the past.
    for deadline in [Instant::now(), Instant::now() + Duration::from_millis(500)] {
        let r = s3_import::invoke::handle(&p, &event, deadline, "late").await;
        assert_eq!(
            lambda_response(&event, &r).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "late"}]})
        );
        assert_eq!(w.claim("in/t.json").await, None, "nothing claimed");
    }
    let r = s3_import::invoke::handle(&p, &event, soon(60), "in-time").await;
    assert_eq!(completed(&r.messages[0].objects[0].1).counts.sent, 10);
}

// ---- Reliability: the fault matrix's five failures, each on the local stack. ----

/// Enqueues a bucket notification for `key` on `queue`.
async fn notify_queue(w: &World, queue: &str, key: &str) {
    let body = json!({"Records": [s3_record(&w.bucket, key, 1)]}).to_string();
    w.c.sqs
        .send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

/// A claim held by a worker that died (kill -9): its lease runs `lease_secs` more and its
/// last checkpoint is at `checkpoint` records.
async fn dead_worker_claim(w: &World, key: &str, lease_secs: i64, checkpoint: u64) {
    let store = DynamoClaims::new(w.c.dynamodb.clone(), CLAIMS);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ck = w.claim_key(key);
    let got = store.claim(&ck, "dead-worker", now + lease_secs, now).await;
    assert!(matches!(
        got,
        Ok(s3_import::claims::ClaimOutcome::Acquired { .. })
    ));
    let progress = json!({"counts": {"records": checkpoint, "converted": checkpoint,
        "payloads": checkpoint, "sent": checkpoint}, "invocations": 1});
    store
        .checkpoint(
            &ck,
            "dead-worker",
            checkpoint,
            &s3_import::claims::Progress::parse(&progress.to_string()),
            now + lease_secs,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_importers_object_comes_back_by_itself_when_its_lease_ends() {
    let w = World::new("crash", |_| {}).await;
    let queue = w.queue("crash").await;
    w.put("in/crashed.json", &events("cr", 0..400)).await;
    // The dead worker had confirmed 100 records; SQS redelivers the notice while its lease
    // (6 s more) is live.
    dead_worker_claim(&w, "in/crashed.json", 6, 100).await;
    notify_queue(&w, &queue, "in/crashed.json").await;
    let mut lines = Vec::new();
    s3_import::aws::work_queue(
        &w.pipeline(),
        &w.c.sqs,
        &queue,
        Some(Duration::from_secs(12)),
        Duration::from_secs(1),
        |l| lines.push(l.to_string()),
    )
    .await
    .unwrap();
    let text = lines.concat();
    assert!(
        text.contains("being imported by another invocation"),
        "{text}"
    );
    assert!(
        text.contains("completed"),
        "taken over after the lease, no scan: {text}"
    );
    assert!(matches!(
        w.claim("in/crashed.json").await,
        Some(ClaimState::Completed { .. })
    ));
    let got = w.received();
    assert_eq!(
        got.len(),
        300,
        "the records after the dead worker's checkpoint"
    );
    let want: Vec<String> = (100..400).map(|i| format!("cr-{i}")).collect();
    assert!(
        want.iter().all(|id| got.get(id) == Some(&1)),
        "cr-100..cr-399 once each"
    );
    let r = w.report("in/crashed.json").await;
    assert_eq!(r.counts.records, 400, "the report counts the whole object");
    let left =
        w.c.sqs
            .receive_message()
            .queue_url(&queue)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
    assert!(
        left.messages().is_empty(),
        "the notice was acknowledged in the end"
    );
}

/// A converter without an insert_id: default insert_ids `<bucket>/<key>:<n>`.
const CONVERTER_DEFAULT_IDS: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "auto",
  "convertToAmplitudeFunc": {"event_type": "type", "device_id": "device", "time": "ts",
    "event_properties": {"id": "id"}}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_during_an_import_never_mixes_two_versions() {
    // 30 requests of 200 ms one at a time: longer than the first invocation (default ids cost
    // no dedupe call, so the endpoint alone must outlast it).
    let w = World::new("overwrite", |c| c.latency = Duration::from_millis(200)).await;
    let mut w = w;
    w.vars.insert("S3I_MAX_IN_FLIGHT".into(), "1".into());
    w.vars.insert("S3I_BATCH_EVENTS".into(), "100".into());
    w.put("config/converter.json", CONVERTER_DEFAULT_IDS.as_bytes())
        .await;
    w.put("in/over.json", &events("old", 0..3000)).await;
    let p = w.pipeline();
    let obj = w.obj("in/over.json");
    // A first invocation stops part way (it ran out of time: as a crash after a checkpoint).
    let first = p.import(&obj, soon(4), "first").await;
    let ObjectOutcome::Paused { checkpoint } = first else {
        panic!("expected a pause, got {first:?}");
    };
    assert!(checkpoint > 0 && checkpoint < 3000, "{checkpoint}");
    // New content under the same key, then the import resumes.
    w.put("in/over.json", &events("new", 0..2000)).await;
    let second = p.import(&obj, soon(60), "second").await;
    let ObjectOutcome::Failed(r) = &second else {
        panic!("expected FAILED, got {second:?}");
    };
    let reason = r.reason.clone().unwrap_or_default();
    assert!(reason.contains("changed during the import"), "{reason}");
    assert!(
        reason.contains(&format!("first {checkpoint} records")),
        "{reason}"
    );
    let seen = |w: &World| -> (usize, usize) {
        let text = std::fs::read_to_string(w.received.join("events.jsonl")).unwrap_or_default();
        let (mut old, mut new) = (0, 0);
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            match v["event_properties"]["id"].as_str().unwrap_or("") {
                id if id.starts_with("old-") => old += 1,
                id if id.starts_with("new-") => new += 1,
                _ => {}
            }
        }
        (old, new)
    };
    let (old, new) = seen(&w);
    assert_eq!(
        new, 0,
        "nothing of the new content was sent into the old import"
    );
    assert!(old as u64 >= checkpoint, "{old} of the old content sent");
    // `retry` imports the new content from its first record, every event once, with ids
    // that the old content's ids cannot swallow.
    let retried = p.retry(&obj, "retry").await.unwrap();
    let r = completed(&retried);
    assert_eq!((r.counts.records, r.counts.sent), (2000, 2000));
    assert_eq!(seen(&w).1, 2000);
    let stats = w.stats().await;
    assert_eq!(
        stats["duplicates"], 0,
        "the endpoint dropped none of the new content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_1011_bytes_completes_and_its_report_fits() {
    let w = World::new("longkey", |_| {}).await;
    let key = format!("in/{}.json", "k".repeat(1011 - 8));
    assert_eq!(key.len(), 1011);
    let mut body = events("lk", 0..200);
    body.extend_from_slice(b"not json\n");
    w.put(&key, &body).await;
    let o = w.pipeline().import(&w.obj(&key), soon(60), "long").await;
    let r = completed(&o);
    assert_eq!((r.counts.sent, r.counts.invalid), (200, 1));
    assert_eq!(r.rejects.len(), 1, "the rejects part was written too");
    assert!(matches!(
        w.claim(&key).await,
        Some(ClaimState::Completed { .. })
    ));
    let reports =
        w.c.s3
            .list_objects_v2()
            .bucket(&w.bucket)
            .prefix("reports/")
            .send()
            .await
            .unwrap();
    let keys: Vec<&str> = reports.contents().iter().filter_map(|o| o.key()).collect();
    let report_key = keys
        .iter()
        .find(|k| k.ends_with(".report.json"))
        .expect("a report");
    assert!(report_key.len() <= 1024);
    let saved: Report = serde_json::from_slice(&w.get(report_key).await.unwrap()).unwrap();
    assert_eq!(saved.key, key, "the report names the whole key");
    assert_eq!(w.received().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_with_flipped_bytes_in_the_middle_sends_nothing() {
    let w = World::new("flipped", |_| {}).await;
    let mut data = gzip(&events("fl", 0..20_000));
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0x5a;
    }
    w.put("in/flipped.json.gz", &data).await;
    let o = w
        .pipeline()
        .import(&w.obj("in/flipped.json.gz"), soon(60), "f")
        .await;
    let ObjectOutcome::Failed(r) = &o else {
        panic!("expected FAILED, got {o:?}");
    };
    assert!(
        r.reason
            .as_deref()
            .unwrap_or("")
            .contains("no record was sent"),
        "{r:?}"
    );
    assert_eq!(r.counts.records, 0);
    assert_eq!(
        w.received().len(),
        0,
        "no garbled event reached the endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_for_a_deleted_object_does_not_block_its_key() {
    let w = World::new("vanish", |_| {}).await;
    let p = w.pipeline();
    let obj = w.obj("in/later.json");
    let gone = p.import(&obj, soon(60), "early").await;
    assert!(matches!(gone, ObjectOutcome::Gone(_)), "{gone:?}");
    assert!(!gone.unfinished(), "acknowledged");
    assert!(!matches!(
        w.claim("in/later.json").await,
        Some(ClaimState::Failed { .. })
    ));
    w.put("in/later.json", &events("la", 0..50)).await;
    let o = p.import(&obj, soon(60), "later").await;
    assert_eq!(completed(&o).counts.sent, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_versioned_bucket_a_resume_finishes_the_version_it_started() {
    let mut w = World::new("versioned", |c| c.latency = Duration::from_millis(100)).await;
    w.c.s3
        .put_bucket_versioning()
        .bucket(&w.bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    w.vars.insert("S3I_MAX_IN_FLIGHT".into(), "1".into());
    w.vars.insert("S3I_BATCH_EVENTS".into(), "100".into());
    w.put("in/v.json", &events("v1", 0..3000)).await;
    let p = w.pipeline();
    // The notice names no version (a scan, or an unversioned notification shape).
    let obj = w.obj("in/v.json");
    let first = p.import(&obj, soon(4), "first").await;
    assert!(matches!(first, ObjectOutcome::Paused { .. }), "{first:?}");
    w.put("in/v.json", &events("v2", 0..500)).await;
    let second = p.import(&obj, soon(60), "second").await;
    let r = completed(&second);
    assert_eq!(
        r.counts.records, 3000,
        "the version it started on, to its end"
    );
    let got = w.received();
    assert_eq!(got.keys().filter(|k| k.starts_with("v1-")).count(), 3000);
    assert_eq!(
        got.keys().filter(|k| k.starts_with("v2-")).count(),
        0,
        "no mixing"
    );
    assert!(got.values().all(|&n| n == 1));
}

/// JSON lines of `count` events, each padded to about 1.6 KB; and where each line starts.
fn padded_events(tag: &str, count: u64) -> (Vec<u8>, Vec<u64>) {
    let (mut data, mut starts) = (Vec::new(), Vec::new());
    for i in 0..count {
        starts.push(data.len() as u64);
        let line = json!({"id": format!("{tag}-{i}"), "type": "Played", "device": format!("device-{}", i % 50),
                          "ts": 1_790_000_000_000u64 + i, "pad": "p".repeat(1500 + (i % 100) as usize)});
        data.extend_from_slice(line.to_string().as_bytes());
        data.push(b'\n');
    }
    (data, starts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncompressed_object_resumes_from_its_byte_checkpoint_without_reading_the_confirmed_part(
) {
    let mut w = World::new("restart", |c| c.latency = Duration::from_millis(200)).await;
    w.vars.insert("S3I_MAX_IN_FLIGHT".into(), "1".into());
    w.vars.insert("S3I_BATCH_EVENTS".into(), "100".into());
    let (data, starts) = padded_events("r", 4000);
    let size = data.len() as u64;
    w.put("in/big.json", &data).await;
    let p = w.pipeline();
    let obj = w.obj("in/big.json");

    // Each invocation has 4 s; 40 requests of 200 ms one at a time need about 8 s.
    let (mut invocations, mut checkpoints) = (0u32, Vec::new());
    let report = loop {
        invocations += 1;
        assert!(invocations <= 30, "not finished after 30 invocations");
        let checkpoint = match w.claim("in/big.json").await {
            Some(ClaimState::InProgress { checkpoint, .. }) => checkpoint,
            None => 0,
            other => panic!("{other:?}"),
        };
        checkpoints.push(checkpoint);
        let outcome = p.import(&obj, soon(4), &format!("inv-{invocations}")).await;
        eprintln!(
            "invocation {invocations} from record {checkpoint}: {}",
            outcome.label()
        );
        match outcome {
            ObjectOutcome::Completed(report) => break *report,
            ObjectOutcome::Paused { checkpoint: c } => assert!(c > checkpoint),
            // No record confirmed in time (a slow, shared machine): tried again.
            ObjectOutcome::Retry(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(invocations >= 2, "the object needed several invocations");
    assert_eq!((report.counts.records, report.counts.sent), (4000, 4000));
    assert_adds_up(&report);
    let got = w.received();
    assert_eq!(got.len(), 4000, "every event arrived");
    assert!(got.values().all(|&n| n == 1), "and only once");

    // An invocation that resumes at record c reads from a restart point at most 1 MiB (and a
    // line) before c's line, never the confirmed part before that. Re-reading from byte 0
    // would read the whole object each time.
    eprintln!(
        "object {size} bytes; bytes read per invocation: {:?}; checkpoints {checkpoints:?}",
        report.bytes_read
    );
    assert_eq!(report.bytes_read.len(), checkpoints.len());
    let line = 1700;
    let mut resumed_late = false;
    for (k, (&read, &c)) in report.bytes_read.iter().zip(&checkpoints).enumerate() {
        let at = starts[c as usize];
        let bound = size - at.saturating_sub((1 << 20) + line);
        assert!(
            read <= bound,
            "invocation {} from record {c} (byte {at}) read {read} bytes, more than the {bound} \
             bytes from its restart point on",
            k + 1
        );
        resumed_late |= at > (2 << 20) + line;
    }
    assert!(
        resumed_late,
        "some invocation resumed past 2 MiB, so the bound says something: {checkpoints:?}"
    );

    // Opening at the very end (nothing left after a restart point) is an empty body, not an
    // error that would fail the object.
    use s3_import::source::{Content, ObjectSource};
    use std::io::Read;
    let opened = p
        .source()
        .open(&w.bucket, "in/big.json", &Content::default(), size)
        .await
        .unwrap();
    let mut rest = Vec::new();
    opened.reader.take(1).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_bucket_in_another_region_is_read_in_its_region() {
    use s3_import::source::{Content, ObjectSource};
    let c = clients().await;
    let eu = unique("s3i-eu");
    c.s3.create_bucket()
        .bucket(&eu)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let us = unique("s3i-us");
    c.s3.create_bucket().bucket(&us).send().await.unwrap();
    for b in [&eu, &us] {
        c.s3.put_object()
            .bucket(b)
            .key("in/a.json")
            .body(events("r", 0..3).into())
            .send()
            .await
            .unwrap();
    }
    // The function runs in us-east-1; the source bucket's region is found and used.
    let source = s3_import::aws::source(&c);
    assert_eq!(source.region_of(&eu).await.as_deref(), Some("eu-west-1"));
    assert_eq!(source.region_of(&us).await.as_deref(), Some("us-east-1"));
    for b in [&eu, &us] {
        let mut opened = source
            .open(b, "in/a.json", &Content::default(), 0)
            .await
            .unwrap();
        let text = tokio::task::block_in_place(|| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut opened.reader, &mut text).unwrap();
            text
        });
        assert_eq!(text.lines().count(), 3, "{b}");
        let page = source.list_page(b, "in/", None, 10).await.unwrap();
        assert_eq!(page.objects.len(), 1, "{b}");
    }
    // A region given by the setting is used as it is, without a lookup.
    let fixed = s3_import::source::s3::S3Source::new(c.s3.clone())
        .with_source_region(Some("ap-southeast-2".into()));
    assert_eq!(
        fixed.region_of(&eu).await.as_deref(),
        Some("ap-southeast-2")
    );
}
