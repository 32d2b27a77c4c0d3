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
    Retry(RetryReason),
}

/// Why an object is to be retried: the edges and the metrics tell these apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryReason {
    /// Too little time was left in the invocation to start, or to finish the integrity check
    /// (what stopped, if anything): handed on at once in a new message.
    TooLate(Option<String>),
    /// Still running at the invocation's very end: claim released, notice back at once.
    CutOff,
    /// The converter file is missing, unreadable or bad, or needs a route the endpoint lacks:
    /// objects wait unclaimed (alarmed) until it is fixed.
    ConverterUnusable(String),
    /// Anything else a retry may fix (a store or the endpoint unavailable, no progress).
    Other(String),
}

impl RetryReason {
    pub fn other(why: impl Into<String>) -> RetryReason {
        RetryReason::Other(why.into())
    }
}

impl std::fmt::Display for RetryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryReason::TooLate(None) => f.write_str(TOO_LATE),
            RetryReason::TooLate(Some(what)) => write!(f, "{TOO_LATE}: {what}"),
            RetryReason::CutOff => f.write_str("cut off at the invocation's deadline"),
            RetryReason::ConverterUnusable(why) => write!(f, "{CONVERTER_UNUSABLE}: {why}"),
            RetryReason::Other(why) => f.write_str(why),
        }
    }
}

/// Why an object was not started: its notice came too late in the invocation.
const TOO_LATE: &str = "too little time left in this invocation";

/// How a converter problem's reason starts (`RetryReason::ConverterUnusable`).
pub const CONVERTER_UNUSABLE: &str = "converter unusable";

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
