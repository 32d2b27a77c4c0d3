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

/// A worker process, killed (SIGKILL) when dropped: a failing test leaves none behind polling
/// the queue.
struct Worker(Child);

impl std::ops::Deref for Worker {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `s3-import worker` on `queue` with `vars` as its settings.
fn worker(vars: &[(String, String)], queue: &str) -> Worker {
    Worker(
        Command::new(env!("CARGO_BIN_EXE_s3-import"))
            .args(["worker", "--queue-url", queue, "--retry-after", "1"])
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the s3-import binary runs"),
    )
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

/// An object of `members` imported by workers killed (SIGKILL) three times mid-object, each
/// next worker taking it over when the dead one's lease ends; the bytes each invocation that
/// ended its run read (the report's `bytes_read`), and the object's size.
async fn killed_three_times(name: &str, object: Vec<u8>, events_in: u64) -> (Vec<u64>, u64) {
    let c = common::stack_with_tables().await;
    let bucket = unique(name);
    c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let queue = c
        .sqs
        .create_queue()
        .queue_name(unique(name))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "2",
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let (endpoint, received) = emulator(name, |e| {
        e.api_key = Some("test-key".into());
        e.latency = Duration::from_millis(40);
    })
    .await;
    let size = object.len() as u64;
    for (key, body) in [
        ("config/converter.json", CONVERTER.as_bytes().to_vec()),
        ("in/big.json.gz", object),
    ] {
        c.s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    let source = unique(name);
    let mut vars: Vec<(String, String)> = [
        ("S3I_SOURCE", source.clone()),
        (
            "S3I_CONVERTER",
            format!("s3://{bucket}/config/converter.json"),
        ),
        ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
        ("S3I_PREFIX", "in/".into()),
        ("S3I_CLAIMS_TABLE", CLAIMS.into()),
        // What is read on resume is the point, not the dedupe: off, so that the local
        // DynamoDB (about 1,500 events a second, fewer beside the whole suite) does not pace
        // the 100,000 events.
        ("S3I_DEDUPE_TABLE", "off".into()),
        ("AMPLITUDE_API_KEY", "test-key".into()),
        ("S3I_ENDPOINT", endpoint.clone()),
        ("S3I_QUEUE_URL", queue.clone()),
        ("S3I_STOP_MARGIN_SECS", "1".into()),
        ("S3I_MAX_RUN_SECS", "8".into()),
        ("S3I_LEASE_MARGIN_SECS", "1".into()),
        ("S3I_CHECKPOINT_SECS", "1".into()),
        ("S3I_MAX_IN_FLIGHT", "1".into()),
        ("S3I_BATCH_EVENTS", "500".into()),
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
        "object": {"key": "in/big.json.gz", "size": size}}}]});
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
    // Three workers die past a checkpoint a quarter further each; a fourth finishes.
    for k in 1..=3u64 {
        let mut w = worker(&vars, &queue);
        let started = std::time::Instant::now();
        loop {
            assert!(started.elapsed() < Duration::from_secs(90), "no checkpoint");
            if let Some(ClaimState::InProgress { checkpoint, .. }) = claim(&c, &key).await {
                if checkpoint >= k * events_in / 4 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        w.kill().unwrap(); // SIGKILL
        w.wait().unwrap();
    }
    let mut last = worker(&vars, &queue);
    let started = std::time::Instant::now();
    let done = loop {
        // Generous: the last worker goes on over many 8-second invocations, and a loaded
        // machine (the whole suite runs beside it) makes each slower.
        if started.elapsed() > Duration::from_secs(240) {
            break false;
        }
        if let Some(ClaimState::Completed { .. }) = claim(&c, &key).await {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    last.kill().unwrap();
    last.wait().unwrap();
    assert!(done, "the object was not completed after three kills");
    let got = common::received(&received);
    assert_eq!(got.len() as u64, events_in, "every event arrived");
    let report =
        c.s3.get_object()
            .bucket(&bucket)
            .key(format!("reports/{bucket}/in/big.json.gz.report.json"))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    let read = report["bytes_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    (read, size)
}

/// 100,000 events in members (gzip) or frames (zstd) of 5,000, about 1.4 MB stored.
fn in_parts(pack: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    (0..20u64)
        .flat_map(|p| pack(&events("k", p * 5000..(p + 1) * 5000)))
        .collect()
}

/// Resumes of an object of gzip members or zstd frames read from the member or frame holding
/// their checkpoint on (each has its own checksum, checked as it is read), not from byte 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_kill_9_read_only_what_is_not_confirmed() {
    let zstd = |data: &[u8]| {
        use std::io::Write;
        let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        e.include_checksum(true).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    for (name, object) in [
        ("t-kill-gz", in_parts(gzip)),
        ("t-kill-zst", in_parts(zstd)),
    ] {
        let (read, size) = killed_three_times(name, object, 100_000).await;
        eprintln!(
            "{name}: {size} bytes stored; bytes read per invocation that ended its run: {read:?}"
        );
        // The killed invocations never ended their runs; the last one resumed past three
        // quarters of the records, so it read at most the last quarter and a restart step.
        let last = *read.last().expect("the last invocation's bytes");
        assert!(
            last < size / 2,
            "{name}: the resumed invocation read {last} of {size} bytes"
        );
    }
}
