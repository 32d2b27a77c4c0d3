//! `s3-import check`: with the importer's own settings, tries each thing the importer needs
//! and says, one line per check, that it works or what is wrong and how to fix it (as
//! Amplitude's "Test Credentials" does before a source is saved). Every request it makes
//! changes nothing that matters: a one-byte ranged read, one page of a listing, a small marker
//! object under the reports location (deleted again when allowed), describes, and an event
//! request with no events.

use std::collections::HashMap;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use serde::Serialize;

use crate::aws::Clients;
use crate::convert::Converter;
use crate::settings::Settings;

/// Keys looked at (one listing page) for a readable object and the converter's filterPattern.
const SAMPLE_KEYS: i32 = 1000;
/// The marker written under the reports location.
const MARKER: &str = ".s3-import-check";

/// One check's result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// What was checked: `source`, `converter`, `reports`, `claims-table`, `dedupe-table`,
    /// `queue`, `endpoint`; with `--role-arn` also `role`, `api-key-secret`, `claims-access`,
    /// `dedupe-access`, `queue-access`.
    pub check: &'static str,
    pub ok: bool,
    /// What was found (when ok) or what is wrong.
    pub detail: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(check: &'static str, detail: impl Into<String>) -> Check {
        Check {
            check,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn problem(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The lines for a person: `ok   name: detail` or `FAIL name: problem` and its fix.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        if c.ok {
            out.push_str(&format!("ok    {}: {}\n", c.check, c.detail));
        } else {
            out.push_str(&format!(
                "FAIL  {}: {} — fix: {}\n",
                c.check,
                c.detail,
                c.fix.as_deref().unwrap_or("")
            ));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        out.push_str(&format!("all {} checks passed\n", checks.len()));
    } else {
        out.push_str(&format!("{failed} of {} checks failed\n", checks.len()));
    }
    out
}

/// The checks as one JSON document: `{"ok": bool, "checks": [{"check", "ok", "detail", "fix"?}]}`.
pub fn to_json(checks: &[Check]) -> serde_json::Value {
    serde_json::json!({"ok": checks.iter().all(|c| c.ok), "checks": checks})
}

/// The source bucket as the template names it in `S3I_SOURCE` (`<bucket>/<prefix>`), when it
/// does.
pub fn source_bucket(settings: &Settings) -> Option<String> {
    let bucket = settings
        .source
        .strip_suffix(settings.prefix.as_str())?
        .strip_suffix('/')?;
    (!bucket.is_empty() && !bucket.contains('/')).then(|| bucket.to_string())
}

/// An SDK error's code and its text with every cause.
fn sdk_error<E, R>(e: &SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().unwrap_or("").to_string();
    let text = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    };
    (code, text)
}

/// The fix for an S3 read that failed with `code`/`text`.
fn read_fix(code: &str, text: &str, what: &str) -> String {
    if code.starts_with("KMS") || text.contains("KMS") || text.contains("kms:") {
        return format!(
            "the bucket's objects are encrypted with a KMS key the importer may not use: grant \
             kms:Decrypt on it (template parameter SourceKmsKeyArn) for {what}"
        );
    }
    match code {
        "NoSuchBucket" => "check the bucket name (template parameter SourceBucketName, or --bucket)".into(),
        c if c.starts_with("AccessDenied") || c == "Forbidden" || c.is_empty() => format!(
            "allow {what} to the importer's role (for another account: SourceRoleArn and the role's permissions, infra/aws/)"
        ),
        _ => format!("see the error; {what} must work with the importer's credentials"),
    }
}

/// The function's own role, for `check --role-arn`.
pub struct AsRole<'a> {
    /// Clients with the role's credentials.
    pub clients: &'a Clients,
    /// `S3I_API_KEY_SECRET`, read again as the role.
    pub api_key_secret: Option<&'a str>,
}

