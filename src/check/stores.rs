//! The stores' checks: the claims and dedupe tables (key, TTL) and the queue (its
//! dead-letter queue).

use super::*;

/// A table exists, keyed by the string `pk` alone; with `ttl`, that attribute's TTL is on.
pub(super) async fn table(
    clients: &Clients,
    check: &'static str,
    name: &str,
    ttl: Option<&str>,
) -> Check {
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
pub(super) async fn queue(clients: &Clients, settings: &Settings) -> Check {
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
