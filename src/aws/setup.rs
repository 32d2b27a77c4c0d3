//! `setup`: the local (or development) stack the demo and the tests use; production uses
//! `template.yaml`. Tables, bucket, queue with its dead-letter queue, the queue policy that
//! admits the bucket (or an EventBridge rule), and the bucket's notification configuration,
//! merged with what the bucket already has.

use super::{sdk_text, Clients, QUEUE_VISIBILITY_SECS};

/// Why `setup` stopped. Whatever was made before stays (every step is idempotent).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An AWS call failed: what was being done, and AWS's words.
    #[error("{doing}: {error}")]
    Aws { doing: String, error: String },
    /// Refused before changing anything: a bad rule ARN, a clashing notification.
    #[error("{0}")]
    Refused(String),
}

/// Turns an AWS error into `SetupError::Aws` saying what was being done.
fn failed<E: std::error::Error + 'static>(
    doing: impl Into<String>,
) -> impl FnOnce(E) -> SetupError {
    let doing = doing.into();
    move |e| SetupError::Aws {
        doing,
        error: sdk_text(e),
    }
}

/// Creates a table keyed by the string `pk` (on-demand) unless it exists; `ttl` names the
/// epoch-seconds attribute that expires items.
pub async fn ensure_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    ttl: Option<&str>,
) -> Result<(), SetupError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    let created = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(failed(format!("creating table {name}")))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(failed(format!("creating table {name}")))?,
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) => {
            let e = e.into_service_error();
            if !e.is_resource_in_use_exception() {
                return Err(failed(format!("creating table {name}"))(e));
            }
            return Ok(());
        }
    }
    for _ in 0..100 {
        let d = ddb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(failed(format!("waiting for table {name}")))?;
        let active = d
            .table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| *s == aws_sdk_dynamodb::types::TableStatus::Active);
        if active {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    if let Some(attr) = ttl {
        ddb.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(attr)
                    .build()
                    .map_err(failed(format!("enabling TTL on {name}")))?,
            )
            .send()
            .await
            .map_err(failed(format!("enabling TTL on {name}")))?;
    }
    Ok(())
}

/// How `setup` has the bucket announce new objects to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announce<'a> {
    /// The bucket's notification configuration sends to the queue (S3 → SQS).
    Queue,
    /// The bucket sends its events to EventBridge, where this rule (made by the operator or
    /// the stack) forwards "Object Created" to the queue.
    EventBridge { rule_arn: &'a str },
}