/// Runs every check against the deployed settings; `bucket` is the source bucket. With `role`,
/// what the function does is tried with the role's credentials (the source, the converter,
/// the reports, the secret, and harmless requests of the actions it takes on the tables and
/// the queue), so that its permission gaps show before the first file; the describes of the
/// tables and the queue stay the caller's (the function is not granted them).
pub async fn run(
    clients: &Clients,
    settings: &Settings,
    bucket: Option<&str>,
    role: Option<AsRole<'_>>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let data = role.as_ref().map_or(clients, |r| r.clients);
    if let Some(r) = &role {
        checks.push(identity(r.clients).await);
    }
    let listed = source(data, settings, bucket, &mut checks).await;
    checks.push(converter(data, settings, bucket, listed.as_deref()).await);
    checks.push(reports(data, settings, bucket).await);
    if let Some(r) = &role {
        if let Some(secret) = r.api_key_secret {
            checks.push(
                match crate::aws::api_key_from_secret(&r.clients.config, secret).await {
                    Ok(_) => Check::ok("api-key-secret", format!("{secret} is readable")),
                    Err(e) => Check::problem(
                        "api-key-secret",
                        e,
                        "allow secretsmanager:GetSecretValue on the secret (template parameter ApiKeySecretArn)",
                    ),
                },
            );
        }
        checks.extend(function_access(r.clients, settings).await);
    }
    checks.push(table(clients, "claims-table", &settings.claims_table, None).await);
    match &settings.dedupe_table {
        Some(t) => checks.push(table(clients, "dedupe-table", t, Some("expires_at")).await),
        None => checks.push(Check::ok(
            "dedupe-table",
            "dedupe is off (S3I_DEDUPE_TABLE=off): the endpoint's own insert_id dedupe applies",
        )),
    }
    checks.push(queue(clients, settings).await);
    checks.push(endpoint(settings).await);
    checks
}

/// The source bucket listable under the prefix and an object readable; the keys of the first
/// listing page (for the converter's filterPattern), when listable.
async fn source(
    clients: &Clients,
    settings: &Settings,
    bucket: Option<&str>,
    checks: &mut Vec<Check>,
) -> Option<Vec<(String, i64)>> {
    let Some(bucket) = bucket else {
        checks.push(Check::problem(
            "source",
            "no source bucket: S3I_SOURCE is not `<bucket>/<prefix>`",
            "give --bucket BUCKET",
        ));
        return None;
    };
    let place = format!("s3://{bucket}/{}", settings.prefix);
    let page = clients
        .source_s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&settings.prefix)
        .max_keys(SAMPLE_KEYS)
        .send()
        .await;
    let page = match page {
        Ok(page) => page,
        Err(e) => {
            let (code, text) = sdk_error(&e);
            checks.push(Check::problem(
                "source",
                format!("{place} cannot be listed: {text}"),
                read_fix(&code, &text, "s3:ListBucket on the bucket"),
            ));
            return None;
        }
    };
    let keys: Vec<(String, i64)> = page
        .contents()
        .iter()
        .filter_map(|o| Some((o.key()?.to_string(), o.size().unwrap_or(0))))
        .collect();
    let first = keys
        .iter()
        .find(|(k, size)| *size > 0 && !k.ends_with('/') && settings.excludes(bucket, k).is_none());
    let Some((key, _)) = first else {
        checks.push(Check::ok(
            "source",
            format!(
                "{place} is listable ({} keys); no object to read yet",
                keys.len()
            ),
        ));
        return Some(keys);
    };
    let read = clients
        .source_s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .range("bytes=0-0")
        .send()
        .await;
    match read {
        Ok(_) => checks.push(Check::ok(
            "source",
            format!(
                "{place} is listable ({}{} keys) and s3://{bucket}/{key} readable",
                keys.len(),
                if page.is_truncated() == Some(true) {
                    "+"
                } else {
                    ""
                }
            ),
        )),
        Err(e) => {
            let (code, text) = sdk_error(&e);
            checks.push(Check::problem(
                "source",
                format!("{place} is listable but s3://{bucket}/{key} cannot be read: {text}"),
                read_fix(&code, &text, "s3:GetObject on the prefix"),
            ));
        }
    }
    Some(keys)
}

