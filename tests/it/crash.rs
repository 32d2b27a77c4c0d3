//! A real crash: a worker process killed with SIGKILL in the middle of an object, its notice
//! redelivered while the dead worker's lease is still live, and a second worker that finishes
//! the object by itself when the lease ends. Measures how much the crash re-sent. Needs the
//! local AWS stack (`make test` starts it).

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{emulator, events, gzip, stats, unique, CONVERTER};
use s3_import::aws::Clients;
use s3_import::claims::dynamo::DynamoClaims;
use s3_import::claims::{ClaimKey, ClaimState, ClaimStore};
use serde_json::json;

use common::{CLAIMS, DEDUPE};
const EVENTS: u64 = 10_000;

/// Starts `s3-import worker` on `queue` with `vars` as its settings.
fn worker(vars: &[(String, String)], queue: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_s3-import"))
        .args(["worker", "--queue-url", queue, "--retry-after", "1"])
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the s3-import binary runs")
}

async fn claim(c: &Clients, key: &ClaimKey) -> Option<ClaimState> {
    DynamoClaims::new(c.dynamodb.clone(), CLAIMS)
        .get(key)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_object_is_taken_over_when_its_lease_ends() {
    let c = common::stack_with_tables().await;
    let bucket = unique("t-crash");
    c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    // A queue whose copy of a message comes back 3 s after a receive: long before the
    // dead worker's lease ends.
    let queue = c
        .sqs
        .create_queue()
        .queue_name(unique("crash"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "3",
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let (endpoint, received) = emulator("s3i-crash", |e| {
        e.api_key = Some("test-key".into());
        e.latency = Duration::from_millis(100);
    })
    .await;
    let put = |key: &str, body: Vec<u8>| {
        c.s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.into())
            .send()
    };
    put("config/converter.json", CONVERTER.as_bytes().to_vec())
        .await
        .unwrap();
    put("in/big.json.gz", gzip(&events("k", 0..EVENTS)))
        .await
        .unwrap();
    let source = unique("crash");
    let mut vars: Vec<(String, String)> = [
        ("S3I_SOURCE", source.clone()),
        (
            "S3I_CONVERTER",
            format!("s3://{bucket}/config/converter.json"),
        ),
        ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
        ("S3I_PREFIX", "in/".into()),
        ("S3I_CLAIMS_TABLE", CLAIMS.into()),
        ("S3I_DEDUPE_TABLE", DEDUPE.into()),
        ("AMPLITUDE_API_KEY", "test-key".into()),
        ("S3I_ENDPOINT", endpoint.clone()),
        ("S3I_QUEUE_URL", queue.clone()),
        ("S3I_STOP_MARGIN_SECS", "1".into()),
        ("S3I_MAX_RUN_SECS", "20".into()),
        ("S3I_LEASE_MARGIN_SECS", "2".into()),
        ("S3I_CHECKPOINT_SECS", "1".into()),
        ("S3I_MAX_IN_FLIGHT", "1".into()),
        ("S3I_BATCH_EVENTS", "100".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
    ] {
        if let Ok(v) = std::env::var(k) {
            vars.push((k.into(), v));
        }
    }
    let body = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket},
        "object": {"key": "in/big.json.gz", "size": 1}}}]});
    c.sqs
        .send_message()
        .queue_url(&queue)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();
    let key = ClaimKey {
        source,
        bucket: bucket.clone(),
        key: "in/big.json.gz".into(),
    };

    // The first worker imports until a few checkpoints are written, then dies.
    let mut first = worker(&vars, &queue);
    let started = std::time::Instant::now();
    let checkpoint = loop {
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint");
        if let Some(ClaimState::InProgress { checkpoint, .. }) = claim(&c, &key).await {
            if checkpoint >= 2_000 {
                break checkpoint;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let sent_before = common::received(&received).len();
    assert!((sent_before as u64) < EVENTS, "killed mid-object");

    // The second worker meets the live lease, hands the notice back until it ends, then takes
    // the object over from its checkpoint: no scan, no retry by hand.
    let mut second = worker(&vars, &queue);
    let started = std::time::Instant::now();
    let outcome = loop {
        if started.elapsed() > Duration::from_secs(120) {
            break None;
        }
        if let Some(state @ ClaimState::Completed { .. }) = claim(&c, &key).await {
            break Some(state);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(
        outcome.is_some(),
        "the object was not completed after the crash"
    );

    let got = common::received(&received);
    assert_eq!(got.len() as u64, EVENTS, "every event arrived");
    assert!(got.values().all(|&n| n == 1), "none kept twice");
    let resent = stats(&endpoint).await["duplicates"].as_u64().unwrap();
    eprintln!(
        "kill -9 after checkpoint {checkpoint} ({sent_before} events sent): {resent} events \
         re-sent after the takeover (absorbed by the endpoint's insert_id dedupe)"
    );
    assert!(
        (resent as usize) <= sent_before - checkpoint as usize + 500,
        "re-sent {resent}: more than what followed the last checkpoint"
    );
}