/// The local (or development) setup the demo and the tests use; production uses
/// `template.yaml`. Creates, when missing: the two tables (TTL on the dedupe table), the
/// bucket, a queue with a dead-letter queue; gives the queue a policy that lets the bucket (or,
/// with EventBridge, the rule) send, scoped by `aws:SourceArn` and `aws:SourceAccount`; and adds
/// the bucket's notification of created objects under `prefix` to the queue (or turns on its
/// EventBridge delivery), keeping every other configuration of the bucket. A configuration of
/// someone else's for the same events and overlapping keys is refused, named. Running it again
/// changes nothing. Returns the queue URL.
pub async fn setup(
    clients: &Clients,
    claims_table: &str,
    dedupe_table: Option<&str>,
    bucket: &str,
    queue: &str,
    prefix: &str,
    announce: Announce<'_>,
) -> Result<String, SetupError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    if let Announce::EventBridge { rule_arn } = announce {
        if let Some(problem) = rule_arn_problem(rule_arn) {
            return Err(SetupError::Refused(problem));
        }
    }
    ensure_table(&clients.dynamodb, claims_table, None).await?;
    if let Some(t) = dedupe_table {
        ensure_table(&clients.dynamodb, t, Some("expires_at")).await?;
    }
    if let Err(e) = clients.s3.create_bucket().bucket(bucket).send().await {
        let e = e.into_service_error();
        if !(e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()) {
            return Err(failed(format!("creating bucket {bucket}"))(e));
        }
    }
    let dlq = clients
        .sqs
        .create_queue()
        .queue_name(format!("{queue}-dlq"))
        .send()
        .await
        .map_err(failed(format!("creating queue {queue}-dlq")))?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_string();
    let arn_of = |url: String| {
        let sqs = clients.sqs.clone();
        async move {
            let a = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(failed(format!("reading the ARN of {url}")))?;
            a.attributes()
                .and_then(|m| m.get(&QueueAttributeName::QueueArn))
                .cloned()
                .ok_or_else(|| SetupError::Refused(format!("no ARN for {url}")))
        }
    };
    let dlq_arn = arn_of(dlq_url).await?;
    let q = clients
        .sqs
        .create_queue()
        .queue_name(queue)
        .attributes(QueueAttributeName::VisibilityTimeout, QUEUE_VISIBILITY_SECS)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string(),
        )
        .send()
        .await
        .map_err(failed(format!("creating queue {queue}")))?;
    let url = q.queue_url().unwrap_or_default().to_string();
    let arn = arn_of(url.clone()).await?;
    let parts = arn_parts(&arn)
        .ok_or_else(|| SetupError::Refused(format!("queue {queue}: unexpected ARN `{arn}`")))?;
    let bucket_arn = format!("arn:{}:s3:::{bucket}", parts.partition);
    // The bucket was made (or is owned) by this account, the queue's.
    ensure_queue_policy(clients, &url, &arn, &bucket_arn, parts.account, announce).await?;
    ensure_notification(clients, bucket, &arn, queue, prefix, announce).await?;
    Ok(url)
}

/// What is wrong with `arn` as an EventBridge rule's ARN, if anything.
pub fn rule_arn_problem(arn: &str) -> Option<String> {
    let ok =
        arn_parts(arn).is_some_and(|p| p.service == "events" && p.resource.starts_with("rule/"));
    (!ok).then(|| {
        format!("`{arn}` is not an EventBridge rule ARN (arn:aws:events:REGION:ACCOUNT:rule/NAME)")
    })
}

/// The parts of an ARN setup needs.
struct ArnParts<'a> {
    partition: &'a str,
    service: &'a str,
    account: &'a str,
    resource: &'a str,
}

fn arn_parts(arn: &str) -> Option<ArnParts<'_>> {
    let mut it = arn.splitn(6, ':');
    (it.next()? == "arn").then_some(())?;
    let partition = it.next()?;
    let service = it.next()?;
    let _region = it.next()?;
    let account = it.next()?;
    let resource = it.next()?;
    Some(ArnParts {
        partition,
        service,
        account,
        resource,
    })
}

/// The statement ids of the queue policy that `setup` owns; other statements are kept.
const POLICY_SIDS: [&str; 2] = ["s3-import-bucket", "s3-import-rule"];