/// The converter loads (every error when it does not) and matches at least one listed key.
async fn converter(
    clients: &Clients,
    settings: &Settings,
    bucket: Option<&str>,
    listed: Option<&[(String, i64)]>,
) -> Check {
    let c = &settings.converter;
    let got = clients
        .s3
        .get_object()
        .bucket(&c.bucket)
        .key(&c.key)
        .send()
        .await;
    let body = match got {
        Ok(out) => out.body.collect().await.map(|b| b.to_vec()),
        Err(e) => {
            let (code, text) = sdk_error(&e);
            let fix = if code == "NoSuchKey" || code == "NoSuchBucket" {
                format!("upload the converter file to {c} (check it first: s3-import validate --config FILE)")
            } else {
                read_fix(&code, &text, "s3:GetObject on the converter file")
            };
            return Check::problem("converter", format!("{c} cannot be read: {text}"), fix);
        }
    };
    let text = match body.map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            return Check::problem(
                "converter",
                format!("{c} is not UTF-8 text"),
                "upload the JSON converter file",
            )
        }
        Err(e) => return Check::problem("converter", format!("{c}: {e}"), "run check again"),
    };
    let conv = match Converter::load(&text) {
        Ok(conv) => conv,
        Err(errors) => {
            let all: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
            return Check::problem(
                "converter",
                format!("{c} does not load: {}", all.join("; ")),
                "fix the file (s3-import validate --config FILE lists every problem) and upload \
                 it again; objects wait meanwhile and import by themselves once it loads",
            );
        }
    };
    let (Some(bucket), Some(listed)) = (bucket, listed) else {
        return Check::ok("converter", format!("{c} loads (keys not listed)"));
    };
    let importable: Vec<&str> = listed
        .iter()
        .filter(|(k, size)| {
            *size > 0 && !k.ends_with('/') && settings.excludes(bucket, k).is_none()
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if importable.is_empty() {
        return Check::ok(
            "converter",
            format!("{c} loads; no object under the prefix yet to match its filterPattern"),
        );
    }
    let matching = importable
        .iter()
        .filter(|k| conv.file.key_matches(k))
        .count();
    if matching == 0 {
        return Check::problem(
            "converter",
            format!(
                "{c} loads, but its filterPattern `{}` matches none of the {} keys listed (e.g. {})",
                conv.file.filter_pattern().unwrap_or(""),
                importable.len(),
                importable[0]
            ),
            "fix keyValidatorConfig.filterPattern (it must match the whole key, prefix included)",
        );
    }
    Check::ok(
        "converter",
        format!(
            "{c} loads and matches {matching} of the {} keys listed",
            importable.len()
        ),
    )
}

/// The reports location writable and outside the prefix.
async fn reports(clients: &Clients, settings: &Settings, bucket: Option<&str>) -> Check {
    let r = &settings.reports;
    if bucket == Some(r.bucket.as_str()) && r.key.starts_with(&settings.prefix) {
        return Check::problem(
            "reports",
            format!(
                "{r} is under the prefix `{}`: reports would be imported",
                settings.prefix
            ),
            "move S3I_REPORTS (template: ReportsBucket/ReportsPrefix) outside the prefix",
        );
    }
    let key = format!("{}{MARKER}", r.key);
    let put = clients
        .s3
        .put_object()
        .bucket(&r.bucket)
        .key(&key)
        .body(b"written by s3-import check\n".to_vec().into())
        .send()
        .await;
    match put {
        Ok(_) => {
            // The importer's role may not delete: a marker left behind is harmless.
            let _ = clients
                .s3
                .delete_object()
                .bucket(&r.bucket)
                .key(&key)
                .send()
                .await;
            let outside = if bucket == Some(r.bucket.as_str()) {
                "outside the prefix"
            } else {
                "in another bucket than the source"
            };
            Check::ok("reports", format!("{r} is writable and {outside}"))
        }
        Err(e) => {
            let (code, text) = sdk_error(&e);
            Check::problem(
                "reports",
                format!("{r} is not writable: {text}"),
                read_fix(&code, &text, "s3:PutObject under the reports location"),
            )
        }
    }
}

/// Who the checks run as (`check --role-arn`).
async fn identity(clients: &Clients) -> Check {
    let sts = aws_sdk_sts::Client::new(&clients.config);
    match sts.get_caller_identity().send().await {
        Ok(who) => Check::ok(
            "role",
            format!(
                "the checks below run as {}",
                who.arn().unwrap_or("(unknown)")
            ),
        ),
        Err(e) => Check::problem(
            "role",
            format!("the role cannot be assumed: {}", sdk_error(&e).1),
            "let the caller assume the role (its trust policy) or fix --role-arn / --external-id",
        ),
    }
}

/// A probe's answer: success, or a refusal for the request's content (`expected`, e.g. a
/// condition that does not hold), shows the permission is there; an access denial names the
/// action and where to grant it; anything else is shown as it is.
fn access<E, R>(
    check: &'static str,
    action: &str,
    on: &str,
    got: Result<(), SdkError<E, R>>,
    expected: &[&str],
) -> Check
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let Err(e) = got else {
        return Check::ok(check, format!("{action} on {on} is allowed"));
    };
    let (code, text) = sdk_error(&e);
    if expected.iter().any(|x| code.contains(x)) {
        return Check::ok(check, format!("{action} on {on} is allowed"));
    }
    if code.contains("AccessDenied")
        || code.contains("NotAuthorized")
        || code.contains("Unauthorized")
    {
        return Check::problem(
            check,
            format!("{action} on {on} is denied: {text}"),
            format!("grant {action} on {on} to the function's role (template.yaml, the function's Policies)"),
        );
    }
    Check::problem(
        check,
        format!("{action} on {on}: {text}"),
        "see the error; the function needs this action to work",
    )
}

