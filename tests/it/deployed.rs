//! The AWS services the template uses beyond S3, SQS and DynamoDB, on the local stack: the API
//! key from Secrets Manager, the source read through an assumed role (STS, with an external
//! ID), `check --role-arn`, and the EventBridge mode end to end (object created → the
//! template's rule → the queue → the importer).

use crate::common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::types::{EventBridgeConfiguration, NotificationConfiguration};
use s3_import::aws::{api_key_from_secret, assumed_role_config, s3_client, Clients, SecretError};
use serde_json::json;

use common::{events, unique, CLAIMS, CONVERTER, DEDUPE};

async fn secret(c: &Clients, name: &str, value: &str) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(&c.config);
    let out = sm
        .create_secret()
        .name(unique(name))
        .secret_string(value)
        .send()
        .await
        .unwrap();
    out.arn().unwrap().to_string()
}

async fn put(c: &Clients, bucket: &str, key: &str, body: &[u8]) {
    c.s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_api_key_is_read_from_the_secret_as_a_string_or_its_json_api_key() {
    let c = common::stack_clients().await;
    // Given a secret holding the key as text (with a stray newline), one holding JSON, and
    // one holding JSON without the field
    let plain = secret(&c, "s3i-key-plain", "key-from-text\n").await;
    let doc = secret(&c, "s3i-key-json", r#"{"api_key": "key-from-json"}"#).await;
    let wrong = secret(&c, "s3i-key-wrong", r#"{"key": "x"}"#).await;

    // Then each reads as the importer reads it at start
    assert_eq!(
        api_key_from_secret(&c.config, &plain).await.unwrap(),
        "key-from-text"
    );
    assert_eq!(
        api_key_from_secret(&c.config, &doc).await.unwrap(),
        "key-from-json"
    );
    let e = api_key_from_secret(&c.config, &wrong).await.unwrap_err();
    assert!(matches!(&e, SecretError::NoApiKey(s) if *s == wrong), "{e}");
    let missing = api_key_from_secret(&c.config, "s3i-no-such-secret")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.starts_with("S3I_API_KEY_SECRET (s3i-no-such-secret)")
            && missing.contains("ResourceNotFound"),
        "{missing}"
    );
}

#[tokio::test]
async fn the_source_is_read_with_the_credentials_of_the_assumed_role() {
    let c = common::stack_clients().await;
    let bucket = unique("s3i-role-source");
    c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    put(&c, &bucket, "events/a.json", b"{}\n").await;

    // When the role of S3I_SOURCE_ROLE_ARN is assumed with the external ID
    let role = format!("arn:aws:iam::000000000000:role/{}", unique("owner-reader"));
    let assumed = assumed_role_config(&c.config, &role, Some("the-external-id")).await;

    // Then the requests carry that role's session (STS was asked) and read the bucket
    let who = aws_sdk_sts::Client::new(&assumed)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    let name = role.rsplit('/').next().unwrap();
    assert_eq!(
        who.arn().unwrap(),
        format!("arn:aws:sts::000000000000:assumed-role/{name}/s3-import")
    );
    let got = s3_client(&assumed)
        .get_object()
        .bucket(&bucket)
        .key("events/a.json")
        .send()
        .await
        .unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"{}\n");
}

#[tokio::test]
async fn check_with_role_arn_runs_as_the_role_and_tries_the_functions_actions() {
    let c = common::stack_with_tables().await;
    let bucket = unique("s3i-check-role");
    let queue = s3_import::aws::setup(
        &c,
        CLAIMS,
        Some(DEDUPE),
        &bucket,
        &bucket,
        "in/",
        s3_import::aws::Announce::Queue,
    )
    .await
    .unwrap();
    put(&c, &bucket, "config/converter.json", CONVERTER.as_bytes()).await;
    put(&c, &bucket, "in/x.json", &events("x", 0..3)).await;
    let key_secret = secret(&c, "s3i-check-key", "test-key").await;
    let (endpoint, _received) = common::emulator("s3i-check-role", |_| {}).await;
    let role = format!("arn:aws:iam::000000000000:role/{}", unique("fn"));
    let vars = [
        ("S3I_SOURCE", format!("{bucket}/in/")),
        ("S3I_PREFIX", "in/".into()),
        (
            "S3I_CONVERTER",
            format!("s3://{bucket}/config/converter.json"),
        ),
        ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
        ("S3I_CLAIMS_TABLE", CLAIMS.into()),
        ("S3I_DEDUPE_TABLE", DEDUPE.into()),
        ("S3I_QUEUE_URL", queue),
        ("S3I_API_KEY_SECRET", key_secret.clone()),
        ("S3I_ENDPOINT", endpoint),
    ];
    let run = move |args: Vec<String>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3-import"));
        cmd.args(args)
            .envs(vars.clone())
            .env_remove("AMPLITUDE_API_KEY");
        cmd.output().unwrap()
    };

    // When check runs as the function's role
    let args = ["check", "--role-arn", &role, "--external-id", "x"].map(String::from);
    let out = tokio::task::spawn_blocking(move || run(args.to_vec()))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Then it says whose credentials it used, and tries what the function does with them
    let name = role.rsplit('/').next().unwrap();
    assert!(
        stdout.contains(&format!(
            "ok    role: the checks below run as arn:aws:sts::000000000000:assumed-role/{name}/s3-import\n"
        )),
        "{stdout}"
    );
    for line in [
        format!("ok    api-key-secret: {key_secret} is readable"),
        format!("ok    claims-access: dynamodb:BatchGetItem on {CLAIMS} is allowed"),
        format!("ok    claims-access: dynamodb:UpdateItem on {CLAIMS} is allowed"),
        format!("ok    claims-access: dynamodb:DeleteItem on {CLAIMS} is allowed"),
        format!("ok    dedupe-access: dynamodb:PartiQLInsert on {DEDUPE} is allowed"),
        format!("ok    dedupe-access: dynamodb:DeleteItem on {DEDUPE} is allowed"),
        format!("ok    dedupe-access: dynamodb:BatchGetItem on {DEDUPE} is allowed"),
        format!("ok    dedupe-access: dynamodb:PutItem on {DEDUPE} is allowed"),
        "ok    queue-access: sqs:ChangeMessageVisibility on ".to_string(),
    ] {
        assert!(stdout.contains(&line), "{line}: {stdout}");
    }
    assert!(stdout.ends_with("all 19 checks passed\n"), "{stdout}");
    // The probes left nothing: neither table has an item for the marker key (the dedupe's
    // inserted probe was deleted again).
    for table in [CLAIMS, DEDUPE] {
        let probe = c
            .dynamodb
            .get_item()
            .table_name(table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(".s3-import-check".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        assert!(probe.item().is_none(), "{table}: {:?}", probe.item());
    }
}

/// The template's `ObjectCreatedRule` pattern for `bucket` and `prefix`.
fn object_created_pattern(bucket: &str, prefix: &str) -> String {
    json!({"source": ["aws.s3"], "detail-type": ["Object Created"],
           "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": prefix}]}}})
    .to_string()
}

