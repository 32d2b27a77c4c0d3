//! The queue port: where continuation messages go (an object that needs another invocation,
//! a scan that queues what it found). The SQS adapter and the local worker are in `sqs.rs`.

pub mod sqs;

use std::future::Future;

/// Where continuation messages go.
pub trait Enqueue: Send + Sync {
    fn enqueue(&self, body: String) -> impl Future<Output = Result<(), String>> + Send;
}

/// No queue: an unfinished object's message is retried by its source instead.
pub struct NoQueue;

impl Enqueue for NoQueue {
    async fn enqueue(&self, _body: String) -> Result<(), String> {
        Err("no continuation queue configured (S3I_QUEUE_URL)".into())
    }
}
