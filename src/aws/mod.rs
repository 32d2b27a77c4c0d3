//! Wiring for AWS (or a local stack): the SDK clients built once, the settings with the API
//! key from Secrets Manager, the pipeline over the DynamoDB, S3 and SQS adapters and the queue
//! worker; `setup` of tables, bucket and queue is in `setup.rs`. The same code runs against AWS
//! and a local stack: only `AWS_ENDPOINT_URL` (and dummy credentials) differ.

mod setup;

pub use setup::{ensure_table, rule_arn_problem, setup, Announce};

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// How often the worker extends the visibility of the messages it is working on.
const VISIBILITY_HEARTBEAT: Duration = Duration::from_secs(20);
/// The visibility timeout of queues made by `setup`: a worker's longest run and its lease
/// margin (the defaults of `S3I_MAX_RUN_SECS` and `S3I_LEASE_MARGIN_SECS`), so that a notice
/// does not come back while its import may still be running.
const QUEUE_VISIBILITY_SECS: &str = "900";

/// The SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An S3 client; path-style addressing when an endpoint is set (local stacks serve buckets
/// under the path, not as host names).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let local = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    // The decoder pushes back on the download while the sender works, so a body may go
    // unread for a while: allow that (a broken connection resumes with a ranged GET).
    let stalled = aws_sdk_s3::config::StalledStreamProtectionConfig::enabled()
        .grace_period(std::time::Duration::from_secs(120))
        .build();
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(local)
        .stalled_stream_protection(stalled)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The SDK clients, built once per process.
#[derive(Clone)]
pub struct Clients {
    pub config: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    /// Reads the source bucket: `s3`, or a client on the role of `S3I_SOURCE_ROLE_ARN`.
    pub source_s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    pub async fn from_env() -> Clients {
        Clients::from_config(sdk_config().await).await
    }

    /// The clients of `role` (`s3-import check --role-arn`: the function's own role), assumed
    /// with these clients' credentials; the source is read as in `from_env`.
    pub async fn as_role(&self, role: &str, external_id: Option<&str>) -> Clients {
        Clients::from_config(assumed_role_config(&self.config, role, external_id).await).await
    }

    async fn from_config(config: aws_config::SdkConfig) -> Clients {
        let s3 = s3_client(&config);
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let source_s3 = match env("S3I_SOURCE_ROLE_ARN") {
            None => s3.clone(),
            Some(role) => s3_client(
                &assumed_role_config(&config, &role, env("S3I_SOURCE_EXTERNAL_ID").as_deref())
                    .await,
            ),
        };
        Clients {
            s3,
            source_s3,
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            config,
        }
    }
}

/// The configuration with credentials of `role` (in the bucket owner's account for
/// `S3I_SOURCE_ROLE_ARN`), assumed with `external_id` (`S3I_SOURCE_EXTERNAL_ID`, the
/// confused-deputy guard of the owner's trust policy) and refreshed by the SDK before they
/// expire.
pub async fn assumed_role_config(
    config: &aws_config::SdkConfig,
    role: &str,
    external_id: Option<&str>,
) -> aws_config::SdkConfig {
    let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("s3-import")
        .configure(config);
    if let Some(id) = external_id {
        provider = provider.external_id(id);
    }
    let provider = provider.build().await;
    config
        .to_builder()
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(provider))
        .build()
}

/// Why the API key could not be read from Secrets Manager (`S3I_API_KEY_SECRET`).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("S3I_API_KEY_SECRET ({secret}): {error}")]
    Unreadable { secret: String, error: String },
    #[error("S3I_API_KEY_SECRET ({0}): the secret has no string value")]
    NotText(String),
    #[error("S3I_API_KEY_SECRET ({0}): JSON secret without `api_key`")]
    NoApiKey(String),
}

/// The API key from Secrets Manager: the secret's string, or its `api_key` field when the
/// secret is JSON.
pub async fn api_key_from_secret(
    config: &aws_config::SdkConfig,
    secret: &str,
) -> Result<String, SecretError> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let out = client
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| SecretError::Unreadable {
            secret: secret.to_string(),
            error: sdk_text(e),
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| SecretError::NotText(secret.to_string()))?;
    Ok(match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => m
            .get("api_key")
            .and_then(|v| v.as_str())
            .ok_or_else(|| SecretError::NoApiKey(secret.to_string()))?
            .to_string(),
        _ => text.trim().to_string(),
    })
}