/// The function's actions on the tables and the queue, tried with requests that change
/// nothing: a read of a key that is never written, writes whose condition cannot hold, and a
/// visibility change with a receipt handle that names no message. SendMessage is not tried (it
/// would queue a message).
async fn function_access(clients: &Clients, settings: &Settings) -> Vec<Check> {
    use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
    const NEVER: &str = "attribute_exists(pk) AND attribute_not_exists(pk)";
    let probe = || HashMap::from([("pk".to_string(), AttributeValue::S(MARKER.to_string()))]);
    let ddb = &clients.dynamodb;
    let claims = &settings.claims_table;
    let mut checks = Vec::new();
    if let Ok(keys) = KeysAndAttributes::builder().keys(probe()).build() {
        let got = ddb
            .batch_get_item()
            .request_items(claims, keys)
            .send()
            .await;
        checks.push(access(
            "claims-access",
            "dynamodb:BatchGetItem",
            claims,
            got.map(|_| ()),
            &[],
        ));
    }
    checks.push(access(
        "claims-access",
        "dynamodb:UpdateItem",
        claims,
        ddb.update_item()
            .table_name(claims)
            .set_key(Some(probe()))
            .update_expression("SET checked = :t")
            .condition_expression(NEVER)
            .expression_attribute_values(":t", AttributeValue::N("0".into()))
            .send()
            .await
            .map(|_| ()),
        &["ConditionalCheckFailed"],
    ));
    if let Some(dedupe) = &settings.dedupe_table {
        checks.push(access(
            "dedupe-access",
            "dynamodb:PutItem",
            dedupe,
            ddb.put_item()
                .table_name(dedupe)
                .set_item(Some(probe()))
                .condition_expression(NEVER)
                .send()
                .await
                .map(|_| ()),
            &["ConditionalCheckFailed"],
        ));
    }
    if let Some(url) = &settings.queue_url {
        checks.push(access(
            "queue-access",
            "sqs:ChangeMessageVisibility",
            url,
            clients
                .sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(MARKER)
                .visibility_timeout(0)
                .send()
                .await
                .map(|_| ()),
            &["ReceiptHandleIsInvalid", "InvalidParameterValue"],
        ));
    }
    checks
}