/// The queue policy `setup` wants: the statements of `current` that are not its own, then its
/// own statement for the chosen way of announcing.
fn queue_policy(
    current: Option<&serde_json::Value>,
    queue_arn: &str,
    bucket_arn: &str,
    account: &str,
    announce: Announce<'_>,
) -> serde_json::Value {
    use serde_json::json;
    let mut statements: Vec<serde_json::Value> = current
        .and_then(|p| p.get("Statement"))
        .and_then(|s| s.as_array())
        .map(|s| {
            s.iter()
                .filter(|st| {
                    !st.get("Sid")
                        .and_then(|v| v.as_str())
                        .is_some_and(|sid| POLICY_SIDS.contains(&sid))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    statements.push(match announce {
        Announce::Queue => json!({
            "Sid": POLICY_SIDS[0],
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {
                "ArnLike": {"aws:SourceArn": bucket_arn},
                "StringEquals": {"aws:SourceAccount": account},
            },
        }),
        Announce::EventBridge { rule_arn } => json!({
            "Sid": POLICY_SIDS[1],
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {
                "ArnEquals": {"aws:SourceArn": rule_arn},
                "StringEquals": {
                    "aws:SourceAccount": arn_parts(rule_arn).map_or(account, |p| p.account)
                },
            },
        }),
    });
    let mut policy = current
        .cloned()
        .unwrap_or_else(|| json!({"Version": "2012-10-17"}));
    policy["Statement"] = serde_json::Value::Array(statements);
    policy
}

/// Sets the queue's policy to what [`queue_policy`] wants, unless it is that already.
async fn ensure_queue_policy(
    clients: &Clients,
    url: &str,
    queue_arn: &str,
    bucket_arn: &str,
    account: &str,
    announce: Announce<'_>,
) -> Result<(), SetupError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let got = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::Policy)
        .send()
        .await
        .map_err(failed(format!("reading the policy of {url}")))?;
    let current: Option<serde_json::Value> = got
        .attributes()
        .and_then(|m| m.get(&QueueAttributeName::Policy))
        .and_then(|p| serde_json::from_str(p).ok());
    let wanted = queue_policy(current.as_ref(), queue_arn, bucket_arn, account, announce);
    if current.as_ref() == Some(&wanted) {
        return Ok(());
    }
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(url)
        .attributes(QueueAttributeName::Policy, wanted.to_string())
        .send()
        .await
        .map_err(failed(format!("setting the policy of {url}")))?;
    Ok(())
}

/// One destination of a bucket's notification configuration, as setup compares them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Destination {
    /// `queue`, `topic` or `Lambda function`.
    kind: &'static str,
    id: Option<String>,
    arn: String,
    events: Vec<String>,
    prefix: String,
    suffix: String,
}

impl Destination {
    fn of(
        kind: &'static str,
        id: Option<&str>,
        arn: &str,
        events: &[aws_sdk_s3::types::Event],
        filter: Option<&aws_sdk_s3::types::NotificationConfigurationFilter>,
    ) -> Destination {
        let rule = |name: &str| {
            filter
                .and_then(|f| f.key())
                .map(|k| k.filter_rules())
                .unwrap_or_default()
                .iter()
                .find(|r| {
                    r.name()
                        .is_some_and(|n| n.as_str().eq_ignore_ascii_case(name))
                })
                .and_then(|r| r.value())
                .unwrap_or_default()
                .to_string()
        };
        Destination {
            kind,
            id: id.map(str::to_string),
            arn: arn.to_string(),
            events: events.iter().map(|e| e.as_str().to_string()).collect(),
            prefix: rule("prefix"),
            suffix: rule("suffix"),
        }
    }

    /// Whether S3 would deliver one object's creation to both: an event type in common and
    /// keys that can match both filters.
    fn overlaps(&self, other: &Destination) -> bool {
        let created = |e: &String| e == "s3:ObjectCreated:*" || e.starts_with("s3:ObjectCreated:");
        let events = self.events.iter().any(|a| {
            other.events.iter().any(|b| {
                a == b || (created(a) && created(b) && (a.ends_with(":*") || b.ends_with(":*")))
            })
        });
        let related = |a: &str, b: &str, f: fn(&str, &str) -> bool| f(a, b) || f(b, a);
        events
            && related(&self.prefix, &other.prefix, |a, b| a.starts_with(b))
            && related(&self.suffix, &other.suffix, |a, b| a.ends_with(b))
    }

    fn describe(&self) -> String {
        let mut keys = String::new();
        if !self.prefix.is_empty() {
            keys.push_str(&format!(" under prefix `{}`", self.prefix));
        }
        if !self.suffix.is_empty() {
            keys.push_str(&format!(" with suffix `{}`", self.suffix));
        }
        if keys.is_empty() {
            keys.push_str(" for every key");
        }
        format!(
            "configuration `{}` sends {}{keys} to the {} {}",
            self.id.as_deref().unwrap_or("(no id)"),
            self.events.join(", "),
            self.kind,
            self.arn
        )
    }
}

/// The first of `others` that S3 would refuse beside `ours` (same events, overlapping keys,
/// another destination), described.
fn clash(ours: &Destination, others: &[Destination]) -> Option<String> {
    others
        .iter()
        .find(|d| d.arn != ours.arn && d.overlaps(ours))
        .map(Destination::describe)
}

/// Adds the queue's notification (or EventBridge delivery) to the bucket's configuration,
/// keeping every other configuration; refuses a clash; writes nothing when all is in place.
/// Long on purpose: read, compare and write back must stay one visible sequence.
async fn ensure_notification(
    clients: &Clients,
    bucket: &str,
    queue_arn: &str,
    queue: &str,
    prefix: &str,
    announce: Announce<'_>,
) -> Result<(), SetupError> {
    use aws_sdk_s3::types::{
        Event, EventBridgeConfiguration, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let current = clients
        .s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
        .map_err(failed(format!(
            "reading the notification configuration of {bucket}"
        )))?;
    let id = format!("s3-import-{queue}");
    let ours = Destination {
        kind: "queue",
        id: Some(id.clone()),
        arn: queue_arn.to_string(),
        events: vec![Event::S3ObjectCreated.as_str().to_string()],
        prefix: prefix.to_string(),
        suffix: String::new(),
    };
    let mut others = Vec::new();
    let mut mine = Vec::new();
    for q in current.queue_configurations() {
        let d = Destination::of("queue", q.id(), q.queue_arn(), q.events(), q.filter());
        if d.arn == queue_arn {
            mine.push(d);
        } else {
            others.push(d);
        }
    }
    for t in current.topic_configurations() {
        others.push(Destination::of(
            "topic",
            t.id(),
            t.topic_arn(),
            t.events(),
            t.filter(),
        ));
    }
    for l in current.lambda_function_configurations() {
        others.push(Destination::of(
            "Lambda function",
            l.id(),
            l.lambda_function_arn(),
            l.events(),
            l.filter(),
        ));
    }
    let eventbridge = current.event_bridge_configuration().is_some();
    let in_place = match announce {
        Announce::Queue => mine.len() == 1 && mine[0] == ours,
        Announce::EventBridge { .. } => mine.is_empty() && eventbridge,
    };
    if in_place {
        return Ok(());
    }
    if announce == Announce::Queue {
        if let Some(other) = clash(&ours, &others) {
            return Err(SetupError::Refused(format!(
                "bucket {bucket}: {other}, which overlaps this queue's notification \
                 (s3:ObjectCreated:* under prefix `{prefix}`); S3 sends an event to one \
                 destination only. Nothing was changed. Narrow or remove that configuration, or \
                 announce through EventBridge instead (--eventbridge-rule-arn)"
            )));
        }
    }
    // Everything else as it was, this queue's own configuration as wanted.
    let mut config = NotificationConfiguration::builder()
        .set_topic_configurations(Some(current.topic_configurations().to_vec()))
        .set_lambda_function_configurations(Some(
            current.lambda_function_configurations().to_vec(),
        ));
    let mut queues: Vec<QueueConfiguration> = current
        .queue_configurations()
        .iter()
        .filter(|q| q.queue_arn() != queue_arn)
        .cloned()
        .collect();
    match announce {
        Announce::Queue => {
            let mut qc = QueueConfiguration::builder()
                .id(id)
                .queue_arn(queue_arn)
                .events(Event::S3ObjectCreated);
            if !prefix.is_empty() {
                qc = qc.filter(
                    NotificationConfigurationFilter::builder()
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
                        .build(),
                );
            }
            queues.push(
                qc.build()
                    .map_err(failed("building the queue notification"))?,
            );
            if let Some(e) = current.event_bridge_configuration() {
                config = config.event_bridge_configuration(e.clone());
            }
        }
        Announce::EventBridge { .. } => {
            config = config.event_bridge_configuration(EventBridgeConfiguration::builder().build());
        }
    }
    clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(config.set_queue_configurations(Some(queues)).build())
        .send()
        .await
        .map_err(failed(format!("notification on {bucket}")))?;
    Ok(())
}

#[cfg(test)]
mod tests;
