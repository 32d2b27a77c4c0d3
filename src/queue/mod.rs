//! The queue port: where continuation messages go (an object that needs another invocation,
//! a scan that queues what it found). The SQS adapter and the local worker are in `sqs.rs`.

pub mod sqs;

use std::future::Future;
#[cfg(any(test, feature = "test-support"))]
use std::sync::Mutex;
use std::time::Duration;

use crate::notify::{QueueMessage, Receipt};

/// Why the queue did not take a message, or did not hand one back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("no continuation queue configured (S3I_QUEUE_URL)")]
    NotConfigured,
    /// The queue's service refused or could not be reached (its words).
    #[error("{0}")]
    Service(String),
}

/// Where continuation messages go, and how a received message is handed back for later.
pub trait Enqueue: Send + Sync {
    fn enqueue(&self, message: QueueMessage)
        -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Sends many messages (SQS: SendMessageBatch, 10 a request, several requests in flight);
    /// one answer per message, in order.
    fn enqueue_many(
        &self,
        messages: Vec<QueueMessage>,
    ) -> impl Future<Output = Vec<Result<(), QueueError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(messages.len());
            for m in messages {
                out.push(self.enqueue(m).await);
            }
            out
        }
    }
    /// Requests made to the queue so far (for the scan's figures).
    fn requests(&self) -> u64 {
        0
    }
    /// Makes a received message visible again only after `after` (SQS: its visibility
    /// timeout; zero makes it visible at once), so that it comes back by itself then, without
    /// waiting out the queue's own.
    fn hand_back(
        &self,
        receipt: &Receipt,
        after: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// No queue: an unfinished object's message is retried by its source instead.
#[cfg(any(test, feature = "test-support"))]
pub struct NoQueue;

#[cfg(any(test, feature = "test-support"))]
impl Enqueue for NoQueue {
    async fn enqueue(&self, _message: QueueMessage) -> Result<(), QueueError> {
        Err(QueueError::NotConfigured)
    }

    async fn hand_back(&self, _receipt: &Receipt, _after: Duration) -> Result<(), QueueError> {
        Err(QueueError::NotConfigured)
    }
}

/// A queue in memory, for tests and benchmarks: the bodies sent (as SQS would carry them)
/// and what was handed back.
#[derive(Default)]
#[cfg(any(test, feature = "test-support"))]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<String>>,
    pub handed_back: Mutex<Vec<(Receipt, Duration)>>,
}

#[cfg(any(test, feature = "test-support"))]
impl MemoryQueue {
    /// Takes the messages sent so far.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Enqueue for MemoryQueue {
    async fn enqueue(&self, message: QueueMessage) -> Result<(), QueueError> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.body());
        Ok(())
    }

    async fn hand_back(&self, receipt: &Receipt, after: Duration) -> Result<(), QueueError> {
        self.handed_back
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((receipt.clone(), after));
        Ok(())
    }
}
