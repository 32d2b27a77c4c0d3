//! The queue port: where continuation messages go (an object that needs another invocation,
//! a scan that queues what it found). The SQS adapter and the local worker are in `sqs.rs`.

pub mod sqs;

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use crate::notify::Receipt;

/// Where continuation messages go, and how a received message is handed back for later.
pub trait Enqueue: Send + Sync {
    fn enqueue(&self, body: String) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends many messages (SQS: SendMessageBatch, 10 a request, several requests in flight);
    /// one answer per body, in order.
    fn enqueue_many(
        &self,
        bodies: Vec<String>,
    ) -> impl Future<Output = Vec<Result<(), String>>> + Send {
        async move {
            let mut out = Vec::with_capacity(bodies.len());
            for b in bodies {
                out.push(self.enqueue(b).await);
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
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// No queue: an unfinished object's message is retried by its source instead.
pub struct NoQueue;

impl Enqueue for NoQueue {
    async fn enqueue(&self, _body: String) -> Result<(), String> {
        Err("no continuation queue configured (S3I_QUEUE_URL)".into())
    }

    async fn hand_back(&self, _receipt: &Receipt, _after: Duration) -> Result<(), String> {
        Err("no queue client".into())
    }
}

/// A queue in memory, for tests and benchmarks: what was sent and what was handed back.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<String>>,
    pub handed_back: Mutex<Vec<(Receipt, Duration)>>,
}

impl MemoryQueue {
    /// Takes the messages sent so far.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Enqueue for MemoryQueue {
    async fn enqueue(&self, body: String) -> Result<(), String> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(body);
        Ok(())
    }

    async fn hand_back(&self, receipt: &Receipt, after: Duration) -> Result<(), String> {
        self.handed_back
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((receipt.clone(), after));
        Ok(())
    }
}
