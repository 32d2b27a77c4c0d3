//! `check --role-arn`: who the checks run as, and the function's actions on the tables and
//! the queue tried with harmless requests as the function's own role.

use super::*;

/// Who the checks run as (`check --role-arn`).
pub(super) async fn identity(clients: &Clients) -> Check {
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
pub(super) async fn function_access(clients: &Clients, settings: &Settings) -> Vec<Check> {
    use aws_sdk_dynamodb::types::AttributeValue;
    const NEVER: &str = "attribute_exists(pk) AND attribute_not_exists(pk)";
    let ddb = &clients.dynamodb;
    let claims = &settings.claims_table;
    let mut checks = Vec::new();
    checks.push(batch_get_probe(ddb, claims, "claims-access").await);
    checks.push(access(
        "claims-access",
        "dynamodb:UpdateItem",
        claims,
        ddb.update_item()
            .table_name(claims)
            .set_key(Some(probe_key()))
            .update_expression("SET checked = :t")
            .condition_expression(NEVER)
            .expression_attribute_values(":t", AttributeValue::N("0".into()))
            .send()
            .await
            .map(|_| ()),
        &["ConditionalCheckFailed"],
    ));
    checks.push(access(
        "claims-access",
        "dynamodb:DeleteItem",
        claims,
        ddb.delete_item()
            .table_name(claims)
            .set_key(Some(probe_key()))
            .condition_expression(NEVER)
            .send()
            .await
            .map(|_| ()),
        &["ConditionalCheckFailed"],
    ));
    if let Some(dedupe) = &settings.dedupe_table {
        checks.extend(dedupe_marks(ddb, dedupe).await);
        checks.push(access(
            "dedupe-access",
            "dynamodb:PutItem",
            dedupe,
            ddb.put_item()
                .table_name(dedupe)
                .set_item(Some(probe_key()))
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

/// The dedupe's own requests on its table: a PartiQL INSERT of the probe's key (expiring in
/// five minutes, should the delete below fail; a probe left by an earlier check is a
/// `DuplicateItem`, which shows the grant too), the DeleteItem that takes it back (the release
/// of a rejected event's mark), and the BatchGetItem that reads the holders of duplicates.
async fn dedupe_marks(ddb: &aws_sdk_dynamodb::Client, dedupe: &str) -> Vec<Check> {
    use aws_sdk_dynamodb::types::{AttributeValue, BatchStatementRequest};
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + 300);
    let mut checks = Vec::new();
    let insert = BatchStatementRequest::builder()
        .statement(format!(
            "INSERT INTO \"{dedupe}\" VALUE {{'pk': ?, 'expires_at': ?}}"
        ))
        .parameters(AttributeValue::S(MARKER.to_string()))
        .parameters(AttributeValue::N(expires.to_string()))
        .build();
    if let Ok(insert) = insert {
        let got = ddb
            .batch_execute_statement()
            .statements(insert)
            .send()
            .await;
        // A statement refused alone comes back in the answer, not as the request's error.
        let refused = got.as_ref().ok().and_then(|out| {
            out.responses()
                .iter()
                .filter_map(|r| r.error())
                .find(|e| !matches!(e.code(), Some(c) if c.as_str() == "DuplicateItem"))
                .map(|e| {
                    let code = e.code().map_or("error", |c| c.as_str()).to_string();
                    let why = format!("{code}: {}", e.message().unwrap_or(""));
                    (code, why)
                })
        });
        checks.push(match refused {
            Some((code, why)) => {
                let fix = if code.contains("AccessDenied") {
                    format!("grant dynamodb:PartiQLInsert on {dedupe} to the function's role (template.yaml, the function's Policies)")
                } else {
                    "see the error; the function needs this action to work".to_string()
                };
                Check::problem(
                    "dedupe-access",
                    format!("dynamodb:PartiQLInsert on {dedupe}: {why}"),
                    fix,
                )
            }
            None => access(
                "dedupe-access",
                "dynamodb:PartiQLInsert",
                dedupe,
                got.map(|_| ()),
                &[],
            ),
        });
    }
    checks.push(access(
        "dedupe-access",
        "dynamodb:DeleteItem",
        dedupe,
        ddb.delete_item()
            .table_name(dedupe)
            .set_key(Some(probe_key()))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map(|_| ()),
        &["ConditionalCheckFailed"],
    ));
    checks.push(batch_get_probe(ddb, dedupe, "dedupe-access").await);
    checks
}

/// The key the probes use, which no claim or dedupe mark has.
fn probe_key() -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    let key = aws_sdk_dynamodb::types::AttributeValue::S(MARKER.to_string());
    HashMap::from([("pk".to_string(), key)])
}

/// A BatchGetItem of the probe key on `table` (it finds nothing).
async fn batch_get_probe(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    check: &'static str,
) -> Check {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    let got = match KeysAndAttributes::builder().keys(probe_key()).build() {
        Ok(keys) => ddb.batch_get_item().request_items(table, keys).send().await,
        Err(e) => {
            return Check::problem(
                check,
                format!("dynamodb:BatchGetItem on {table}: {e}"),
                "a bug: report it",
            )
        }
    };
    access(check, "dynamodb:BatchGetItem", table, got.map(|_| ()), &[])
}
