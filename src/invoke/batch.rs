//! One batch of typed messages, handled until a deadline: what the Lambda edge (its event read
//! by `notify::messages`) and the queue worker (messages received from SQS) both run. The
//! objects of every message are imported at once, up to `S3I_OBJECT_CONCURRENCY`, sharing the
//! deadline and the endpoint's client, beside the scans that messages ask for; each message's
//! result comes from its own objects and scans.

use futures_util::StreamExt;
use tokio::time::Instant;

use super::run_scan;
use crate::notify::{Message, Notice, ObjectRef, ScanRequest};
use crate::pipeline::{Adapters, EventResult, MessageResult, ObjectOutcome, Pipeline, Then};

/// Handles `messages` until `deadline`; `request_id` names the owners of the claims taken.
pub async fn handle<A: Adapters>(
    pipeline: &Pipeline<A>,
    messages: Vec<Message>,
    deadline: Instant,
    request_id: &str,
) -> EventResult {
    let mut result = EventResult::default();
    let mut work: Vec<(usize, usize, ObjectRef)> = Vec::new();
    let mut scans: Vec<(usize, ScanRequest)> = Vec::new();
    for (i, m) in messages.into_iter().enumerate() {
        let mut done = MessageResult {
            message_id: m.message_id,
            objects: Vec::new(),
            ignored: Vec::new(),
            error: None,
            retry: false,
            retry_after: None,
            receipt: m.receipt,
        };
        match m.notices {
            Ok(notices) => {
                for (j, notice) in notices.into_iter().enumerate() {
                    match notice {
                        Notice::Ignore(why) => {
                            tracing::info!(reason = ?why, "notice ignored");
                            done.ignored.push(why);
                        }
                        Notice::Import(obj) => work.push((i, j, obj)),
                        Notice::Scan(scan) => scans.push((i, scan)),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(message_id = ?done.message_id, error = %e, "unreadable message");
                done.error = Some(e.to_string());
                done.retry = true;
            }
        }
        result.messages.push(done);
    }
    let stamp = pipeline.clock.now_ms();
    let imports = futures_util::stream::iter(work)
        .map(|(i, j, obj)| async move {
            let owner = format!("{request_id}/{i}/{j}/{stamp:x}");
            let (outcome, then) = pipeline.import_notice(&obj, deadline, &owner).await;
            (i, obj, outcome, then)
        })
        .buffered(pipeline.settings.object_concurrency.max(1))
        .collect::<Vec<(usize, ObjectRef, ObjectOutcome, Then)>>();
    let scanned = async {
        let mut done = Vec::new();
        for (n, (i, scan)) in scans.into_iter().enumerate() {
            let owner = format!("{request_id}/scan{n}");
            let error = run_scan(pipeline, &scan, deadline, &owner)
                .await
                .err()
                .map(|e| e.to_string());
            if let Some(e) = &error {
                tracing::warn!(error = %e, "scan failed; its message comes back");
            }
            done.push((i, error));
        }
        done
    };
    let (finished, scanned) = tokio::join!(imports, scanned);
    let mut plain_retry = vec![false; result.messages.len()];
    for (i, obj, outcome, then) in finished {
        let done = &mut result.messages[i];
        match then {
            Then::Done => {}
            Then::Retry => {
                done.retry = true;
                plain_retry[i] = true;
            }
            Then::RetryAfter(after) => {
                done.retry = true;
                done.retry_after = Some(done.retry_after.map_or(after, |a| a.max(after)));
            }
        }
        done.objects.push((obj, outcome));
    }
    for (i, error) in scanned {
        let done = &mut result.messages[i];
        if error.is_some() {
            done.retry = true;
            plain_retry[i] = true;
        }
        done.error = done.error.take().or(error);
    }
    // An object that waits for the queue's own visibility timeout sets the message's time.
    for (done, plain) in result.messages.iter_mut().zip(plain_retry) {
        if plain {
            done.retry_after = None;
        }
    }
    result
}
