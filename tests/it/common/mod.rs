//! Helpers the integration tests share: the endpoint emulator on loopback, unique names, the
//! event generator with its converter, gzip, and what the emulator received.
// Each test crate uses only some of these.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use s3_import::emulator::{serve, EmulatorConfig};
use serde_json::{json, Value};
use tokio::time::Instant;

/// The converter the tests' events (see [`events`]) are read with: heartbeats are skipped.
pub const CONVERTER: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "auto",
  "convertToAmplitudeFunc": {"insert_id": "id", "event_type": "type", "device_id": "device",
    "user_id": "user", "time": "ts", "$skip": ["equals", "type", ["value", "Heartbeat"]]},
  "ignoreEventFlag": "$skip"}}"#;

/// `name`, made unique to this process and moment.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{}-{nanos:x}", std::process::id())
}

/// Starts an emulator on a free loopback port, writing into a new folder named after `name`;
/// its base URL and that folder.
pub async fn emulator(name: &str, tweak: impl FnOnce(&mut EmulatorConfig)) -> (String, PathBuf) {
    let dir = std::env::temp_dir().join(unique(name));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = EmulatorConfig::new(dir.clone());
    tweak(&mut config);
    let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    tokio::spawn(async move {
        let _ = serve("127.0.0.1:0".parse().unwrap(), config, move |a| {
            let _ = tx.send(a);
        })
        .await;
    });
    (format!("http://{}", rx.await.unwrap()), dir)
}

/// The emulator's counts (`GET /stats`).
pub async fn stats(base: &str) -> Value {
    let text = reqwest::get(format!("{base}/stats"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The JSON lines of one of the emulator's files (`events.jsonl`, `mutations.jsonl`, …);
/// none when it has not written it.
pub fn lines(dir: &Path, file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// insert_id → how many times the emulator accepted the event.
pub fn received(dir: &Path) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for v in lines(dir, "events.jsonl") {
        *seen
            .entry(v["insert_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    seen
}

/// JSON lines of events `ids` (insert_id `<tag>-<i>`), spread over 50 devices.
pub fn events(tag: &str, ids: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = String::new();
    for i in ids {
        out.push_str(
            &json!({"id": format!("{tag}-{i}"), "type": "Played", "device": format!("device-{}", i % 50),
                    "ts": 1_790_000_000_000u64 + i})
            .to_string(),
        );
        out.push('\n');
    }
    out.into_bytes()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn soon(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// The claims and dedupe tables the local-stack tests share.
pub const CLAIMS: &str = "s3i-test-claims";
pub const DEDUPE: &str = "s3i-test-dedupe";

/// The local stack's clients (test credentials unless set); fails with directions when no
/// stack is configured.
pub async fn stack_clients() -> s3_import::aws::Clients {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        panic!(
            "these tests need the local AWS stack: run `make test` (it starts LocalStack), or \
             `make stack-up` and set AWS_ENDPOINT_URL=http://127.0.0.1:4566"
        );
    }
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    s3_import::aws::Clients::from_env().await
}

/// [`stack_clients`], with the shared claims and dedupe tables created if missing.
pub async fn stack_with_tables() -> s3_import::aws::Clients {
    let c = stack_clients().await;
    s3_import::aws::ensure_table(&c.dynamodb, CLAIMS, None)
        .await
        .unwrap();
    s3_import::aws::ensure_table(&c.dynamodb, DEDUPE, Some("expires_at"))
        .await
        .unwrap();
    c
}

/// A batch received from SQS, shaped as Lambda's SQS event delivers it (what the function is
/// invoked with), and its (message id, receipt handle) pairs for `settle`.
#[allow(dead_code)]
pub struct LambdaBatch {
    pub event: Value,
    pub handles: Vec<(String, String)>,
}

/// Receives up to 10 messages from `url` as Lambda's SQS trigger would hand them over.
#[allow(dead_code)]
pub async fn receive_as_lambda(
    client: &aws_sdk_sqs::Client,
    url: &str,
    wait_secs: i32,
) -> LambdaBatch {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_secs)
        .send()
        .await
        .expect("receive from the local stack");
    let mut records = Vec::new();
    let mut handles = Vec::new();
    for m in out.messages() {
        let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
            continue;
        };
        records.push(serde_json::json!({
            "messageId": id, "receiptHandle": handle, "body": m.body().unwrap_or(""),
            "attributes": {"ApproximateReceiveCount": "1"},
            "eventSource": "aws:sqs", "eventSourceARN": url,
        }));
        handles.push((id.to_string(), handle.to_string()));
    }
    LambdaBatch {
        event: serde_json::json!({ "Records": records }),
        handles,
    }
}