/// A table exists, keyed by the string `pk` alone; with `ttl`, that attribute's TTL is on.
async fn table(clients: &Clients, check: &'static str, name: &str, ttl: Option<&str>) -> Check {
    use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType, TimeToLiveStatus};
    let described = match clients
        .dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
    {
        Ok(d) => d,
        Err(e) => {
            let (code, text) = sdk_error(&e);
            let fix = if code == "ResourceNotFoundException" {
                "deploy the template (or s3-import setup for a local stack), or set the table's name"
                    .to_string()
            } else {
                "allow dynamodb:DescribeTable to whoever runs check".to_string()
            };
            return Check::problem(check, format!("table {name}: {text}"), fix);
        }
    };
    let Some(t) = described.table() else {
        return Check::problem(
            check,
            format!("table {name}: not described"),
            "run check again",
        );
    };
    let keys = t.key_schema();
    let pk_type = t
        .attribute_definitions()
        .iter()
        .find(|a| a.attribute_name() == "pk")
        .map(|a| a.attribute_type().clone());
    let right = keys.len() == 1
        && keys[0].attribute_name() == "pk"
        && keys[0].key_type() == &KeyType::Hash
        && pk_type == Some(ScalarAttributeType::S);
    if !right {
        let schema: Vec<String> = keys
            .iter()
            .map(|k| format!("{} {}", k.attribute_name(), k.key_type().as_str()))
            .collect();
        return Check::problem(
            check,
            format!(
                "table {name} is keyed by [{}], not the string `pk` alone",
                schema.join(", ")
            ),
            "create the table as template.yaml does (partition key pk, type S, no sort key)",
        );
    }
    let Some(attr) = ttl else {
        return Check::ok(check, format!("table {name} exists, keyed by pk"));
    };
    let ttl_state = clients
        .dynamodb
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await;
    match ttl_state {
        Ok(d) => {
            let desc = d.time_to_live_description();
            let status = desc.and_then(|d| d.time_to_live_status());
            let on_attr = desc.and_then(|d| d.attribute_name()) == Some(attr);
            if on_attr
                && matches!(
                    status,
                    Some(TimeToLiveStatus::Enabled) | Some(TimeToLiveStatus::Enabling)
                )
            {
                Check::ok(
                    check,
                    format!("table {name} exists, keyed by pk, TTL on {attr}"),
                )
            } else {
                Check::problem(
                    check,
                    format!(
                        "table {name}: TTL is {} (on {:?}), not enabled on {attr}",
                        status.map_or("unknown", |s| s.as_str()),
                        desc.and_then(|d| d.attribute_name()).unwrap_or("")
                    ),
                    format!("enable TTL on the attribute {attr}: dedupe entries must expire after 7 days"),
                )
            }
        }
        Err(e) => Check::problem(
            check,
            format!("table {name}: TTL not readable: {}", sdk_error(&e).1),
            "allow dynamodb:DescribeTimeToLive to whoever runs check",
        ),
    }
}

/// The queue exists and has a dead-letter queue.
async fn queue(clients: &Clients, settings: &Settings) -> Check {
    use aws_sdk_sqs::types::QueueAttributeName;
    let Some(url) = &settings.queue_url else {
        return Check::problem(
            "queue",
            "S3I_QUEUE_URL is not set: paused objects cannot be continued",
            "set S3I_QUEUE_URL to the queue the bucket notifies (the template does)",
        );
    };
    let attrs = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await;
    match attrs {
        Ok(a) => {
            let policy = a
                .attributes()
                .and_then(|m| m.get(&QueueAttributeName::RedrivePolicy))
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok());
            match policy {
                Some(p) => {
                    let target = p["deadLetterTargetArn"].as_str().unwrap_or("?");
                    let receives = match &p["maxReceiveCount"] {
                        serde_json::Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    Check::ok(
                        "queue",
                        format!("{url} exists; after {receives} receives a message goes to {target}"),
                    )
                }
                None => Check::problem(
                    "queue",
                    format!("{url} has no dead-letter queue (no redrive policy)"),
                    "add a redrive policy (maxReceiveCount 5) to a dead-letter queue, as template.yaml does",
                ),
            }
        }
        Err(e) => {
            let (code, text) = sdk_error(&e);
            let fix = if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") {
                "create the queue (deploy the template) or fix S3I_QUEUE_URL"
            } else {
                "allow sqs:GetQueueAttributes to whoever runs check"
            };
            Check::problem("queue", format!("{url}: {text}"), fix)
        }
    }
}

