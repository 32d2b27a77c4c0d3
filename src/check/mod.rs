//! `s3-import check`: with the importer's own settings, tries each thing the importer needs
//! and says, one line per check, that it works or what is wrong and how to fix it (as
//! Amplitude's "Test Credentials" does before a source is saved). Every request it makes
//! changes nothing that matters: a one-byte ranged read, one page of a listing, a small marker
//! object under the reports location (deleted again when allowed), describes, and an event
//! request with no events.

mod endpoint;
mod role;
mod stores;

use stores::{queue, table};

use std::collections::HashMap;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use serde::Serialize;

use crate::aws::Clients;
use crate::convert::Converter;
use crate::settings::Settings;
use crate::sink::routes::ApiRoute;

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

/// The source bucket as the template names it in `S3I_SOURCE`, when it does: the bucket's
/// name (the template's default source id), or `<bucket>/<prefix>` (stacks deployed before
/// the `SourceId` parameter, which keep that value).
pub fn source_bucket(settings: &Settings) -> Option<String> {
    let source = settings.source.as_str();
    let bucket = match source.strip_suffix(settings.prefix.as_str()) {
        Some(rest) if rest.ends_with('/') => &rest[..rest.len() - 1],
        _ => source,
    };
    let bucket_like = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    (bucket_like && bucket != crate::settings::DEFAULT_SOURCE).then(|| bucket.to_string())
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
        checks.push(role::identity(r.clients).await);
    }
    let listed = source(data, settings, bucket, &mut checks).await;
    let (check, conv) = converter(data, settings, bucket, listed.as_deref()).await;
    checks.push(check);
    checks.push(reports(data, settings, bucket).await);
    if let Some(r) = &role {
        if let Some(secret) = r.api_key_secret {
            checks.push(
                match crate::aws::api_key_from_secret(&r.clients.config, secret).await {
                    Ok(_) => Check::ok("api-key-secret", format!("{secret} is readable")),
                    Err(e) => Check::problem(
                        "api-key-secret",
                        e.to_string(),
                        "allow secretsmanager:GetSecretValue on the secret (template parameter ApiKeySecretArn)",
                    ),
                },
            );
        }
        checks.extend(role::function_access(r.clients, settings).await);
    }
    let mut claims = table(clients, "claims-table", &settings.claims_table, None).await;
    if let (true, Some(bucket), Some(listed)) = (claims.ok, bucket, listed.as_deref()) {
        if let Some(problem) = earlier_source(clients, settings, bucket, listed).await {
            claims = problem;
        }
    }
    checks.push(claims);
    match &settings.dedupe_table {
        Some(t) => checks.push(table(clients, "dedupe-table", t, Some("expires_at")).await),
        None => checks.push(Check::ok(
            "dedupe-table",
            "dedupe is off (S3I_DEDUPE_TABLE=off): the endpoint's own insert_id dedupe applies",
        )),
    }
    checks.push(queue(clients, settings).await);
    checks.extend(endpoint::probe_routes(settings, conv.as_ref()).await);
    checks
}

/// A source id change that would import everything again: some of the listed keys have
/// claims under `<bucket>/<prefix>` (the id of stacks deployed before the `SourceId`
/// parameter) and none under `S3I_SOURCE`.
async fn earlier_source(
    clients: &Clients,
    settings: &Settings,
    bucket: &str,
    listed: &[(String, i64)],
) -> Option<Check> {
    use crate::claims::{ClaimKey, ClaimStore};
    let old = format!("{bucket}/{}", settings.prefix);
    if old == settings.source || listed.is_empty() {
        return None;
    }
    let store =
        crate::claims::dynamo::DynamoClaims::new(clients.dynamodb.clone(), &settings.claims_table);
    let keys = |source: &str| -> Vec<ClaimKey> {
        listed
            .iter()
            .take(100)
            .map(|(key, _)| ClaimKey {
                source: source.to_string(),
                bucket: bucket.to_string(),
                key: key.clone(),
            })
            .collect()
    };
    let now = store.get_many(&keys(&settings.source)).await.ok()?;
    let before = store.get_many(&keys(&old)).await.ok()?;
    let found = |states: &[Option<crate::claims::ClaimState>]| states.iter().flatten().count();
    (found(&now) == 0 && found(&before) > 0).then(|| {
        Check::problem(
            "claims-table",
            format!(
                "table {}: {} of the first {} keys listed have claims under the source `{old}` \
                 and none under S3I_SOURCE `{}`: every object imported before would be \
                 imported again",
                settings.claims_table,
                found(&before),
                now.len(),
                settings.source
            ),
            format!(
                "keep the earlier source id: deploy with SourceId={old} (S3I_SOURCE={old}); \
                 stacks deployed before the SourceId parameter used `<bucket>/<prefix>`"
            ),
        )
    })
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
            "no source bucket: S3I_SOURCE is neither a bucket name nor `<bucket>/<prefix>`",
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
) -> (Check, Option<Converter>) {
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
            return (
                Check::problem("converter", format!("{c} cannot be read: {text}"), fix),
                None,
            );
        }
    };
    let text = match body.map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            return (
                Check::problem(
                    "converter",
                    format!("{c} is not UTF-8 text"),
                    "upload the JSON converter file",
                ),
                None,
            )
        }
        Err(e) => {
            return (
                Check::problem("converter", format!("{c}: {e}"), "run check again"),
                None,
            )
        }
    };
    let conv = match Converter::load(&text) {
        Ok(conv) => conv,
        Err(errors) => {
            let all: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
            return (Check::problem(
                "converter",
                format!("{c} does not load: {}", all.join("; ")),
                "fix the file (s3-import validate --config FILE lists every problem) and upload \
                 it again; objects wait meanwhile and import by themselves once it loads",
            ), None);
        }
    };
    let check = converter_matches(settings, &conv, bucket, listed);
    (check, Some(conv))
}

/// Whether the converter's filterPattern matches the keys listed under the prefix.
fn converter_matches(
    settings: &Settings,
    conv: &Converter,
    bucket: Option<&str>,
    listed: Option<&[(String, i64)]>,
) -> Check {
    let c = &settings.converter;
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
        assert_eq!(
            source_bucket(&settings("data", "events/")).as_deref(),
            Some("data")
        );
        assert_eq!(source_bucket(&settings("default", "events/")), None);
        assert_eq!(source_bucket(&settings("", "events/")), None);
        assert_eq!(source_bucket(&settings("My Source", "")), None);
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
