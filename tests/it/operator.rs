//! The operator's side on the local AWS stack: the built `s3-import` binary run as a user runs
//! it, against LocalStack (S3, SQS, DynamoDB) and the endpoint emulator: a converter broken
//! then fixed, `check`, `retry --failed`, `preview` from the bucket, `--json` and exit codes.
//! `make test` starts the stack; run alone, set `AWS_ENDPOINT_URL` to a running stack.

use crate::common;

use std::collections::HashMap;
use std::process::{Command, Output};

use s3_import::aws::{ensure_table, Clients};
use serde_json::{json, Value};

use common::{events, gzip, unique, CONVERTER};

use common::{CLAIMS, DEDUPE};
const BAD_CONVERTER: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "none", "convertToAmplitudeFunc": {"event_type": ["nosuchop", "x"]}}}"#;

/// One test's world: a bucket notifying a queue (with a DLQ), the tables, an emulator, and
/// the environment the importer would run with.
struct World {
    c: Clients,
    bucket: String,
    queue_url: String,
    received: std::path::PathBuf,
    vars: HashMap<String, String>,
}

impl World {
    async fn new(name: &str) -> World {
        let c = common::stack_clients().await;
        let bucket = unique(&format!("o-{name}"));
        let queue = unique(&format!("o-{name}"));
        let queue_url = s3_import::aws::setup(
            &c,
            CLAIMS,
            Some(DEDUPE),
            &bucket,
            &queue,
            "in/",
            s3_import::aws::Announce::Queue,
        )
        .await
        .unwrap();
        let (endpoint, received) = common::emulator(&format!("s3i-operator-{name}"), |config| {
            config.api_key = Some("test-key".into());
        })
        .await;
        let vars = [
            ("S3I_SOURCE", format!("{bucket}/in/")),
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
        w.put("config/converter.json", CONVERTER.as_bytes()).await;
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

    /// Runs the binary with the world's settings (and `extra` variables over them).
    async fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3-import"));
        cmd.args(args).envs(&self.vars);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// `status --json`: key → state.
    async fn states(&self) -> HashMap<String, String> {
        let out = self.run(&["status", "--json"], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["key"].as_str().unwrap().to_string(),
                    v["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converter_broken_then_fixed_leaves_no_failed_object_and_imports_every_file_once() {
    let w = World::new("broken").await;
    w.put("config/converter.json", BAD_CONVERTER.as_bytes())
        .await;
    for f in ["a", "b", "c"] {
        w.put(&format!("in/{f}.json"), &events(f, 0..20)).await;
    }
    // The bad day: imports wait (exit 1, "to be retried"), nothing is claimed or FAILED.
    let out = w.run(&["import", "--json", &w.url("in/a.json")], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v = &json_lines(&out)[0];
    assert_eq!(v["outcome"], "retry", "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("converter unusable")
            && v["detail"].as_str().unwrap().contains("nosuchop"),
        "{v}"
    );
    // `check` names the problem with the load errors.
    let out = w.run(&["check", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let report = &json_lines(&out)[0];
    let converter = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "converter")
        .unwrap();
    assert_eq!(converter["ok"], false);
    assert!(
        converter["detail"].as_str().unwrap().contains("nosuchop"),
        "{converter}"
    );
    assert!(
        w.states().await.is_empty(),
        "nothing claimed, nothing FAILED"
    );

    // Fixed: the notices still in the queue import every file, once.
    w.put("config/converter.json", CONVERTER.as_bytes()).await;
    let out = w
        .run(
            &[
                "worker",
                "--queue-url",
                &w.queue_url,
                "--idle-exit",
                "3",
                "--retry-after",
                "1",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let states = w.states().await;
    assert_eq!(states.len(), 3, "{states:?}");
    assert!(states.values().all(|s| s == "COMPLETED"), "{states:?}");
    let received = common::received(&w.received);
    assert_eq!(received.len(), 60);
    assert!(received.values().all(|n| *n == 1), "each event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_retries_every_failed_object_under_the_prefix_with_a_summary() {
    let w = World::new("retry").await;
    let mut cut = gzip(&events("cut", 0..5000));
    cut.truncate(cut.len() / 2);
    for key in ["in/a/1.json.gz", "in/a/2.json.gz", "in/b/1.json.gz"] {
        w.put(key, &cut).await;
        let out = w.run(&["import", &w.url(key)], &[]).await;
        assert_eq!(out.status.code(), Some(1), "a FAILED import exits 1");
        assert!(text(&out.stdout).contains("failed: unreadable object"));
    }
    // The files are fixed (written again whole); only those under in/a/ are retried.
    for (i, key) in ["in/a/1.json.gz", "in/a/2.json.gz", "in/b/1.json.gz"]
        .iter()
        .enumerate()
    {
        w.put(key, &gzip(&events(&format!("f{i}"), 0..10))).await;
    }
    let out = w
        .run(&["retry", "--failed", "--prefix", "in/a/", "--json"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["key"], "in/a/1.json.gz");
    assert_eq!(lines[1]["key"], "in/a/2.json.gz");
    for l in &lines[..2] {
        assert_eq!(l["outcome"], "completed", "{l}");
        assert_eq!(l["report"]["counts"]["sent"], 10);
    }
    assert_eq!(
        lines[2],
        json!({"summary": {"failed_found": 2, "completed": 2, "failed_again": 0, "other": 0}})
    );
    let states = w.states().await;
    assert_eq!(states["in/b/1.json.gz"], "FAILED");
    assert_eq!(states["in/a/1.json.gz"], "COMPLETED");

    // Every other FAILED object, with the summary for a person.
    let out = w.run(&["retry", "--failed"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("in/b/1.json.gz: completed"), "{stdout}");
    assert!(
        stdout.ends_with("retried 1 FAILED objects: completed 1, failed again 0, other 0\n"),
        "{stdout}"
    );
    // Nothing left: a summary of nothing, exit 0. A completed object is not retried: exit 2.
    let out = w.run(&["retry", "--failed"], &[]).await;
    assert_eq!(out.status.code(), Some(0));
    let out = w.run(&["retry", &w.url("in/a/1.json.gz")], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("imported already"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_good_setup_and_names_each_problem_with_its_fix() {
    let w = World::new("check").await;
    w.put("in/x.json", &events("x", 0..3)).await;
    let out = w.run(&["check"], &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for name in [
        "source",
        "converter",
        "reports",
        "claims-table",
        "dedupe-table",
        "queue",
        "endpoint",
        "endpoint-identify",
        "endpoint-groupidentify",
    ] {
        assert!(
            stdout.contains(&format!("ok    {name}: ")),
            "{name}: {stdout}"
        );
    }
    assert!(
        stdout.contains("s3://") && stdout.contains("in/x.json readable"),
        "{stdout}"
    );
    assert!(stdout.contains("TTL on expires_at"), "{stdout}");
    // The emulator answers a request with no events as Amplitude does (400, missing events).
    assert!(
        stdout.contains("accepts the API key (a request with no events, nothing ingested)"),
        "{stdout}"
    );
    // Every route an event converter can use is probed; what the answers prove is said.
    assert!(
        stdout.contains("/identify answers 400 to an empty request: the route exists (this answer does not prove the API key"),
        "{stdout}"
    );
    assert!(stdout.ends_with("all 9 checks passed\n"), "{stdout}");
    assert!(
        common::received(&w.received).is_empty(),
        "the key test ingests nothing"
    );

    // A wrong API key, a filterPattern that matches no key, a dedupe table without TTL and
    // a queue without DLQ: each named, with its fix, and exit 1.
    let no_ttl = unique("s3i-no-ttl");
    ensure_table(&w.c.dynamodb, &no_ttl, None).await.unwrap();
    let plain =
        w.c.sqs
            .create_queue()
            .queue_name(unique("o-plain"))
            .send()
            .await
            .unwrap();
    let plain_url = plain.queue_url().unwrap().to_string();
    w.put(
        "config/converter.json",
        br#"{"converterConfig": {"fileType": "json", "compressionType": "none",
             "convertToAmplitudeFunc": {"event_type": "type"}},
             "keyValidatorConfig": {"filterPattern": "in/.*\\.csv"}}"#,
    )
    .await;
    let out = w
        .run(
            &["check", "--json"],
            &[
                ("AMPLITUDE_API_KEY", "wrong-key"),
                ("S3I_DEDUPE_TABLE", &no_ttl),
                ("S3I_QUEUE_URL", &plain_url),
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    let v = &json_lines(&out)[0];
    assert_eq!(v["ok"], false);
    let failed: HashMap<String, Value> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| (c["check"].as_str().unwrap().to_string(), c.clone()))
        .collect();
    let mut names: Vec<&String> = failed.keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "converter",
            "dedupe-table",
            "endpoint",
            "endpoint-groupidentify",
            "endpoint-identify",
            "queue"
        ],
        "{v}"
    );
    assert!(failed["endpoint"]["detail"]
        .as_str()
        .unwrap()
        .contains("refuses the API key"));
    assert!(failed["converter"]["detail"]
        .as_str()
        .unwrap()
        .contains("matches none"));
    assert!(failed["queue"]["fix"]
        .as_str()
        .unwrap()
        .contains("redrive policy"));
    assert!(failed["dedupe-table"]["fix"]
        .as_str()
        .unwrap()
        .contains("expires_at"));

    // Settings that do not load are bad input: exit 2.
    let out = w.run(&["check"], &[("S3I_CONVERTER", "nowhere")]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_reads_the_first_records_of_an_object_or_a_prefix_from_the_bucket() {
    let w = World::new("preview").await;
    // A large object: the preview reads its first records and stops.
    w.put("in/big.json.gz", &gzip(&events("big", 0..200_000)))
        .await;
    w.put(
        "config/csv.json",
        br#"{"converterConfig": {"fileType": "csv", "compressionType": "none",
             "convertToAmplitudeFunc": {"event_type": "type", "device_id": "device"}}}"#,
    )
    .await;
    w.put(
        "csv/data/a.csv",
        b"type,device\nOpened,device-1\nClosed,device-2\n",
    )
    .await;
    let config = w.url("config/converter.json");
    let started = std::time::Instant::now();
    let out = w
        .run(
            &[
                "preview",
                "--config",
                &config,
                "--limit",
                "3",
                "--json",
                &w.url("in/big.json.gz"),
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let items: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[2]["payloads"][0]["insert_id"], "big-2");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    // A prefix: its first object; a CSV converter from the bucket too.
    let out = w
        .run(
            &[
                "preview",
                "--config",
                &w.url("config/csv.json"),
                "--json",
                &w.url("csv/"),
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let items: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items[1]["payloads"][0]["event_type"], "Closed", "{items}");
    assert!(text(&out.stderr).contains("csv/data/a.csv"));

    // Nothing there: bad input, exit 2.
    let out = w
        .run(&["preview", "--config", &config, &w.url("nothing/")], &[])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_scan_print_json_for_scripts_and_exit_by_outcome() {
    let w = World::new("json").await;
    w.put("in/one.json", &events("one", 0..7)).await;
    w.put("in/two.json", &events("two", 0..4)).await;
    let out = w
        .run(&["import", "--json", &w.url("in/one.json")], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = &json_lines(&out)[0];
    assert_eq!(
        (&v["outcome"], &v["report"]["counts"]["sent"]),
        (&json!("completed"), &json!(7))
    );
    assert!(
        text(&out.stderr).is_empty(),
        "no progress line when stderr is not a terminal"
    );
    let out = w.run(&["scan", "--bucket", &w.bucket, "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = &json_lines(&out);
    assert_eq!(v.len(), 1, "only the summary: {v:?}");
    assert_eq!(
        (&v[0]["imported"], &v[0]["completed_before"]),
        (&json!(1), &json!(1))
    );
    // A bad URL is bad input; an object that does not import is a run-time failure.
    let out = w.run(&["import", "in/one.json"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let mut cut = gzip(&events("cut", 0..5000));
    cut.truncate(cut.len() / 2);
    w.put("in/cut.json.gz", &cut).await;
    let out = w.run(&["import", &w.url("in/cut.json.gz")], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    // Storage that cannot be reached is a run-time failure too.
    let out = w
        .run(
            &["status"],
            &[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                ("AWS_MAX_ATTEMPTS", "1"),
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_object_is_not_imported_again_after_the_prefix_changes() {
    let w = World::new("prefix").await;
    // The template's default source id: the bucket's name, whatever the prefix.
    let source = w.bucket.clone();
    w.put("in/a/1.json", &events("p1", 0..5)).await;
    w.put("in/b/2.json", &events("p2", 0..5)).await;
    let wide = [("S3I_SOURCE", source.as_str()), ("S3I_PREFIX", "in/")];
    let out = w
        .run(&["scan", "--bucket", &w.bucket, "--json"], &wide)
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["imported"], 2);

    // The prefix narrows to in/a/ (a redeploy with another SourcePrefix): the completed
    // object is found completed, nothing is sent again.
    w.put("in/a/3.json", &events("p3", 0..5)).await;
    let narrow = [("S3I_SOURCE", source.as_str()), ("S3I_PREFIX", "in/a/")];
    let out = w
        .run(&["scan", "--bucket", &w.bucket, "--json"], &narrow)
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = &json_lines(&out)[0];
    assert_eq!(
        (&v["listed"], &v["completed_before"], &v["imported"]),
        (&json!(2), &json!(1), &json!(1)),
        "{v}"
    );
    let out = w
        .run(&["import", "--json", &w.url("in/a/1.json")], &narrow)
        .await;
    assert_eq!(json_lines(&out)[0]["outcome"], "already_completed");
    let received = common::received(&w.received);
    assert_eq!(received.len(), 15);
    assert!(received.values().all(|n| *n == 1), "each event once");

    // An earlier stack's source id (`<bucket>/<prefix>`), changed by an update that forgot
    // SourceId: `check` names the id to keep before anything is imported again.
    let old = format!("{}/in/a/", w.bucket);
    let out = w
        .run(
            &["import", &w.url("in/a/1.json")],
            &[("S3I_SOURCE", old.as_str()), ("S3I_PREFIX", "in/a/")],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = w
        .run(
            &["check", "--json", "--bucket", &w.bucket],
            &[("S3I_SOURCE", "a-new-id"), ("S3I_PREFIX", "in/a/")],
        )
        .await;
    let v = &json_lines(&out)[0];
    let claims = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "claims-table")
        .unwrap();
    assert_eq!(claims["ok"], false, "{v}");
    assert!(
        claims["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("SourceId={old}")),
        "{claims}"
    );
}

/// The queue policy and the bucket's notification configuration, read back as JSON-ish text.
async fn wiring(c: &Clients, bucket: &str, queue_url: &str) -> (Value, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let a = c
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::Policy)
        .send()
        .await
        .unwrap();
    let policy = a
        .attributes()
        .and_then(|m| m.get(&QueueAttributeName::Policy))
        .map(|p| serde_json::from_str(p).unwrap())
        .unwrap_or(Value::Null);
    let n =
        c.s3.get_bucket_notification_configuration()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
    let parts = (
        n.queue_configurations(),
        n.topic_configurations(),
        n.lambda_function_configurations(),
        n.event_bridge_configuration(),
    );
    (policy, format!("{parts:?}"))
}

/// A queue of someone else's, notified by `bucket` for keys under `prefix`.
async fn foreign_notification(c: &Clients, bucket: &str, prefix: &str) -> String {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    use aws_sdk_sqs::types::QueueAttributeName;
    let url = c
        .sqs
        .create_queue()
        .queue_name(unique("o-theirs"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let arn = c
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(prefix)
                        .build(),
                )
                .build(),
        )
        .build();
    let theirs = QueueConfiguration::builder()
        .id("theirs")
        .queue_arn(&arn)
        .events(Event::S3ObjectCreatedPut)
        .filter(filter)
        .build()
        .unwrap();
    c.s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(theirs)
                .build(),
        )
        .send()
        .await
        .unwrap();
    arn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_merges_the_notification_scopes_the_queue_policy_and_changes_nothing_twice() {
    let c = common::stack_clients().await;
    let setup = |bucket: String, queue: String, extra: Vec<String>| async move {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3-import"));
        cmd.args([
            "setup", "--bucket", &bucket, "--queue", &queue, "--prefix", "in/",
        ])
        .args(extra)
        .env("S3I_CLAIMS_TABLE", CLAIMS)
        .env("S3I_DEDUPE_TABLE", DEDUPE);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    };
    // A bucket that already notifies someone else's queue of other keys.
    let bucket = unique("o-setup");
    c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let theirs = foreign_notification(&c, &bucket, "logs/").await;
    let queue = unique("o-setup");
    let out = setup(bucket.clone(), queue.clone(), vec![]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let url = text(&out.stdout).trim().to_string();
    let (policy, notification) = wiring(&c, &bucket, &url).await;
    let ours = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Principal"]["Service"] == "s3.amazonaws.com")
        .unwrap_or_else(|| panic!("no statement for S3: {policy}"));
    assert_eq!(ours["Action"], "sqs:SendMessage");
    assert_eq!(
        ours["Condition"]["ArnLike"]["aws:SourceArn"],
        format!("arn:aws:s3:::{bucket}")
    );
    assert_eq!(
        ours["Condition"]["StringEquals"]["aws:SourceAccount"],
        "000000000000"
    );
    assert!(ours["Resource"].as_str().unwrap().ends_with(&queue));
    assert!(
        notification.contains(&theirs) && notification.contains("logs/"),
        "their configuration kept: {notification}"
    );
    assert!(
        notification.contains(&format!("s3-import-{queue}")) && notification.contains("\"in/\""),
        "ours added: {notification}"
    );
    // The bucket still notifies our queue (after the test event S3 sends on a change).
    w_put(&c, &bucket, "in/x.json").await;
    let mut seen = String::new();
    for _ in 0..5 {
        let got = common::receive_as_lambda(&c.sqs, &url, 2).await;
        seen.push_str(&got.event.to_string());
        if seen.contains("in/x.json") {
            break;
        }
    }
    assert!(seen.contains("in/x.json"), "{seen}");

    // Twice: nothing changes (not even rewritten: S3 would send a test event again).
    let out = setup(bucket.clone(), queue.clone(), vec![]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        wiring(&c, &bucket, &url).await,
        (policy.clone(), notification.clone())
    );
    let after = common::receive_as_lambda(&c.sqs, &url, 2).await;
    assert!(
        !after.event.to_string().contains("s3:TestEvent"),
        "the configuration was written again: {}",
        after.event
    );

    // A configuration of someone else's for the same events and overlapping keys: refused,
    // named, nothing changed.
    let clashing = unique("o-clash");
    c.s3.create_bucket().bucket(&clashing).send().await.unwrap();
    let theirs = foreign_notification(&c, &clashing, "in/a/").await;
    let before = wiring(&c, &clashing, &url).await.1;
    let out = setup(clashing.clone(), unique("o-clash"), vec![]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("configuration `theirs` sends s3:ObjectCreated:Put under prefix `in/a/`")
            && err.contains(&theirs)
            && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(wiring(&c, &clashing, &url).await.1, before);

    // EventBridge instead: the queue admits the rule, the bucket's EventBridge delivery is on,
    // its queue notification is taken off, theirs kept; twice changes nothing.
    let rule = "arn:aws:events:us-east-1:000000000000:rule/s3-import-created";
    let eb = vec!["--eventbridge-rule-arn".to_string(), rule.to_string()];
    let out = setup(bucket.clone(), queue.clone(), eb.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (policy, notification) = wiring(&c, &bucket, &url).await;
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{policy}");
    assert_eq!(
        statements[0]["Principal"]["Service"],
        "events.amazonaws.com"
    );
    assert_eq!(
        statements[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        rule
    );
    assert!(
        notification.contains("EventBridgeConfiguration"),
        "{notification}"
    );
    assert!(
        !notification.contains(&format!("s3-import-{queue}")),
        "{notification}"
    );
    assert!(notification.contains("logs/"), "{notification}");
    let out = setup(bucket.clone(), queue.clone(), eb).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(wiring(&c, &bucket, &url).await, (policy, notification));
    // Not a rule's ARN: bad input.
    let out = setup(
        bucket,
        queue,
        vec!["--eventbridge-rule-arn".into(), "rule/x".into()],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not an EventBridge rule ARN"));
}

async fn w_put(c: &Clients, bucket: &str, key: &str) {
    c.s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(events("n", 0..1).into())
        .send()
        .await
        .unwrap();
}
