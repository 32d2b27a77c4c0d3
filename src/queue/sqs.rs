//! The SQS adapter: continuation messages, and receiving and settling batches for the worker
//! that polls a queue and runs the same handler as the Lambda function.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Enqueue, QueueError};
use crate::notify::{Message, QueueMessage, Receipt};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use futures_util::StreamExt;

/// An SQS error in its own words.
fn service<E: std::error::Error + 'static>(e: E) -> QueueError {
    QueueError::Service(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

/// SQS's longest visibility timeout (12 hours).
const MAX_VISIBILITY_SECS: u64 = 43_200;
/// Messages per SendMessageBatch (SQS's limit).
const PER_BATCH: usize = 10;
/// SendMessageBatch requests in flight at once.
const BATCHES_IN_FLIGHT: usize = 8;
/// Attempts for the entries of a batch that failed on SQS's side.
const BATCH_ATTEMPTS: u32 = 3;

/// A queue that continuation messages go to (`None`: no queue, the notice is retried).
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: Option<String>,
    /// Queue URLs by the ARN Lambda names them with.
    urls: Arc<Mutex<HashMap<String, String>>>,
    /// Requests made, for the scan's figures.
    requests: Arc<AtomicU64>,
}

impl SqsQueue {
    pub fn new(client: Client, url: Option<String>) -> Self {
        SqsQueue {
            client,
            url,
            urls: Arc::default(),
            requests: Arc::default(),
        }
    }

    /// Sends up to 10 bodies in one SendMessageBatch, again for the entries SQS failed on its
    /// side; one answer per body.
    async fn send_batch(&self, url: &str, bodies: &[String]) -> Vec<Result<(), QueueError>> {
        let mut out: Vec<Result<(), QueueError>> =
            vec![Err(QueueError::Service("not sent".into())); bodies.len()];
        let mut todo: Vec<usize> = (0..bodies.len()).collect();
        for attempt in 0..BATCH_ATTEMPTS {
            if todo.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            let entries: Result<Vec<_>, _> = todo
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&bodies[i])
                        .build()
                })
                .collect();
            let entries = match entries {
                Ok(e) => e,
                Err(e) => {
                    for &i in &todo {
                        out[i] = Err(QueueError::Service(e.to_string()));
                    }
                    return out;
                }
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await;
            let sent = match sent {
                Ok(sent) => sent,
                Err(e) => {
                    let e = service(e);
                    for &i in &todo {
                        out[i] = Err(e.clone());
                    }
                    continue;
                }
            };
            for ok in sent.successful() {
                if let Ok(i) = ok.id().parse::<usize>() {
                    out[i] = Ok(());
                }
            }
            let mut again = Vec::new();
            for failed in sent.failed() {
                let Ok(i) = failed.id().parse::<usize>() else {
                    continue;
                };
                out[i] = Err(QueueError::Service(format!(
                    "{}: {}",
                    failed.code(),
                    failed.message().unwrap_or_default()
                )));
                if !failed.sender_fault() {
                    again.push(i);
                }
            }
            todo = again;
        }
        out
    }

    /// The URL of the queue a message came from: our worker names it by URL, Lambda by ARN
    /// (`arn:aws:sqs:<region>:<account>:<name>`).
    async fn url_of(&self, queue: &str) -> Result<String, QueueError> {
        if queue.starts_with("http://") || queue.starts_with("https://") {
            return Ok(queue.to_string());
        }
        if let Some(url) = self.urls.lock().ok().and_then(|m| m.get(queue).cloned()) {
            return Ok(url);
        }
        let parts: Vec<&str> = queue.split(':').collect();
        let [_, _, "sqs", _, account, name] = parts[..] else {
            return Err(QueueError::Service(format!(
                "not an SQS queue ARN: {queue}"
            )));
        };
        // Usually the queue continuations go to: no request needed.
        if let Some(own) = self
            .url
            .as_ref()
            .filter(|u| u.ends_with(&format!("/{account}/{name}")))
        {
            return Ok(own.clone());
        }
        let url = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(service)?
            .queue_url
            .ok_or_else(|| QueueError::Service(format!("no URL for {queue}")))?;
        if let Ok(mut m) = self.urls.lock() {
            m.insert(queue.to_string(), url.clone());
        }
        Ok(url)
    }
}