/// The endpoint answers and accepts the API key: an event request with no events, which
/// ingests nothing. Amplitude answers it 400 `missing_field: events` for a good key and
/// `Invalid API key` for a bad one.
async fn endpoint(settings: &Settings) -> Check {
    let sink = &settings.sink;
    let path = match sink.event_api {
        crate::sink::EventApi::HttpV2 => "/2/httpapi",
        crate::sink::EventApi::Batch => "/batch",
    };
    let url = format!("{}{path}", sink.base_url);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap_or_default();
    let sent = client
        .post(&url)
        .header("content-type", "application/json")
        .body(serde_json::json!({"api_key": sink.api_key, "events": []}).to_string())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            return Check::problem(
                "endpoint",
                format!("{url} does not answer: {e}"),
                "check S3I_ENDPOINT / S3I_REGION and the network path (VPC, proxy) to it",
            )
        }
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let error = body["error"].as_str().unwrap_or("");
    match status {
        200 => Check::ok("endpoint", format!("{url} answers and accepts the API key")),
        400 if error.starts_with("Invalid API key") => Check::problem(
            "endpoint",
            format!("{url} refuses the API key: {error}"),
            "put the project's API key in the secret S3I_API_KEY_SECRET names (or AMPLITUDE_API_KEY)",
        ),
        400 if body["missing_field"] == "events" => Check::ok(
            "endpoint",
            format!("{url} answers and accepts the API key (a request with no events, nothing ingested)"),
        ),
        _ => Check::problem(
            "endpoint",
            format!("{url} answered {status}: {body}"),
            "check that S3I_ENDPOINT is an Amplitude-compatible endpoint",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(source: &str, prefix: &str) -> Settings {
        let vars = [
            ("S3I_CONVERTER", "s3://c/converter.json"),
            ("S3I_REPORTS", "s3://r/reports/"),
            ("AMPLITUDE_API_KEY", "k"),
            ("S3I_SOURCE", source),
            ("S3I_PREFIX", prefix),
        ];
        Settings::from_lookup(&|k| {
            vars.iter()
                .find(|(n, v)| *n == k && !v.is_empty())
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    #[test]
    fn the_source_bucket_comes_from_the_templates_source_name() {
        assert_eq!(
            source_bucket(&settings("data/events/", "events/")).as_deref(),
            Some("data")
        );
        assert_eq!(
            source_bucket(&settings("data/", "")).as_deref(),
            Some("data")
        );
        assert_eq!(source_bucket(&settings("my-source", "events/")), None);
        assert_eq!(source_bucket(&settings("a/b/events/", "events/")), None);
    }

    #[test]
    fn kms_denials_name_the_template_parameter() {
        assert!(read_fix("KMS.KMSInvalidStateException", "", "x").contains("SourceKmsKeyArn"));
        assert!(read_fix(
            "AccessDenied",
            "AccessDenied: not authorized to perform: kms:Decrypt",
            "x"
        )
        .contains("kms:Decrypt"));
        assert!(!read_fix("AccessDenied", "AccessDenied: denied", "x").contains("KMS"));
    }

    #[test]
    fn lines_say_ok_or_the_problem_and_its_fix() {
        let text = render(&[
            Check::ok("queue", "q exists"),
            Check::problem("endpoint", "refused", "set the key"),
        ]);
        assert_eq!(
            text,
            "ok    queue: q exists\nFAIL  endpoint: refused — fix: set the key\n1 of 2 checks failed\n"
        );
        assert_eq!(to_json(&[Check::ok("queue", "q")])["ok"], true);
    }
}
