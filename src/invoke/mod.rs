//! The Lambda edge: an invocation's event → notices → imports → the answer Lambda expects
//! (SQS partial batch response), with the deadline read from the runtime's context and one
//! EMF metrics line per invocation. The only module that knows Lambda's shapes.

pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::claims::ClaimStore;
use crate::dedupe::DedupeStore;
use crate::notify::Receipt;
use crate::ops::{ScanJob, ScanSummary};
use crate::pipeline::{EventResult, MessageResult, Pipeline};
use crate::queue::Enqueue;
use crate::source::ObjectSource;

/// One Lambda invocation: a scheduled scan (`{"s3import-scan": {"bucket", "prefix"}}`, which
/// queues what it finds when `S3I_QUEUE_URL` is set, and leaves a scan message on the queue to
/// go on after its time budget) or any notification shape, scan messages among them. `emit`
/// receives the invocation's metrics line (EMF).
pub async fn invoke<C, D, S, Q>(
    pipeline: &Pipeline<C, D, S, Q>,
    payload: &Value,
    deadline: Instant,
    request_id: &str,
    emit: impl FnOnce(String),
) -> Result<Value, String>
where
    C: ClaimStore,
    D: DedupeStore + 'static,
    S: ObjectSource,
    Q: Enqueue,
{
    if let Some(scan) = payload.get("s3import-scan") {
        let summary = run_scan(pipeline, scan, deadline, request_id).await?;
        return Ok(json!({"scan": summary.to_string(), "summary": summary}));
    }
    let result = handle(pipeline, payload, deadline, request_id).await;
    hand_back(&pipeline.queue, &result).await;
    emit(metrics::emf_line(
        &pipeline.settings.source,
        &result,
        pipeline.clock.now_ms(),
    ));
    lambda_response(payload, &result)
}

/// The scan a scan message asks for (`bucket`, `prefix` — else `S3I_PREFIX` —, `start_after`),
/// run until `deadline`.
async fn run_scan<C, D, S, Q>(
    pipeline: &Pipeline<C, D, S, Q>,
    scan: &Value,
    deadline: Instant,
    request_id: &str,
) -> Result<ScanSummary, String>
where
    C: ClaimStore,
    D: DedupeStore + 'static,
    S: ObjectSource,
    Q: Enqueue,
{
    let text = |name: &str| scan.get(name).and_then(Value::as_str).map(str::to_string);
    let job = ScanJob {
        bucket: text("bucket").ok_or("s3import-scan without bucket")?,
        prefix: text("prefix").unwrap_or_else(|| pipeline.settings.prefix.clone()),
        start_after: text("start_after"),
        enqueue: pipeline.settings.queue_url.is_some(),
        deadline: Some(deadline),
        pass: crate::ops::pass_of(scan),
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

/// Whether an SQS record carries a scan message, and its scan.
fn scan_of(record: &Value) -> Option<Value> {
    let body = record.get("body")?.as_str()?;
    if !body.contains("s3import-scan") {
        return None;
    }
    let doc: Value = serde_json::from_str(body).ok()?;
    doc.get("s3import-scan").cloned()
}

/// An event's messages handled until `deadline`: scan messages (SQS records whose body is
/// `{"s3import-scan": …}`) run their scan, beside the imports of the other messages; a scan
/// that fails is retried like any message. The Lambda edge and the queue worker both use it.
pub async fn handle<C, D, S, Q>(
    pipeline: &Pipeline<C, D, S, Q>,
    event: &Value,
    deadline: Instant,
    request_id: &str,
) -> EventResult
where
    C: ClaimStore,
    D: DedupeStore + 'static,
    S: ObjectSource,
    Q: Enqueue,
{
    let records = event.get("Records").and_then(Value::as_array);
    let is_sqs = records.is_some_and(|r| {
        r.iter()
            .any(|x| x.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
    });
    let (scans, rest): (Vec<&Value>, Vec<&Value>) = match records {
        Some(records) if is_sqs => records.iter().partition(|r| scan_of(r).is_some()),
        _ => (Vec::new(), Vec::new()),
    };
    if scans.is_empty() {
        return pipeline.handle_event(event, deadline, request_id).await;
    }
    let imports = async {
        if rest.is_empty() {
            return EventResult::default();
        }
        let rest = json!({ "Records": rest });
        pipeline.handle_event(&rest, deadline, request_id).await
    };
    let scanned = async {
        let mut done = Vec::new();
        for (n, record) in scans.iter().enumerate() {
            let text = |name: &str| record.get(name).and_then(Value::as_str).map(str::to_string);
            let scan = scan_of(record).unwrap_or_default();
            let owner = format!("{request_id}/scan{n}");
            let error = run_scan(pipeline, &scan, deadline, &owner).await.err();
            if let Some(e) = &error {
                tracing::warn!(error = %e, "scan failed; its message comes back");
            }
            done.push(MessageResult {
                message_id: text("messageId"),
                objects: Vec::new(),
                ignored: Vec::new(),
                retry: error.is_some(),
                error,
                retry_after: None,
                receipt: text("eventSourceARN")
                    .zip(text("receiptHandle"))
                    .map(|(queue, handle)| Receipt { queue, handle }),
            });
        }
        done
    };
    let (mut result, scanned) = tokio::join!(imports, scanned);
    result.messages.extend(scanned);
    result
}

/// Serves Lambda's runtime API until the process ends: each event runs until its deadline
/// (read from the invocation's context), its metrics line goes to stdout (EMF).
pub async fn serve<C, D, S, Q>(pipeline: Arc<Pipeline<C, D, S, Q>>) -> Result<(), Error>
where
    C: ClaimStore + 'static,
    D: DedupeStore + 'static,
    S: ObjectSource + 'static,
    Q: Enqueue + 'static,
{
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
pub fn lambda_response(event: &Value, result: &EventResult) -> Result<Value, String> {
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
        return serde_json::to_value(&response).map_err(|e| e.to_string());
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
        return Err(format!("to be retried: {}", why.join("; ")));
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