impl Enqueue for SqsQueue {
    async fn enqueue(&self, message: QueueMessage) -> Result<(), QueueError> {
        let Some(url) = &self.url else {
            return Err(QueueError::NotConfigured);
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.client
            .send_message()
            .queue_url(url)
            .message_body(message.body())
            .send()
            .await
            .map(|_| ())
            .map_err(service)
    }

    async fn enqueue_many(&self, messages: Vec<QueueMessage>) -> Vec<Result<(), QueueError>> {
        let Some(url) = &self.url else {
            return vec![Err(QueueError::NotConfigured); messages.len()];
        };
        let bodies: Vec<String> = messages.iter().map(QueueMessage::body).collect();
        let chunks: Vec<Vec<String>> = bodies.chunks(PER_BATCH).map(<[String]>::to_vec).collect();
        let answers: Vec<Vec<Result<(), QueueError>>> = futures_util::stream::iter(chunks)
            .map(|chunk: Vec<String>| async move { self.send_batch(url, &chunk).await })
            .buffered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        answers.into_iter().flatten().collect()
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn hand_back(&self, receipt: &Receipt, after: Duration) -> Result<(), QueueError> {
        let url = self.url_of(&receipt.queue).await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(&receipt.handle)
            // Zero makes the message visible at once (SQS allows 0 to 43,200 s).
            .visibility_timeout(after.as_secs().min(MAX_VISIBILITY_SECS) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(service)
    }
}

/// Receives up to 10 messages, waiting up to `wait_secs` for the first: each read into its
/// notices, with its id and receipt (the queue named by its URL).
pub async fn receive(
    client: &Client,
    url: &str,
    wait_secs: i32,
) -> Result<Vec<Message>, QueueError> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_secs)
        .send()
        .await
        .map_err(service)?;
    Ok(out
        .messages()
        .iter()
        .filter_map(|m| {
            let (id, handle) = (m.message_id()?, m.receipt_handle()?);
            Some(Message {
                message_id: Some(id.to_string()),
                receipt: Some(Receipt {
                    queue: url.to_string(),
                    handle: handle.to_string(),
                }),
                notices: crate::notify::body_notices(m.body().unwrap_or("")),
            })
        })
        .collect())
}

/// Deletes the messages that are done; the failed ones (message id → when) come back then.
pub async fn settle(
    client: &Client,
    url: &str,
    handles: &[(String, String)],
    failed: &HashMap<String, Duration>,
) -> Result<(), QueueError> {
    for (id, handle) in handles {
        let result = match failed.get(id) {
            Some(after) => client
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(handle)
                .visibility_timeout(after.as_secs().min(MAX_VISIBILITY_SECS) as i32)
                .send()
                .await
                .map(|_| ())
                .map_err(service),
            None => client
                .delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send()
                .await
                .map(|_| ())
                .map_err(service),
        };
        result?;
    }
    Ok(())
}

/// Keeps a batch's messages invisible while the worker handles them: every `every`, their
/// visibility is set to three times that. Ends when the returned task is aborted.
pub fn keep_invisible(
    client: Client,
    url: String,
    handles: Vec<(String, String)>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            for (_, handle) in &handles {
                let extended = client
                    .change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(handle)
                    .visibility_timeout((every.as_secs() * 3).clamp(1, MAX_VISIBILITY_SECS) as i32)
                    .send()
                    .await;
                if let Err(e) = extended {
                    let e = aws_sdk_sqs::error::DisplayErrorContext(e);
                    tracing::warn!(error = %e, "message visibility not extended");
                }
            }
        }
    })
}
