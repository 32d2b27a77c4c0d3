//! The queue port: where continuation messages go (an object that needs another invocation,
//! a scan that queues what it found). The SQS adapter and the local worker are in `sqs.rs`.

pub mod sqs;

use std::future::Future;
use std::time::Duration;

use crate::notify::Receipt;

/// Where continuation messages go, and how a received message is handed back for later.
pub trait Enqueue: Send + Sync {
    fn enqueue(&self, body: String) -> impl Future<Output = Result<(), String>> + Send;
    /// Makes a received message visible again only after `after` (SQS: its visibility
    /// timeout), so that it comes back by itself then, without waiting out the queue's own.
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
