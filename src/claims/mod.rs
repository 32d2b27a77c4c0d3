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

use std::collections::HashMap;

pub mod dynamo;
use std::future::Future;
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
        /// The counts of the records before the checkpoint (the report's JSON), so that a
        /// resumed import reports the whole object.
        progress: String,
    },
    Completed {
        summary: String,
    },
    Failed {
        reason: String,
        /// The progress saved before the failure (what was confirmed, the content read).
        progress: String,
    },
    /// A scan queued a message for the object; that copy may be in flight until
    /// `queued_until`. An import whose lease had ended keeps its checkpoint and progress.
    Queued {
        queued_until: i64,
        checkpoint: u64,
        progress: String,
    },
}

/// What `claim` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This invocation owns the object; resume after `checkpoint` records (0: from the start).
    Acquired {
        checkpoint: u64,
        takeover: bool,
        /// The progress stored with the checkpoint ("" when starting afresh).
        progress: String,
    },
    /// Another owner holds a live lease: acknowledge, the holder will finish or expire.
    HeldByOther { lease_until: i64 },
    /// Imported before: never again.
    AlreadyCompleted,
    /// Failed for good before; `s3-import retry` resets it on purpose.
    AlreadyFailed { reason: String },
}

/// Whether a write conditional on ownership went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    Yes,
    /// The lease expired and someone else took over, or the claim changed: stop writing.
    Lost,
}

pub use crate::store::StoreError;

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
        progress: &str,
        lease_until: i64,
    ) -> impl Future<Output = Result<Held, StoreError>> + Send;
    fn complete(
        &self,
        key: &ClaimKey,
        owner: &str,
        summary: &str,
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
        progress: &str,
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
    /// Requests made to the store so far (for the scan's figures).
    fn requests(&self) -> u64 {
        0
    }
    /// Every claim of `source` (for `s3-import status`), in no particular order.
    fn list(
        &self,
        source: &str,
    ) -> impl Future<Output = Result<Vec<(ClaimKey, ClaimState)>, StoreError>> + Send;
}

