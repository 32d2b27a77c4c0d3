//! The scan on the local AWS stack, as the `s3-import` binary runs it: it queues only what the
//! import takes (the converter's filterPattern included; a stale mark on an excluded key is
//! taken off), and a scan killed with SIGKILL while a SendMessageBatch is in flight strands
//! nothing: a rescan after `S3I_SCAN_PENDING_SECS` queues what it had marked, and every object
//! is imported once. Run with `AWS_ENDPOINT_URL` set to the stack (`make test`).

use crate::common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use s3_import::aws::Clients;
use s3_import::claims::dynamo::DynamoClaims;
use s3_import::claims::{ClaimKey, ClaimState, ClaimStore};
use serde_json::Value;

use common::{events, unique, CLAIMS, DEDUPE};

/// A bucket, a queue, an emulator and the importer's settings for them.
struct World {
    c: Clients,
    bucket: String,
    queue_url: String,
    received: std::path::PathBuf,
    vars: HashMap<String, String>,
}

impl World {
    async fn new(name: &str, converter: &str) -> World {
        let c = common::stack_with_tables().await;
        let bucket = unique(&format!("s-{name}"));
        c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let queue_url = c
            .sqs
            .create_queue()
            .queue_name(unique(&format!("s-{name}")))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        let (endpoint, received) = common::emulator(&format!("s3i-scan-{name}"), |config| {
            config.api_key = Some("test-key".into());
        })
        .await;
        let vars = [
            ("S3I_SOURCE", bucket.clone()),
            (
                "S3I_CONVERTER",
                format!("s3://{bucket}/config/converter.json"),
            ),
            ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
            ("S3I_PREFIX", "in/".to_string()),
            ("S3I_CLAIMS_TABLE", CLAIMS.to_string()),
            ("S3I_DEDUPE_TABLE", DEDUPE.to_string()),
            ("S3I_QUEUE_URL", queue_url.clone()),
            ("AMPLITUDE_API_KEY", "test-key".to_string()),
            ("S3I_ENDPOINT", endpoint),
            ("S3I_STOP_MARGIN_SECS", "1".to_string()),
            ("S3I_MAX_RUN_SECS", "60".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let w = World {
            c,
            bucket,
            queue_url,
            received,
            vars,
        };
        w.put("config/converter.json", converter.as_bytes()).await;
        w
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

    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3-import"));
        cmd.args(args).envs(&self.vars);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    async fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args, extra);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// `scan --enqueue --json`: its summary.
    async fn scan(&self, extra: &[(&str, &str)]) -> Value {
        let out = self
            .run(
                &["scan", "--bucket", &self.bucket, "--enqueue", "--json"],
                extra,
            )
            .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn claims(&self) -> DynamoClaims {
        DynamoClaims::new(self.c.dynamodb.clone(), CLAIMS)
    }

    fn key(&self, key: &str) -> ClaimKey {
        ClaimKey {
            source: self.vars["S3I_SOURCE"].clone(),
            bucket: self.bucket.clone(),
            key: key.into(),
        }
    }

    /// Messages waiting in the queue (none are being received in these tests).
    async fn messages(&self) -> u64 {
        let a = self
            .c
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        a.attributes().unwrap()
            [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]
            .parse()
            .unwrap()
    }

    /// `status --json`: state → how many claims.
    async fn states(&self) -> HashMap<String, usize> {
        let out = self.run(&["status", "--json"], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let mut by_state = HashMap::new();
        for l in text(&out.stdout).lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            *by_state
                .entry(v["state"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        by_state
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const FILTERED: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "auto",
  "convertToAmplitudeFunc": {"insert_id": "id", "event_type": "type", "device_id": "device",
    "time": "ts"}},
  "keyValidatorConfig": {"filterPattern": "in/.*\\.json"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_queues_only_what_the_import_takes_and_clears_stale_marks() {
    let w = World::new("filter", FILTERED).await;
    w.put("in/a.json", &events("a", 0..3)).await;
    w.put("in/b.csv", b"type,device\nOpened,device-1\n").await;
    w.put("in/folder/", b"").await;
    w.put("in/empty.json", b"").await;
    // What Spark leaves beside its output: a partial file, a marker, a checksum side file.
    w.put("in/t/_temporary/0/part-0.json", &events("tmp", 0..3))
        .await;
    w.put("in/t/_SUCCESS", b"-").await;
    w.put("in/t/.part-0.json.crc", b"crc").await;
    // An older scan (which did not apply the converter's filterPattern) marked in/b.csv.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stale = w.key("in/b.csv");
    let claims = w.claims();
    assert_eq!(
        claims
            .mark_queued(std::slice::from_ref(&stale), now + 86_400, now)
            .await
            .unwrap(),
        [true]
    );

    let first = w.scan(&[]).await;
    assert_eq!(
        (
            &first["listed"],
            &first["enqueued"],
            &first["ignored"],
            &first["marks_cleared"]
        ),
        (&7.into(), &1.into(), &6.into(), &1.into()),
        "{first}"
    );
    assert_eq!(
        claims.get(&stale).await.unwrap(),
        None,
        "the stale mark is gone"
    );
    assert_eq!(w.messages().await, 1, "only in/a.json is queued");
    let states = w.states().await;
    assert_eq!(states.get("QUEUED"), Some(&1), "{states:?}");

    // The next scan leaves the queued object alone and queues nothing new.
    let second = w.scan(&[]).await;
    assert_eq!(
        (
            &second["enqueued"],
            &second["in_flight"],
            &second["marks_cleared"]
        ),
        (&0.into(), &1.into(), &0.into()),
        "{second}"
    );
    assert_eq!(w.messages().await, 1);

    // The import agrees: the excluded key is ignored, the queued one completes.
    let out = w
        .run(
            &["worker", "--queue-url", &w.queue_url, "--idle-exit", "2"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(w.states().await, HashMap::from([("COMPLETED".into(), 1)]));
    assert_eq!(common::received(&w.received).len(), 3);

    // A converter that cannot be read: the scan queues nothing and says why.
    w.put("config/converter.json", b"{not json").await;
    w.put("in/c.json", &events("c", 0..3)).await;
    let out = w
        .run(&["scan", "--bucket", &w.bucket, "--enqueue"], &[])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("converter unusable") && err.contains("nothing was queued"),
        "{err}"
    );
    assert_eq!(w.messages().await, 0);
}

/// A loopback proxy to the local stack that lets `pass` SendMessageBatch requests through,
/// then holds every later one without an answer (a send in flight, for ever).
struct Proxy {
    url: String,
    /// SendMessageBatch requests seen.
    batches: Arc<AtomicUsize>,
}

async fn proxy(pass: usize) -> Proxy {
    use axum::body::{to_bytes, Body};
    use axum::extract::Request;
    use axum::response::Response;
    let batches = Arc::new(AtomicUsize::new(0));
    let seen = batches.clone();
    let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let client = reqwest::Client::new();
    let handler = move |req: Request| {
        let (seen, upstream, client) = (seen.clone(), upstream.clone(), client.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = to_bytes(body, usize::MAX).await.unwrap();
            let target = parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let batch = target.ends_with("SendMessageBatch")
                || memchr::memmem::find(&body, b"Action=SendMessageBatch").is_some();
            if batch && seen.fetch_add(1, Ordering::SeqCst) >= pass {
                std::future::pending::<()>().await;
            }
            let url = format!(
                "{upstream}{}",
                parts.uri.path_and_query().map_or("/", |p| p.as_str())
            );
            let mut headers = parts.headers.clone();
            headers.remove("host");
            headers.remove("content-length");
            let answer = client
                .request(parts.method.clone(), url)
                .headers(headers)
                .body(body)
                .send()
                .await
                .unwrap();
            let mut response = Response::builder().status(answer.status());
            for (k, v) in answer.headers() {
                if k != "content-length" && k != "transfer-encoding" {
                    response = response.header(k, v);
                }
            }
            response
                .body(Body::from(answer.bytes().await.unwrap()))
                .unwrap()
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Proxy { url, batches }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_killed_while_a_send_is_in_flight_strands_nothing() {
    const N: usize = 300;
    const PENDING_SECS: u64 = 8;
    let w = World::new("kill", common::CONVERTER).await;
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..N {
        let (s3, bucket) = (w.c.s3.clone(), w.bucket.clone());
        puts.spawn(async move {
            s3.put_object()
                .bucket(bucket)
                .key(format!("in/{i:04}.json"))
                .body(events(&format!("k{i}"), 0..2).into())
                .send()
                .await
                .unwrap();
        });
        if puts.len() >= 16 {
            puts.join_next().await;
        }
    }
    while puts.join_next().await.is_some() {}

    // The first chunk of 100 is sent (10 batches) and 4 batches of the second; the next one
    // is held in flight, and the scan is killed (SIGKILL) while it waits.
    let p = proxy(14).await;
    let pending = PENDING_SECS.to_string();
    let mut scan = w
        .command(
            &["scan", "--bucket", &w.bucket, "--enqueue", "--json"],
            &[
                ("AWS_ENDPOINT_URL", &p.url),
                ("S3I_SCAN_PENDING_SECS", &pending),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while p.batches.load(Ordering::SeqCst) <= 14 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the scan never reached its 15th SendMessageBatch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the other sends of the chunk reach the proxy too, then kill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    scan.kill().unwrap();
    let status = scan.wait().unwrap();
    assert!(!status.success(), "killed: {status:?}");
    let killed_at = std::time::Instant::now();

    // Marked objects without a message: the scan died between its mark and its send.
    let queued = w.states().await.get("QUEUED").copied().unwrap_or(0);
    let messages = w.messages().await as usize;
    assert!(
        queued > messages,
        "the kill should leave marks without messages: {queued} marked, {messages} messages"
    );
    let stranded = queued - messages;

    // A rescan at once queues the objects the dead scan never reached, leaves its fresh marks.
    let now = w.scan(&[("S3I_SCAN_PENDING_SECS", &pending)]).await;
    assert_eq!(now["enqueued"], N - queued, "{now}");
    assert_eq!(now["in_flight"], queued, "{now}");
    // After the dead scan's marks ran out, a rescan queues every object it had left unsent.
    let wait = Duration::from_secs(PENDING_SECS + 1).saturating_sub(killed_at.elapsed());
    tokio::time::sleep(wait).await;
    let later = w.scan(&[("S3I_SCAN_PENDING_SECS", &pending)]).await;
    let requeued = later["enqueued"].as_u64().unwrap() as usize;
    assert!(
        requeued >= stranded && requeued <= 100,
        "{stranded} stranded, {requeued} queued again: {later}"
    );
    assert_eq!(
        w.messages().await as usize,
        N + requeued - stranded,
        "every object has a message; the dead scan's sent ones may have two"
    );
    println!(
        "killed scan: {queued} marked, {messages} sent, {stranded} stranded; \
         rescan after {PENDING_SECS} s queued {requeued}"
    );

    // The worker imports every object once, each event once, duplicates acknowledged.
    let out = w
        .run(
            &["worker", "--queue-url", &w.queue_url, "--idle-exit", "3"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(w.states().await, HashMap::from([("COMPLETED".into(), N)]));
    let got = common::received(&w.received);
    assert_eq!(got.len(), 2 * N);
    assert!(got.values().all(|n| *n == 1), "every event once");
    let left = w
        .claims()
        .get_many(
            &(0..N)
                .map(|i| w.key(&format!("in/{i:04}.json")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert!(left
        .iter()
        .all(|s| matches!(s, Some(ClaimState::Completed { .. }))));
}