#[tokio::test]
async fn eventbridge_mode_imports_objects_the_rule_sends_to_the_queue() {
    let c = common::stack_with_tables().await;
    let bucket = unique("s3i-eventbridge");
    // Given the stack's queue (setup's bucket notification replaced by EventBridge only, as
    // the eventbridge mode leaves the bucket's notifications alone), the bucket with
    // EventBridge turned on, and the template's rule on "Object Created" under the prefix
    let queue = s3_import::aws::setup(
        &c,
        CLAIMS,
        Some(DEDUPE),
        &bucket,
        &bucket,
        "",
        s3_import::aws::Announce::Queue,
    )
    .await
    .unwrap();
    c.s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .event_bridge_configuration(EventBridgeConfiguration::builder().build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let queue_arn = c
        .sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let events_client = aws_sdk_eventbridge::Client::new(&c.config);
    events_client
        .put_rule()
        .name(&bucket)
        .event_pattern(object_created_pattern(&bucket, "in/"))
        .state(aws_sdk_eventbridge::types::RuleState::Enabled)
        .send()
        .await
        .unwrap();
    events_client
        .put_targets()
        .rule(&bucket)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("import-queue")
                .arn(&queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    put(&c, &bucket, "config/converter.json", CONVERTER.as_bytes()).await;
    let (endpoint, received) = common::emulator("s3i-eventbridge", |_| {}).await;
    let vars: HashMap<&str, String> = HashMap::from([
        ("S3I_SOURCE", format!("{bucket}/in/")),
        ("S3I_PREFIX", "in/".into()),
        (
            "S3I_CONVERTER",
            format!("s3://{bucket}/config/converter.json"),
        ),
        ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
        ("S3I_CLAIMS_TABLE", CLAIMS.into()),
        ("S3I_DEDUPE_TABLE", DEDUPE.into()),
        ("S3I_QUEUE_URL", queue.clone()),
        ("AMPLITUDE_API_KEY", "k".into()),
        ("S3I_ENDPOINT", endpoint),
    ]);
    let settings = s3_import::settings::Settings::from_lookup(&|k| vars.get(k).cloned()).unwrap();
    let pipeline = s3_import::aws::pipeline(&c, settings);

    // When objects are created under the prefix and outside it
    put(&c, &bucket, "in/2024/a.json", &events("a", 0..20)).await;
    put(&c, &bucket, "in/2024/b c.json", &events("b", 0..10)).await;
    put(&c, &bucket, "elsewhere/c.json", &events("c", 0..5)).await;

    // Then the rule's events reach the queue, and the importer (the handler Lambda runs,
    // here under the queue worker) imports the objects under the prefix, each once
    let mut lines = Vec::new();
    let handled = s3_import::aws::work_queue(
        &pipeline,
        &c.sqs,
        &queue,
        Some(Duration::from_secs(3)),
        Duration::from_secs(1),
        |l| lines.push(l.to_string()),
    )
    .await
    .unwrap();
    let seen = common::received(&received);
    assert_eq!(seen.len(), 30, "{lines:?}");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert!(seen.keys().all(|id| !id.starts_with("c-")), "{seen:?}");
    // (setup's queue notification, replaced above, left S3's test event on the queue)
    let notices: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with("ignored: TestEvent"))
        .collect();
    assert_eq!(
        notices.len(),
        2,
        "one per object under the prefix: {lines:?}"
    );
    assert_eq!(handled, lines.len() as u64, "{lines:?}");
    assert!(
        notices.iter().all(|n| n.contains(": completed\n")),
        "{notices:?}"
    );
    let text = lines.concat();
    // The key with a space comes encoded in the event (as from AWS) and is decoded.
    assert!(
        text.contains("in/2024/a.json") && text.contains("in/2024/b c.json"),
        "{text}"
    );
}
