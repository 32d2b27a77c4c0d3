//! Exactly-once file claims: the port the pipeline uses, and an in-memory adapter.
//!
//! One claim per (source, bucket, key). Claiming succeeds when no claim exists, or when the
//! claim is `InProgress` and its lease has expired (a takeover that resumes from the
//! checkpoint). Every later write carries the owner token and only succeeds while that owner
//! still holds the claim. `Completed` is final (as in Amplitude, an overwritten key is not
//! imported again); `Failed` keeps a permanent reason and is re-importable only on purpose
//! (`reset_failed`). Losing a race is an outcome, not an error. Times are epoch seconds and every
//! comparison uses the stored lease, never the absence of an item (TTL deletes lazily).
//!
//! A scan that queues an object marks its claim `Queued` until `queued_until` (the time its
//! message may still be in flight), so that the next scan does not queue it again; the mark
//! is taken only where nothing holds the object (no claim, a mark that ran out, an import whose
//! lease ended), and the first `claim` turns it into an import like any other.
//! The DynamoDB adapter (pipeline issue) must pass the same `contract` suite.

#[cfg(any(test, feature = "test-support"))]
use std::collections::HashMap;

pub mod dynamo;
use std::future::Future;
#[cfg(any(test, feature = "test-support"))]
use std::sync::Mutex;

/// The object a claim is about. `source` scopes claims between importers sharing a table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimKey {
    pub source: String,
    pub bucket: String,
    pub key: String,
}

/// The state of a claim as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimState {
    InProgress {
        owner: String,
        lease_until: i64,
        checkpoint: u64,
        /// The counts of the records before the checkpoint, so that a resumed import reports
        /// the whole object.
        progress: Progress,
    },
    Completed {
        summary: Summary,
    },
    Failed {
        reason: String,
        /// The progress saved before the failure (what was confirmed, the content read).
        progress: Progress,
    },
    /// A scan queued a message for the object; that copy may be in flight until
    /// `queued_until`. An import whose lease had ended keeps its checkpoint and progress.
    Queued {
        queued_until: i64,
        checkpoint: u64,
        progress: Progress,
    },
}

/// What `claim` found.
// One per object and invocation, moved once: boxing the progress would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This invocation owns the object; resume after `checkpoint` records (0: from the start).
    Acquired {
        checkpoint: u64,
        takeover: bool,
        /// The progress stored with the checkpoint (fresh when starting afresh).
        progress: Progress,
    },
    /// Another owner holds a live lease: acknowledge, the holder will finish or expire.
    HeldByOther { lease_until: i64 },
    /// Imported before: never again.
    AlreadyCompleted,
    /// Failed for good before; `s3-import retry` resets it on purpose.
    AlreadyFailed { reason: String },
}

/// What the last complete scan of a source's bucket and prefix established, kept beside the
/// claims so that the next scan reads only the claims of objects modified since.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanMark {
    /// Every object that scan listed and last modified before this (epoch seconds) had a
    /// final claim (completed, failed, or ignored): the scan's start, or earlier when an
    /// older object was still queued or being imported.
    pub final_before: i64,
    /// When the last complete scan that read every claim (a full pass) began.
    pub full_at: i64,
}

/// Whether a write conditional on ownership went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    Yes,
    /// The lease expired and someone else took over, or the claim changed: stop writing.
    Lost,
}

pub use crate::report::{Progress, Summary};
pub use crate::store::{Capacity, StoreError};

