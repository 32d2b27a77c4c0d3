//! A claim as a DynamoDB item: its key, its state attribute's values, its progress as stored,
//! and the placeholders of the attribute names its expressions use.

use std::collections::HashMap;

use super::{ClaimKey, ClaimState, Item, Progress, Summary};
use crate::dynamo::{num_of, str_of};

pub(super) const IN_PROGRESS: &str = "IN_PROGRESS";
pub(super) const COMPLETED: &str = "COMPLETED";
pub(super) const FAILED: &str = "FAILED";
pub(super) const QUEUED: &str = "QUEUED";

/// The partition key of a scan mark: a JSON array of four, never a claim's three.
pub(super) fn mark_pk(source: &str, bucket: &str, prefix: &str) -> String {
    serde_json::to_string(&["scan-mark", source, bucket, prefix]).unwrap_or_default()
}

/// The partition key: a JSON array, so that no bucket or key spelling can collide.
pub fn pk(key: &ClaimKey) -> String {
    serde_json::to_string(&[&key.source, &key.bucket, &key.key]).unwrap_or_default()
}

/// A progress as stored: its JSON, or nothing while it is fresh (a scan's mark tests for an
/// empty progress).
pub(super) fn progress_text(p: &Progress) -> String {
    if p.is_fresh() {
        String::new()
    } else {
        serde_json::to_string(p).unwrap_or_default()
    }
}

/// An item's progress (fresh when there is none, or it does not parse).
fn progress_of(item: &Item) -> Progress {
    Progress::parse(str_of(item, "progress").unwrap_or_default())
}

pub(super) fn state_of(item: &Item) -> Option<ClaimState> {
    Some(match str_of(item, "claim_state")? {
        IN_PROGRESS => ClaimState::InProgress {
            owner: str_of(item, "owner").unwrap_or_default().to_string(),
            lease_until: num_of(item, "lease_until").unwrap_or(0),
            checkpoint: num_of(item, "checkpoint").unwrap_or(0).max(0) as u64,
            progress: progress_of(item),
        },
        COMPLETED => ClaimState::Completed {
            summary: Summary::parse(str_of(item, "summary").unwrap_or_default()),
        },
        QUEUED => ClaimState::Queued {
            queued_until: num_of(item, "queued_until").unwrap_or(0),
            checkpoint: num_of(item, "checkpoint").unwrap_or(0).max(0) as u64,
            progress: progress_of(item),
        },
        _ => ClaimState::Failed {
            reason: str_of(item, "reason").unwrap_or_default().to_string(),
            progress: progress_of(item),
        },
    })
}

/// Every attribute goes by a placeholder (`#name`): DynamoDB reserves hundreds of words,
/// `bucket`, `owner` and `source` among them.
const NAMES: &[&str] = &[
    "claim_state",
    "owner",
    "lease_until",
    "checkpoint",
    "progress",
    "source",
    "bucket",
    "object_key",
    "updated_at",
    "reason",
    "summary",
    "pk",
    "queued_until",
];

/// The placeholders an expression uses; DynamoDB refuses unused ones, so pick them from
/// the expressions.
pub(super) fn names_for(exprs: &[&str]) -> HashMap<String, String> {
    NAMES
        .iter()
        .filter(|n| {
            let tag = format!("#{n}");
            exprs.iter().any(|e| {
                e.match_indices(&tag).any(|(i, _)| {
                    !e[i + tag.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
            })
        })
        .map(|n| (format!("#{n}"), n.to_string()))
        .collect()
}