/// The settings from the environment; the API key from `AMPLITUDE_API_KEY` or, when that is
/// unset, from the Secrets Manager secret `S3I_API_KEY_SECRET` (read once, at start).
pub async fn settings_from_env(
    clients: &Clients,
) -> Result<crate::settings::Settings, Vec<String>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut key = env("AMPLITUDE_API_KEY");
    if key.is_none() {
        if let Some(secret) = env("S3I_API_KEY_SECRET") {
            key = Some(
                api_key_from_secret(&clients.config, &secret)
                    .await
                    .map_err(|e| vec![e.to_string()])?,
            );
        }
    }
    crate::settings::Settings::from_lookup(&|k| {
        if k == "AMPLITUDE_API_KEY" {
            key.clone()
        } else {
            env(k)
        }
    })
}

/// The importer on AWS services (or a local stack).
pub type AwsPipeline = crate::pipeline::Pipeline<(
    crate::claims::dynamo::DynamoClaims,
    crate::dedupe::dynamo::DynamoDedupe,
    crate::source::s3::S3Source,
    crate::queue::sqs::SqsQueue,
)>;

/// The storage port over S3: own objects with `s3`, source objects with `source_s3`, each
/// source bucket read in its region (`S3I_SOURCE_REGION`, else found per bucket).
pub fn source(clients: &Clients) -> crate::source::s3::S3Source {
    crate::source::s3::S3Source::new(clients.s3.clone())
        .with_reader(clients.source_s3.clone())
        .with_source_region(std::env::var("S3I_SOURCE_REGION").ok())
}

pub fn pipeline(clients: &Clients, settings: crate::settings::Settings) -> AwsPipeline {
    let claims =
        crate::claims::dynamo::DynamoClaims::new(clients.dynamodb.clone(), &settings.claims_table);
    let dedupe = settings
        .dedupe_table
        .as_ref()
        .map(|t| crate::dedupe::dynamo::DynamoDedupe::new(clients.dynamodb.clone(), t));
    let queue = crate::queue::sqs::SqsQueue::new(clients.sqs.clone(), settings.queue_url.clone());
    let source = source(clients);
    let ports = crate::pipeline::Ports {
        claims,
        dedupe,
        source,
        queue,
        http: reqwest::Client::new(),
        clock: crate::pipeline::Clock::system(),
    };
    crate::pipeline::Pipeline::new(ports, settings)
}

pub(crate) fn sdk_text<E: std::error::Error + 'static>(e: E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
}

/// Polls `url` and runs each batch through the handler, like Lambda's SQS trigger (scan
/// messages included): finished messages are deleted, the others come back after their own
/// time (zero: at once) or `retry_after`. Stops after
/// `idle_exit` with no message (if set).
pub async fn work_queue(
    pipeline: &AwsPipeline,
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    idle_exit: Option<Duration>,
    retry_after: Duration,
    mut report: impl FnMut(&str),
) -> Result<u64, crate::queue::QueueError> {
    let mut handled = 0u64;
    let mut idle_since = Instant::now();
    let mut batch = 0u64;
    loop {
        let wait = idle_exit.map_or(10, |d| d.as_secs().clamp(1, 10) as i32);
        let received = crate::queue::sqs::receive(sqs, url, wait).await?;
        if received.is_empty() {
            if idle_exit.is_some_and(|d| idle_since.elapsed() >= d) {
                return Ok(handled);
            }
            continue;
        }
        batch += 1;
        let deadline = Instant::now() + pipeline.settings.max_run;
        let handles: Vec<(String, String)> = received
            .iter()
            .filter_map(|m| Some((m.message_id.clone()?, m.receipt.as_ref()?.handle.clone())))
            .collect();
        let heartbeat = crate::queue::sqs::keep_invisible(
            sqs.clone(),
            url.to_string(),
            handles.clone(),
            VISIBILITY_HEARTBEAT,
        );
        let result = crate::invoke::batch::handle(
            pipeline,
            received,
            deadline,
            &format!("worker-{}-{batch}", std::process::id()),
        )
        .await;
        heartbeat.abort();
        for m in &result.messages {
            for (obj, outcome) in &m.objects {
                report(&crate::ops::render_outcome(obj, outcome));
            }
            for i in &m.ignored {
                report(&format!("ignored: {i:?}\n"));
            }
            if let Some(e) = &m.error {
                report(&format!("unreadable message {:?}: {e}\n", m.message_id));
            }
        }
        let failed: HashMap<String, Duration> = result
            .messages
            .iter()
            .filter(|m| m.retry)
            .filter_map(|m| Some((m.message_id.clone()?, m.retry_after.unwrap_or(retry_after))))
            .collect();
        crate::queue::sqs::settle(sqs, url, &handles, &failed).await?;
        handled += handles.len() as u64;
        idle_since = Instant::now();
    }
}
