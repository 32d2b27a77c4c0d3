//! The Lambda edge: an invocation's event → notices → imports → the answer Lambda expects
//! (SQS partial batch response), with the deadline read from the runtime's context and one
//! EMF metrics line per invocation. The only module that knows Lambda's shapes.

pub mod batch;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::notify::{messages, Message, Notice, ScanRequest};
use crate::ops::{ScanError, ScanJob, ScanSummary};
use crate::pipeline::{Adapters, EventResult, Pipeline};
use crate::queue::Enqueue;

/// Why an invocation answers with an error (Lambda then retries the invocation).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// A directly invoked scan stopped (its summary says where).
    #[error("{0}")]
    Scan(#[from] ScanError),
    /// A non-SQS event whose objects must be retried: which, and why.
    #[error("to be retried: {0}")]
    Retry(String),
    /// The answer could not be written.
    #[error("{0}")]
    Answer(String),
}

/// One Lambda invocation: a scheduled scan (`{"s3import-scan": {"bucket", "prefix"}}`, which
/// queues what it finds when `S3I_QUEUE_URL` is set, and leaves a scan message on the queue to
/// go on after its time budget) or any notification shape, scan messages among them. `emit`
/// receives the invocation's metrics line (EMF).
pub async fn invoke<A: Adapters>(
    pipeline: &Pipeline<A>,
    payload: &Value,
    deadline: Instant,
    request_id: &str,
    emit: impl FnOnce(String),
) -> Result<Value, InvokeError> {
    let messages = messages(payload);
    // A scan invoked directly (a schedule) answers with its summary.
    if let [Message {
        message_id: None,
        notices: Ok(notices),
        ..
    }] = &messages[..]
    {
        if let [Notice::Scan(scan)] = &notices[..] {
            let summary = run_scan(pipeline, scan, deadline, request_id).await?;
            return Ok(json!({"scan": summary.to_string(), "summary": summary}));
        }
    }
    let result = batch::handle(pipeline, messages, deadline, request_id).await;
    hand_back(&pipeline.queue, &result).await;
    emit(metrics::emf_line(
        &pipeline.settings.source,
        &result,
        pipeline.clock.now_ms(),
    ));
    lambda_response(payload, &result)
}

/// An invocation event (any shape `notify` reads) handled until `deadline`: its messages, read,
/// as one batch.
pub async fn handle<A: Adapters>(
    pipeline: &Pipeline<A>,
    event: &Value,
    deadline: Instant,
    request_id: &str,
) -> EventResult {
    batch::handle(pipeline, messages(event), deadline, request_id).await
}

/// The scan a message asks for (its prefix, else `S3I_PREFIX`), run until `deadline`.
async fn run_scan<A: Adapters>(
    pipeline: &Pipeline<A>,
    scan: &ScanRequest,
    deadline: Instant,
    request_id: &str,
) -> Result<ScanSummary, ScanError> {
    let job = ScanJob {
        bucket: scan.bucket.clone(),
        prefix: scan
            .prefix
            .clone()
            .unwrap_or_else(|| pipeline.settings.prefix.clone()),
        start_after: scan.start_after.clone(),
        enqueue: pipeline.settings.queue_url.is_some(),
        deadline: Some(deadline),
        pass: scan.pass,
    };
    let summary = pipeline
        .scan_from(
            &job,
            request_id,
            |line| tracing::info!(target: "s3_import::scan", "{}", line.trim_end()),
        )
        .await?;
    tracing::info!(summary = %summary, "scan done");
    Ok(summary)
}

/// Serves Lambda's runtime API until the process ends: each event runs until its deadline
/// (read from the invocation's context), its metrics line goes to stdout (EMF).
pub async fn serve<A: Adapters>(pipeline: Arc<Pipeline<A>>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let pipeline = pipeline.clone();
        async move {
            let now_ms = pipeline.clock.now_ms().max(0) as u64;
            let left = time_left(event.context.deadline, now_ms);
            tracing::info!(
                remaining_ms = left.as_millis() as u64,
                deadline_ms = event.context.deadline,
                now_ms,
                "invocation"
            );
            let deadline = Instant::now() + left;
            invoke(
                &pipeline,
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

/// Messages that are to come back at a time of their own (the end of another invocation's
/// lease) get it as their visibility; Lambda leaves a failed message's visibility alone.
pub async fn hand_back<Q: Enqueue>(queue: &Q, result: &EventResult) {
    for m in &result.messages {
        let (Some(after), Some(receipt)) = (m.retry_after, &m.receipt) else {
            continue;
        };
        if let Err(e) = queue.hand_back(receipt, after).await {
            tracing::warn!(error = %e, "message not handed back; it returns after the queue's visibility timeout");
        }
    }
}

/// The time left in an invocation whose context carries `deadline_ms`. Lambda sends epoch
/// milliseconds; a deadline already passed (or zero, or clock skew) leaves no time, and every
/// object is then handed back for retry rather than claimed with a lease in the past.
/// `cargo lambda watch` sends the timeout itself (e.g. 600000) instead of an epoch time: values
/// below 10^12 (2001) are read as such.
pub fn time_left(deadline_ms: u64, now_ms: u64) -> Duration {
    if deadline_ms < 1_000_000_000_000 {
        return Duration::from_millis(deadline_ms);
    }
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// What the Lambda function answers: for an SQS event, the partial batch response naming the
/// messages to retry (`batchItemFailures`, Lambda's casing); for other sources a summary, or an
/// error when something must be retried (Lambda then retries the invocation).
pub fn lambda_response(event: &Value, result: &EventResult) -> Result<Value, InvokeError> {
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
    let is_sqs = event
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|r| {
            r.iter()
                .any(|x| x.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
        });
    if is_sqs {
        let mut response = SqsBatchResponse::default();
        for id in result.failed_message_ids() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
        return serde_json::to_value(&response).map_err(|e| InvokeError::Answer(e.to_string()));
    }
    let objects: Vec<Value> = result
        .messages
        .iter()
        .flat_map(|m| m.objects.iter())
        .map(|(o, outcome)| json!({"bucket": o.bucket, "key": o.key, "outcome": outcome.label()}))
        .collect();
    if result.any_retry() {
        let why: Vec<String> = result
            .messages
            .iter()
            .flat_map(|m| {
                m.objects
                    .iter()
                    .filter(|(_, o)| o.unfinished())
                    .map(|(obj, o)| format!("s3://{}/{}: {}", obj.bucket, obj.key, o.label()))
                    .chain(m.error.clone())
            })
            .collect();
        return Err(InvokeError::Retry(why.join("; ")));
    }
    Ok(json!({ "objects": objects }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_epoch_deadlines_and_the_local_runtimes_timeouts() {
        let now = 1_795_871_569_856;
        assert_eq!(time_left(now + 900_000, now), Duration::from_secs(900));
        assert_eq!(time_left(now - 5, now), Duration::ZERO, "passed: no time");
        assert_eq!(time_left(0, now), Duration::ZERO, "missing: no time");
        assert_eq!(
            time_left(600_000, now),
            Duration::from_secs(600),
            "cargo lambda watch"
        );
    }
}