/// Claims in memory, for unit tests of the pipeline and for the CLI's local runs.
#[derive(Default)]
pub struct MemoryClaims {
    items: Mutex<HashMap<ClaimKey, ClaimState>>,
}

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
                None => (0, false, String::new()),
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
                    *checkpoint > 0 || !progress.is_empty(),
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
        progress: &str,
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
                    *p = progress.to_string();
                }
            }
        }))
    }

    async fn complete(
        &self,
        key: &ClaimKey,
        owner: &str,
        summary: &str,
    ) -> Result<Held, StoreError> {
        Ok(self.if_owner(key, owner, |state| {
            *state = ClaimState::Completed {
                summary: summary.to_string(),
            }
        }))
    }

    async fn fail(&self, key: &ClaimKey, owner: &str, reason: &str) -> Result<Held, StoreError> {
        Ok(self.if_owner(key, owner, |state| {
            let progress = match state {
                ClaimState::InProgress { progress, .. } => std::mem::take(progress),
                _ => String::new(),
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

    async fn reset_failed(&self, key: &ClaimKey, progress: &str) -> Result<bool, StoreError> {
        Ok(self.with(|items| match items.get_mut(key) {
            Some(state @ ClaimState::Failed { .. }) => {
                *state = ClaimState::InProgress {
                    owner: String::new(),
                    lease_until: 0,
                    checkpoint: 0,
                    progress: progress.to_string(),
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
                        None => (0, String::new()),
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

/// The behaviour every adapter must have; run against each (memory here, DynamoDB in LocalStack).
pub mod contract {
    use super::*;

    fn key(name: &str) -> ClaimKey {
        ClaimKey {
            source: "contract".into(),
            bucket: "bucket".into(),
            key: name.into(),
        }
    }

    /// Runs every check; `unique` makes keys unique per run for shared stores.
    pub async fn run<S: ClaimStore>(store: &S, unique: &str) {
        let now = 1_800_000_000;
        let k = key(&format!("{unique}/a b+c.json"));

        // First claim wins; a second owner loses while the lease lives.
        assert_eq!(
            store.claim(&k, "owner-1", now + 60, now).await.unwrap(),
            ClaimOutcome::Acquired {
                checkpoint: 0,
                takeover: false,
                progress: String::new()
            }
        );
        assert_eq!(
            store.claim(&k, "owner-2", now + 60, now + 1).await.unwrap(),
            ClaimOutcome::HeldByOther {
                lease_until: now + 60
            }
        );
        // Progress is written only by the owner.
        assert_eq!(
            store
                .checkpoint(&k, "owner-1", 500, "{\"read\":500}", now + 120)
                .await
                .unwrap(),
            Held::Yes
        );
        assert_eq!(
            store
                .checkpoint(&k, "owner-2", 900, "{}", now + 120)
                .await
                .unwrap(),
            Held::Lost
        );
        // The lease expires: a takeover resumes from the checkpoint, and the old owner is locked out.
        assert_eq!(
            store
                .claim(&k, "owner-3", now + 300, now + 121)
                .await
                .unwrap(),
            ClaimOutcome::Acquired {
                checkpoint: 500,
                takeover: true,
                progress: "{\"read\":500}".into()
            }
        );
        assert_eq!(
            store
                .checkpoint(&k, "owner-1", 600, "{}", now + 400)
                .await
                .unwrap(),
            Held::Lost
        );
        assert_eq!(
            store.complete(&k, "owner-1", "late").await.unwrap(),
            Held::Lost
        );
        // Completed is final, whoever asks and however late.
        assert_eq!(
            store
                .complete(&k, "owner-3", "{\"records\":1000}")
                .await
                .unwrap(),
            Held::Yes
        );
        assert_eq!(
            store
                .claim(&k, "owner-4", now + 10_000, now + 9_000)
                .await
                .unwrap(),
            ClaimOutcome::AlreadyCompleted
        );
        assert_eq!(
            store.get(&k).await.unwrap(),
            Some(ClaimState::Completed {
                summary: "{\"records\":1000}".into()
            })
        );

        // Release leaves the claim resumable at once, with its checkpoint.
        let r = key(&format!("{unique}/released.json"));
        store.claim(&r, "owner-1", now + 60, now).await.unwrap();
        store
            .checkpoint(&r, "owner-1", 42, "p42", now + 60)
            .await
            .unwrap();
        assert_eq!(
            store.release(&r, "owner-1", now + 1).await.unwrap(),
            Held::Yes
        );
        assert_eq!(
            store.claim(&r, "owner-2", now + 60, now + 1).await.unwrap(),
            ClaimOutcome::Acquired {
                checkpoint: 42,
                takeover: true,
                progress: "p42".into()
            }
        );

        // Failed keeps its reason until reset on purpose.
        let f = key(&format!("{unique}/corrupt.json.gz"));
        store.claim(&f, "owner-1", now + 60, now).await.unwrap();
        assert_eq!(
            store
                .fail(&f, "owner-1", "corrupt gzip data")
                .await
                .unwrap(),
            Held::Yes
        );
        assert_eq!(
            store.claim(&f, "owner-2", now + 60, now + 1).await.unwrap(),
            ClaimOutcome::AlreadyFailed {
                reason: "corrupt gzip data".into()
            }
        );
        assert!(store.reset_failed(&f, "{\"id_tag\":\"t\"}").await.unwrap());
        assert!(!store.reset_failed(&f, "").await.unwrap());
        assert_eq!(
            store.claim(&f, "owner-2", now + 60, now + 1).await.unwrap(),
            ClaimOutcome::Acquired {
                checkpoint: 0,
                takeover: true,
                progress: "{\"id_tag\":\"t\"}".into()
            }
        );

        // The stored state reads back whole, and listing finds the source's claims.
        match store.get(&r).await.unwrap() {
            Some(ClaimState::InProgress {
                owner,
                lease_until,
                checkpoint,
                progress,
            }) => assert_eq!(
                (owner.as_str(), lease_until, checkpoint, progress.as_str()),
                ("owner-2", now + 60, 42, "p42")
            ),
            other => panic!("unexpected {other:?}"),
        }
        let listed = store.list("contract").await.unwrap();
        for want in [&k, &r, &f] {
            assert!(
                listed.iter().any(|(key, _)| key == want),
                "{want:?} not listed"
            );
        }
        assert_eq!(
            store.get(&key(&format!("{unique}/never"))).await.unwrap(),
            None
        );

        // Many at once, in order, with the missing ones.
        let never = key(&format!("{unique}/never"));
        let got = store
            .get_many(&[f.clone(), never.clone(), k.clone()])
            .await
            .unwrap();
        assert!(matches!(got[0], Some(ClaimState::InProgress { .. })));
        assert_eq!(got[1], None);
        assert!(matches!(got[2], Some(ClaimState::Completed { .. })));
        let many: Vec<ClaimKey> = (0..150)
            .map(|i| key(&format!("{unique}/many/{i:03}")))
            .collect();
        assert_eq!(store.get_many(&many).await.unwrap(), vec![None; 150]);
        assert_eq!(store.get_many(&[]).await.unwrap(), Vec::new());

        queue_marks(store, unique, now).await;

        // Claims are scoped by source.
        let other = ClaimKey {
            source: format!("other-source-{unique}"),
            ..k.clone()
        };
        assert_eq!(
            store.claim(&other, "owner-9", now + 60, now).await.unwrap(),
            ClaimOutcome::Acquired {
                checkpoint: 0,
                takeover: false,
                progress: String::new()
            }
        );
    }

    /// A scan's queue marks: taken only where nothing holds the object, at most once while
    /// they last, turned into an import by the first claim, given back on purpose.
    async fn queue_marks<S: ClaimStore>(store: &S, unique: &str, now: i64) {
        let fresh: Vec<ClaimKey> = (0..130)
            .map(|i| key(&format!("{unique}/queued/{i:03}")))
            .collect();
        // A held object and a completed one are not marked; a released one is, with its
        // checkpoint.
        let held = key(&format!("{unique}/queued/held"));
        store.claim(&held, "o", now + 60, now).await.unwrap();
        let done = key(&format!("{unique}/queued/done"));
        store.claim(&done, "o", now + 60, now).await.unwrap();
        store.complete(&done, "o", "{}").await.unwrap();
        let ended = key(&format!("{unique}/queued/ended"));
        store.claim(&ended, "o", now + 60, now).await.unwrap();
        store
            .checkpoint(&ended, "o", 7, "p7", now + 60)
            .await
            .unwrap();
        store.release(&ended, "o", now).await.unwrap();
        let mut keys = fresh.clone();
        keys.extend([held.clone(), done.clone(), ended.clone()]);
        let until = now + 3600;
        let marked = store.mark_queued(&keys, until, now).await.unwrap();
        assert_eq!(marked.iter().filter(|m| **m).count(), 131, "{marked:?}");
        assert!(!marked[130] && !marked[131] && marked[132]);
        assert_eq!(
            store.get(&fresh[0]).await.unwrap(),
            Some(ClaimState::Queued {
                queued_until: until,
                checkpoint: 0,
                progress: String::new()
            })
        );
        // While the mark lasts, no second mark; after it, one.
        let again = store.mark_queued(&keys, until + 10, now + 5).await.unwrap();
        assert!(again.iter().all(|m| !m), "{again:?}");
        let later = store
            .mark_queued(&fresh[..2], until + 7200, until + 1)
            .await
            .unwrap();
        assert_eq!(later, [true, true]);
        // A queued object is claimed at once (its mark is no lease); an ended import resumes.
        assert_eq!(
            store
                .claim(&fresh[5], "w", now + 60, now + 6)
                .await
                .unwrap(),
            ClaimOutcome::Acquired {
                checkpoint: 0,
                takeover: false,
                progress: String::new()
            }
        );
        assert_eq!(
            store.claim(&ended, "w", now + 60, now + 6).await.unwrap(),
            ClaimOutcome::Acquired {
                checkpoint: 7,
                takeover: true,
                progress: "p7".into()
            }
        );
        // Given back: the next scan marks it again; a mark that moved on is left alone.
        store.unmark_queued(&fresh[9], until).await.unwrap();
        store.unmark_queued(&fresh[5], until).await.unwrap();
        assert!(matches!(
            store.get(&fresh[5]).await.unwrap(),
            Some(ClaimState::InProgress { .. })
        ));
        assert_eq!(
            store
                .mark_queued(&fresh[9..11], until, now + 7)
                .await
                .unwrap(),
            [true, false]
        );
    }
}

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
