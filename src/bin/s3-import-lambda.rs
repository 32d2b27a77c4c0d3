//! The Lambda entry: reads and checks the settings and builds the SDK clients once per cold
//! start, then serves every event (SQS, direct S3, EventBridge, scan messages) through the
//! Lambda edge (`s3_import::invoke`).

use std::sync::Arc;

use lambda_runtime::Error;

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
    s3_import::invoke::serve(pipeline).await
}
