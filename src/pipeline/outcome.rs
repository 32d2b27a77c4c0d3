//! What became of an object, a message and an invocation: the values the edges report.

use std::time::Duration;

use crate::notify::{Ignored, ObjectRef, Receipt};
use crate::report::Report;

/// What became of one object.
#[derive(Debug)]
pub enum ObjectOutcome {
    Completed(Box<Report>),
    /// Failed for good now (corrupt data, access denied, object changed during its import).
    /// A bad converter never fails an object: it is `Retry` (`CONVERTER_UNUSABLE`).
    Failed(Box<Report>),
    /// Excluded by the prefix, the filter pattern or the reports location.
    Ignored(String),
    AlreadyCompleted,
    AlreadyFailed(String),
    /// Another invocation holds a live lease on it until `lease_until` (epoch seconds): the
    /// notice comes back when the lease ends, in case its holder died.
    HeldByOther {
        lease_until: i64,
    },
    /// The object (or the version named) was deleted before it was read: nothing to import;
    /// a later notice of new content under the key imports normally.
    Gone(String),
    /// Stopped before the deadline with progress saved; another invocation continues.
    Paused {
        checkpoint: u64,
    },
    /// Could not finish for a reason a retry may fix; progress saved, claim resumable.
    Retry(String),
}

impl ObjectOutcome {
    /// Whether the notice must be delivered again (or continued) for the object to finish.
    pub fn unfinished(&self) -> bool {
        matches!(
            self,
            ObjectOutcome::Paused { .. }
                | ObjectOutcome::Retry(_)
                | ObjectOutcome::HeldByOther { .. }
        )
    }

    pub fn label(&self) -> String {
        match self {
            ObjectOutcome::Completed(_) => "completed".into(),
            ObjectOutcome::Failed(r) => format!("failed: {}", r.reason.as_deref().unwrap_or("")),
            ObjectOutcome::Ignored(why) => format!("ignored: {why}"),
            ObjectOutcome::AlreadyCompleted => "already completed".into(),
            ObjectOutcome::AlreadyFailed(why) => format!("failed before: {why}"),
            ObjectOutcome::HeldByOther { .. } => "being imported by another invocation".into(),
            ObjectOutcome::Gone(why) => format!("gone before it was read: {why}"),
            ObjectOutcome::Paused { checkpoint } => {
                format!("paused at record {checkpoint}, to be continued")
            }
            ObjectOutcome::Retry(why) => format!("to be retried: {why}"),
        }
    }
}

/// One message's result.
#[derive(Debug)]
pub struct MessageResult {
    pub message_id: Option<String>,
    pub objects: Vec<(ObjectRef, ObjectOutcome)>,
    pub ignored: Vec<Ignored>,
    /// Why the message could not be read.
    pub error: Option<String>,
    /// Whether the message must come back (SQS: listed in `batchItemFailures`).
    pub retry: bool,
    /// When the message should come back, if not after the queue's own visibility timeout:
    /// when the lease of the invocation that holds its object ends.
    pub retry_after: Option<Duration>,
    /// How to hand the message back to its queue (SQS messages).
    pub receipt: Option<Receipt>,
}

/// An invocation's result.
#[derive(Debug, Default)]
pub struct EventResult {
    pub messages: Vec<MessageResult>,
}

impl EventResult {
    /// The SQS message ids to report as failed, so that only they are delivered again.
    pub fn failed_message_ids(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m.retry)
            .filter_map(|m| m.message_id.clone())
            .collect()
    }

    /// Whether anything must be retried (for event sources without partial batches).
    pub fn any_retry(&self) -> bool {
        self.messages.iter().any(|m| m.retry)
    }
}
