//! The Lambda entry: reads and checks the settings and builds the SDK clients once per cold
//! start, then hands every event (SQS, direct S3, EventBridge, scan messages) to the pipeline.
//! SQS batches answer with `batchItemFailures` naming exactly the messages to retry; other
//! event sources get an error when something must be retried, so that Lambda retries them.
//! A scheduled `{"s3import-scan": {"bucket", "prefix"}}` event runs the scan mode.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("S3I_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();
    let clients = s3_import::aws::Clients::from_env().await;
    let settings = match s3_import::aws::settings_from_env(&clients).await {
        Ok(s) => s,
        Err(problems) => {
            let text = problems.join("; ");
            tracing::error!(problems = %text, "settings are not usable");
            return Err(format!("settings are not usable: {text}").into());
        }
    };
    let pipeline = Arc::new(s3_import::aws::pipeline(&clients, settings));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let pipeline = pipeline.clone();
        async move {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let left = s3_import::pipeline::time_left(event.context.deadline, now_ms);
            let deadline = Instant::now() + left;
            tracing::info!(
                remaining_ms = left.as_millis() as u64,
                deadline_ms = event.context.deadline,
                now_ms,
                "invocation"
            );
            // Metrics go to stdout as one EMF line; CloudWatch Logs turns it into metrics.
            pipeline
                .invoke(
                    &event.payload,
                    deadline,
                    &event.context.request_id,
                    |line| println!("{line}"),
                )
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
