//! The SQS adapter: continuation messages, and receiving and settling batches for the worker
//! that polls a queue and runs the same handler as the Lambda function.

use aws_sdk_sqs::Client;
use serde_json::{json, Value};

use super::Enqueue;

/// A queue that continuation messages go to (`None`: no queue, the notice is retried).
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: Option<String>,
}

impl SqsQueue {
    pub fn new(client: Client, url: Option<String>) -> Self {
        SqsQueue { client, url }
    }
}

impl Enqueue for SqsQueue {
    async fn enqueue(&self, body: String) -> Result<(), String> {
        let Some(url) = &self.url else {
            return Err("no continuation queue configured (S3I_QUEUE_URL)".into());
        };
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
    }
}

/// A received batch, shaped as Lambda's SQS event so that one handler serves both.
pub struct Received {
    pub event: Value,
    /// (message id, receipt handle)
    pub handles: Vec<(String, String)>,
}

/// Receives up to 10 messages, waiting up to `wait_secs` for the first.
pub async fn receive(client: &Client, url: &str, wait_secs: i32) -> Result<Received, String> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
        )
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let mut records = Vec::new();
    let mut handles = Vec::new();
    for m in out.messages() {
        let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
            continue;
        };
        let count = m
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            })
            .cloned()
            .unwrap_or_else(|| "1".into());
        records.push(json!({
            "messageId": id, "receiptHandle": handle, "body": m.body().unwrap_or(""),
            "attributes": {"ApproximateReceiveCount": count},
            "eventSource": "aws:sqs", "eventSourceARN": url,
        }));
        handles.push((id.to_string(), handle.to_string()));
    }
    Ok(Received {
        event: json!({ "Records": records }),
        handles,
    })
}

/// Deletes the messages that are done; the failed ones come back after `retry_after_secs`.
pub async fn settle(
    client: &Client,
    url: &str,
    handles: &[(String, String)],
    failed: &[String],
    retry_after_secs: i32,
) -> Result<(), String> {
    for (id, handle) in handles {
        let result = if failed.contains(id) {
            client
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(handle)
                .visibility_timeout(retry_after_secs)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
        } else {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
        };
        result?;
    }
    Ok(())
}