/// The claims port. Times are epoch seconds, passed in so that tests can move the clock.
pub trait ClaimStore: Send + Sync {
    fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;
    /// Records progress and extends the lease, if `owner` still holds the claim.
    fn checkpoint(
        &self,
        key: &ClaimKey,
        owner: &str,
        records_confirmed: u64,
        progress: &Progress,
        lease_until: i64,
    ) -> impl Future<Output = Result<Held, StoreError>> + Send;
    fn complete(
        &self,
        key: &ClaimKey,
        owner: &str,
        summary: &Summary,
    ) -> impl Future<Output = Result<Held, StoreError>> + Send;
    fn fail(
        &self,
        key: &ClaimKey,
        owner: &str,
        reason: &str,
    ) -> impl Future<Output = Result<Held, StoreError>> + Send;
    /// Leaves the claim resumable now (the lease ends at once), keeping its checkpoint.
    fn release(
        &self,
        key: &ClaimKey,
        owner: &str,
        now: i64,
    ) -> impl Future<Output = Result<Held, StoreError>> + Send;
    /// Makes a `Failed` claim importable again from its first record, carrying `progress`
    /// (what the next attempt must know); true when there was one.
    fn reset_failed(
        &self,
        key: &ClaimKey,
        progress: &Progress,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn get(
        &self,
        key: &ClaimKey,
    ) -> impl Future<Output = Result<Option<ClaimState>, StoreError>> + Send;
    /// The claims of many keys at once (DynamoDB: BatchGetItem, 100 keys a request), in the
    /// order of `keys`.
    fn get_many(
        &self,
        keys: &[ClaimKey],
    ) -> impl Future<Output = Result<Vec<Option<ClaimState>>, StoreError>> + Send;
    /// Marks each key `Queued` until `queued_until` where nothing holds it (no claim, a queue
    /// mark that ran out, an `InProgress` claim whose lease ended; conditional writes, up to
    /// 100 a request on DynamoDB). True where the mark was taken: only those are to be queued.
    fn mark_queued(
        &self,
        keys: &[ClaimKey],
        queued_until: i64,
        now: i64,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;
    /// Takes back a mark of this `mark_queued` (its message could not be sent), so that the
    /// next scan queues the object again; nothing when the claim has moved on.
    fn unmark_queued(
        &self,
        key: &ClaimKey,
        queued_until: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Extends the marks of `keys` that still carry this scan's `from` (the short mark taken
    /// before their messages were sent) to `to`, once the messages are sent; a mark that moved
    /// on (claimed, taken back, marked again by another scan) is left alone.
    fn confirm_queued(
        &self,
        keys: &[ClaimKey],
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes a queue mark off an object that the import would ignore (a mark left by a scan
    /// that did not apply the same exclusions): a bare mark is removed, a mark that kept an
    /// ended import's checkpoint becomes that ended import again. True when there was a mark.
    fn clear_queued(&self, key: &ClaimKey)
        -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Requests made to the store so far (for the scan's figures).
    fn requests(&self) -> u64 {
        0
    }
    /// Capacity units consumed so far (for the scan's figures and benchmarks).
    fn capacity(&self) -> Capacity {
        Capacity::default()
    }
    /// The mark of the last complete scan of `bucket`/`prefix` for `source`. A store without
    /// marks has none: every scan then reads every claim.
    fn scan_mark(
        &self,
        _source: &str,
        _bucket: &str,
        _prefix: &str,
    ) -> impl Future<Output = Result<Option<ScanMark>, StoreError>> + Send {
        async { Ok(None) }
    }
    /// Records the mark of a complete scan (the last writer wins: each mark holds by itself).
    fn set_scan_mark(
        &self,
        _source: &str,
        _bucket: &str,
        _prefix: &str,
        _mark: ScanMark,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }
    /// Every claim of `source` (for `s3-import status`), in no particular order.
    fn list(
        &self,
        source: &str,
    ) -> impl Future<Output = Result<Vec<(ClaimKey, ClaimState)>, StoreError>> + Send;
}

/// Claims in memory, for unit tests of the pipeline and for the CLI's local runs.
#[derive(Default)]
#[cfg(any(test, feature = "test-support"))]
pub struct MemoryClaims {
    items: Mutex<HashMap<ClaimKey, ClaimState>>,
    /// Scan marks by (source, bucket, prefix).
    marks: Mutex<HashMap<(String, String, String), ScanMark>>,
}

#[cfg(any(test, feature = "test-support"))]
impl MemoryClaims {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<ClaimKey, ClaimState>) -> T) -> T {
        f(&mut self.items.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies `change` when `owner` holds the claim.
    fn if_owner(&self, key: &ClaimKey, owner: &str, change: impl FnOnce(&mut ClaimState)) -> Held {
        self.with(|items| {
            let state = items.get_mut(key);
            let owned =
                matches!(&state, Some(ClaimState::InProgress { owner: o, .. }) if o == owner);
            match state {
                Some(state) if owned => {
                    change(state);
                    Held::Yes
                }
                _ => Held::Lost,
            }
        })
    }
}

#[cfg(any(test, feature = "test-support"))]
impl ClaimStore for MemoryClaims {
    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<ClaimOutcome, StoreError> {
        Ok(self.with(|items| {
            let (checkpoint, takeover, progress) = match items.get(key) {
                None => (0, false, Progress::default()),
                Some(ClaimState::Completed { .. }) => return ClaimOutcome::AlreadyCompleted,
                Some(ClaimState::Failed { reason, .. }) => {
                    return ClaimOutcome::AlreadyFailed {
                        reason: reason.clone(),
                    }
                }
                Some(ClaimState::InProgress {
                    lease_until: held, ..
                }) if *held >= now => return ClaimOutcome::HeldByOther { lease_until: *held },
                Some(ClaimState::InProgress {
                    checkpoint,
                    progress,
                    ..
                }) => (*checkpoint, true, progress.clone()),
                Some(ClaimState::Queued {
                    checkpoint,
                    progress,
                    ..
                }) => (
                    *checkpoint,
                    *checkpoint > 0 || !progress.is_fresh(),
                    progress.clone(),
                ),
            };
            items.insert(
                key.clone(),
                ClaimState::InProgress {
                    owner: owner.to_string(),
                    lease_until,
                    checkpoint,
                    progress: progress.clone(),
                },
            );
            ClaimOutcome::Acquired {
                checkpoint,
                takeover,
                progress,
            }
        }))
    }

    async fn checkpoint(
        &self,
        key: &ClaimKey,
        owner: &str,
        records_confirmed: u64,
        progress: &Progress,
        lease_until: i64,
    ) -> Result<Held, StoreError> {
        Ok(self.if_owner(key, owner, |state| {
            if let ClaimState::InProgress {
                lease_until: l,
                checkpoint: c,
                progress: p,
                ..
            } = state
            {
                *l = lease_until;
                if records_confirmed >= *c {
                    *c = records_confirmed;
                    *p = progress.clone();
                }
            }
        }))
    }

    async fn complete(
        &self,
        key: &ClaimKey,
        owner: &str,
        summary: &Summary,
    ) -> Result<Held, StoreError> {
        Ok(self.if_owner(key, owner, |state| {
            *state = ClaimState::Completed {
                summary: summary.clone(),
            }
        }))
    }

    async fn fail(&self, key: &ClaimKey, owner: &str, reason: &str) -> Result<Held, StoreError> {
        Ok(self.if_owner(key, owner, |state| {
            let progress = match state {
                ClaimState::InProgress { progress, .. } => std::mem::take(progress),
                _ => Progress::default(),
            };
            *state = ClaimState::Failed {
                reason: reason.to_string(),
                progress,
            }
        }))
    }

    async fn release(&self, key: &ClaimKey, owner: &str, now: i64) -> Result<Held, StoreError> {
        Ok(self.if_owner(key, owner, |state| {
            if let ClaimState::InProgress { lease_until, .. } = state {
                *lease_until = now - 1;
            }
        }))
    }

    async fn reset_failed(&self, key: &ClaimKey, progress: &Progress) -> Result<bool, StoreError> {
        Ok(self.with(|items| match items.get_mut(key) {
            Some(state @ ClaimState::Failed { .. }) => {
                *state = ClaimState::InProgress {
                    owner: String::new(),
                    lease_until: 0,
                    checkpoint: 0,
                    progress: progress.clone(),
                };
                true
            }
            _ => false,
        }))
    }

    async fn get(&self, key: &ClaimKey) -> Result<Option<ClaimState>, StoreError> {
        Ok(self.with(|items| items.get(key).cloned()))
    }

    async fn get_many(&self, keys: &[ClaimKey]) -> Result<Vec<Option<ClaimState>>, StoreError> {
        Ok(self.with(|items| keys.iter().map(|k| items.get(k).cloned()).collect()))
    }

    async fn mark_queued(
        &self,
        keys: &[ClaimKey],
        queued_until: i64,
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        Ok(self.with(|items| {
            keys.iter()
                .map(|k| {
                    let (checkpoint, progress) = match items.get(k) {
                        None => (0, Progress::default()),
                        Some(ClaimState::Queued {
                            queued_until: q,
                            checkpoint,
                            progress,
                        }) if *q < now => (*checkpoint, progress.clone()),
                        Some(ClaimState::InProgress {
                            lease_until,
                            checkpoint,
                            progress,
                            ..
                        }) if *lease_until < now => (*checkpoint, progress.clone()),
                        Some(_) => return false,
                    };
                    items.insert(
                        k.clone(),
                        ClaimState::Queued {
                            queued_until,
                            checkpoint,
                            progress,
                        },
                    );
                    true
                })
                .collect()
        }))
    }

    async fn unmark_queued(&self, key: &ClaimKey, queued_until: i64) -> Result<(), StoreError> {
        self.with(|items| {
            if let Some(ClaimState::Queued {
                queued_until: q, ..
            }) = items.get_mut(key)
            {
                if *q == queued_until {
                    *q = 0;
                }
            }
        });
        Ok(())
    }

    async fn confirm_queued(
        &self,
        keys: &[ClaimKey],
        from: i64,
        to: i64,
    ) -> Result<(), StoreError> {
        self.with(|items| {
            for k in keys {
                if let Some(ClaimState::Queued { queued_until, .. }) = items.get_mut(k) {
                    if *queued_until == from {
                        *queued_until = to;
                    }
                }
            }
        });
        Ok(())
    }

    async fn clear_queued(&self, key: &ClaimKey) -> Result<bool, StoreError> {
        Ok(self.with(|items| match items.get(key).cloned() {
            Some(ClaimState::Queued {
                checkpoint,
                progress,
                ..
            }) => {
                if checkpoint == 0 && progress.is_fresh() {
                    items.remove(key);
                } else {
                    items.insert(
                        key.clone(),
                        ClaimState::InProgress {
                            owner: String::new(),
                            lease_until: 0,
                            checkpoint,
                            progress,
                        },
                    );
                }
                true
            }
            _ => false,
        }))
    }

    async fn scan_mark(
        &self,
        source: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Option<ScanMark>, StoreError> {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let key = (source.to_string(), bucket.to_string(), prefix.to_string());
        Ok(marks.get(&key).copied())
    }

    async fn set_scan_mark(
        &self,
        source: &str,
        bucket: &str,
        prefix: &str,
        mark: ScanMark,
    ) -> Result<(), StoreError> {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let key = (source.to_string(), bucket.to_string(), prefix.to_string());
        marks.insert(key, mark);
        Ok(())
    }

    async fn list(&self, source: &str) -> Result<Vec<(ClaimKey, ClaimState)>, StoreError> {
        Ok(self.with(|items| {
            items
                .iter()
                .filter(|(k, _)| k.source == source)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod contract;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_claims_meet_the_contract() {
        contract::run(&MemoryClaims::default(), "mem").await;
    }

    #[tokio::test]
    async fn ten_concurrent_claims_one_winner() {
        let store = std::sync::Arc::new(MemoryClaims::default());
        let key = ClaimKey {
            source: "s".into(),
            bucket: "b".into(),
            key: "k".into(),
        };
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (store, key) = (store.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .claim(&key, &format!("owner-{i}"), 100, 0)
                    .await
                    .unwrap()
            }));
        }
        let mut won = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), ClaimOutcome::Acquired { .. }) {
                won += 1;
            }
        }
        assert_eq!(won, 1);
    }
}
