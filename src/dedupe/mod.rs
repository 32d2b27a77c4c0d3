//! The 7-day `insert_id` dedupe: the port the pipeline uses, and an in-memory adapter.
//!
//! Key: (source, device_id — or `user:<user_id>` when there is none —, insert_id). The value
//! names the record that first sent the event. An event is a duplicate only when its key is held
//! by a *different* record within the window; the same record asking again (a retried or resumed
//! object) is told it owns the key and re-sends, and the endpoint's own insert_id dedupe absorbs
//! the overlap. Expiry compares the stored time (TTL deletes lazily), in epoch seconds.
//! The DynamoDB adapter (pipeline issue) must pass the same `contract` suite.

#[cfg(any(test, feature = "test-support"))]
use std::collections::HashMap;
use std::future::Future;
#[cfg(any(test, feature = "test-support"))]
use std::sync::Mutex;

pub use crate::store::{Capacity, StoreError};

pub mod dynamo;

/// Amplitude ignores a repeated insert_id for 7 days; so do we.
pub const WINDOW_SECS: i64 = 7 * 24 * 3600;

/// Which events the dedupe table checks (`S3I_DEDUPE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DedupeMode {
    /// Only events whose insert_id the converter set: a default id (`<bucket>/<key>:<n>`)
    /// names its own object and record, and the object's claim already makes it unique, so
    /// checking it costs a write and can never find a duplicate from elsewhere.
    #[default]
    Auto,
    /// Every event, default ids included.
    All,
}

impl DedupeMode {
    /// `auto`, `all` (`off` is handled by the caller: no dedupe at all).
    pub fn parse(text: &str) -> Option<DedupeMode> {
        match text.to_ascii_lowercase().as_str() {
            "auto" | "" => Some(DedupeMode::Auto),
            "all" => Some(DedupeMode::All),
            _ => None,
        }
    }
}

/// Whether `insert_id` is the default id of record `n` of the object `origin_bucket`/`origin_key`
/// (`<bucket>/<key>:<n>`), compared without building it.
pub fn is_default_id(insert_id: &str, origin_bucket: &str, origin_key: &str, n: u64) -> bool {
    insert_id
        .strip_prefix(origin_bucket)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.strip_prefix(origin_key))
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|number| number == itoa::Buffer::new().format(n))
}

/// What identifies an event for dedupe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DedupeKey {
    pub source: String,
    /// `device_id`, or `user:<user_id>` when the event has no device.
    pub id: String,
    pub insert_id: String,
}

impl DedupeKey {
    /// The key of an event; `None` when it has neither a device nor a user id.
    pub fn for_event(
        source: &str,
        device_id: Option<&str>,
        user_id: Option<&str>,
        insert_id: &str,
    ) -> Option<Self> {
        let id = match (device_id, user_id) {
            (Some(d), _) => d.to_string(),
            (None, Some(u)) => format!("user:{u}"),
            (None, None) => return None,
        };
        Some(DedupeKey {
            source: source.to_string(),
            id,
            insert_id: insert_id.to_string(),
        })
    }
}

/// The record that sent an event: its object (bucket/key, version) and record number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordRef {
    pub object: String,
    pub n: u64,
}

/// The answer for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen in the window: now marked as this record's; send it.
    New,
    /// Already marked by this same record (a retry or a resume): send it again.
    Own,
    /// Sent by another record within the window: drop it, counted as a duplicate.
    Duplicate { first: RecordRef },
}

/// The dedupe port: one call per batch of events, verdicts in the same order.
pub trait DedupeStore: Send + Sync {
    fn check_and_mark(
        &self,
        events: &[(DedupeKey, RecordRef)],
        now: i64,
    ) -> impl Future<Output = Result<Vec<Verdict>, StoreError>> + Send;
    /// Takes back the marks of events that were not delivered (rejected by the endpoint, or
    /// never sent by an object that failed), so that a corrected upload within the window is
    /// not dropped as their duplicate. A mark is removed only while `record` holds it; returns
    /// how many were.
    fn release(
        &self,
        events: &[(DedupeKey, RecordRef)],
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// Requests made to the store so far (for reports and benchmarks).
    fn requests(&self) -> u64 {
        0
    }
    /// Capacity units consumed so far (for reports and benchmarks).
    fn capacity(&self) -> Capacity {
        Capacity::default()
    }
}

/// Dedupe in memory, for unit tests of the pipeline and local runs.
#[derive(Default)]
#[cfg(any(test, feature = "test-support"))]
pub struct MemoryDedupe {
    items: Mutex<HashMap<DedupeKey, (RecordRef, i64)>>,
}

#[cfg(any(test, feature = "test-support"))]
impl DedupeStore for MemoryDedupe {
    async fn check_and_mark(
        &self,
        events: &[(DedupeKey, RecordRef)],
        now: i64,
    ) -> Result<Vec<Verdict>, StoreError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        Ok(events
            .iter()
            .map(|(key, record)| match items.get(key) {
                Some((first, expires)) if *expires > now => {
                    if first == record {
                        Verdict::Own
                    } else {
                        Verdict::Duplicate {
                            first: first.clone(),
                        }
                    }
                }
                _ => {
                    items.insert(key.clone(), (record.clone(), now + WINDOW_SECS));
                    Verdict::New
                }
            })
            .collect())
    }

    async fn release(&self, events: &[(DedupeKey, RecordRef)]) -> Result<usize, StoreError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let mut released = 0;
        for (key, record) in events {
            if items.get(key).is_some_and(|(owner, _)| owner == record) {
                items.remove(key);
                released += 1;
            }
        }
        Ok(released)
    }
}

/// The behaviour every adapter must have.
#[cfg(any(test, feature = "test-support"))]
pub mod contract {
    use super::*;

    fn key(unique: &str, id: &str, insert_id: &str) -> DedupeKey {
        DedupeKey {
            source: format!("contract-{unique}"),
            id: id.into(),
            insert_id: insert_id.into(),
        }
    }

    fn rec(object: &str, n: u64) -> RecordRef {
        RecordRef {
            object: object.into(),
            n,
        }
    }

    /// Runs every check; `unique` keeps runs apart in shared stores.
    // Long: the contract as one story, each check relying on the state the ones before it left.
    pub async fn run<S: DedupeStore>(store: &S, unique: &str) {
        let now = 1_800_000_000;
        let (a, b) = (
            key(unique, "device-1", "ins-1"),
            key(unique, "device-1", "ins-2"),
        );
        // First sight marks; the same record again owns it; another record is a duplicate.
        let v = store
            .check_and_mark(
                &[
                    (a.clone(), rec("b/one.json", 0)),
                    (b.clone(), rec("b/one.json", 1)),
                ],
                now,
            )
            .await
            .unwrap();
        assert_eq!(v, vec![Verdict::New, Verdict::New]);
        let v = store
            .check_and_mark(
                &[
                    (a.clone(), rec("b/one.json", 0)),
                    (b.clone(), rec("b/two.json", 7)),
                ],
                now + 10,
            )
            .await
            .unwrap();
        assert_eq!(
            v,
            vec![
                Verdict::Own,
                Verdict::Duplicate {
                    first: rec("b/one.json", 1)
                }
            ]
        );
        // Within one batch, the second of two records with one key is the duplicate.
        let c = key(unique, "device-2", "ins-9");
        let v = store
            .check_and_mark(
                &[
                    (c.clone(), rec("b/three.json", 4)),
                    (c.clone(), rec("b/three.json", 5)),
                ],
                now,
            )
            .await
            .unwrap();
        assert_eq!(
            v,
            vec![
                Verdict::New,
                Verdict::Duplicate {
                    first: rec("b/three.json", 4)
                }
            ]
        );
        // The same insert_id on another device, or in another source, is another event.
        let other_device = key(unique, "device-3", "ins-1");
        let other_source = DedupeKey {
            source: format!("other-{unique}"),
            ..a.clone()
        };
        let v = store
            .check_and_mark(
                &[
                    (other_device, rec("b/two.json", 0)),
                    (other_source, rec("b/two.json", 1)),
                ],
                now,
            )
            .await
            .unwrap();
        assert_eq!(v, vec![Verdict::New, Verdict::New]);
        // After the window the key is free again, whoever asks.
        let v = store
            .check_and_mark(&[(a.clone(), rec("b/four.json", 3))], now + WINDOW_SECS + 1)
            .await
            .unwrap();
        assert_eq!(v, vec![Verdict::New]);
        let v = store
            .check_and_mark(&[(a, rec("b/one.json", 0))], now + WINDOW_SECS + 2)
            .await
            .unwrap();
        assert_eq!(
            v,
            vec![Verdict::Duplicate {
                first: rec("b/four.json", 3)
            }]
        );
        // A mark is released only by the record holding it; then anyone may take the key.
        let r = key(unique, "device-4", "ins-rejected");
        let v = store
            .check_and_mark(&[(r.clone(), rec("b/bad.json", 2))], now)
            .await
            .unwrap();
        assert_eq!(v, vec![Verdict::New]);
        let released = store
            .release(&[(r.clone(), rec("b/other.json", 2))])
            .await
            .unwrap();
        assert_eq!(released, 0, "another record's release leaves the mark");
        let released = store
            .release(&[
                (r.clone(), rec("b/bad.json", 2)),
                (
                    key(unique, "device-4", "never-marked"),
                    rec("b/bad.json", 3),
                ),
            ])
            .await
            .unwrap();
        assert_eq!(released, 1);
        let v = store
            .check_and_mark(&[(r, rec("b/fixed.json", 2))], now + 60)
            .await
            .unwrap();
        assert_eq!(
            v,
            vec![Verdict::New],
            "a released key is free within the window"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_dedupe_meets_the_contract() {
        contract::run(&MemoryDedupe::default(), "mem").await;
    }

    #[test]
    fn keys_fall_back_to_the_user_id() {
        assert_eq!(
            DedupeKey::for_event("s", Some("d1"), Some("u1"), "i")
                .unwrap()
                .id,
            "d1"
        );
        assert_eq!(
            DedupeKey::for_event("s", None, Some("u1"), "i").unwrap().id,
            "user:u1"
        );
        assert_eq!(DedupeKey::for_event("s", None, None, "i"), None);
    }

    #[tokio::test]
    async fn two_objects_racing_on_one_insert_id_yield_one_new() {
        let store = std::sync::Arc::new(MemoryDedupe::default());
        let key = DedupeKey::for_event("s", Some("device-1"), None, "same").unwrap();
        let mut tasks = Vec::new();
        for obj in 0..8 {
            let (store, key) = (store.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .check_and_mark(
                        &[(
                            key,
                            RecordRef {
                                object: format!("b/{obj}.json"),
                                n: 0,
                            },
                        )],
                        100,
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut new = 0;
        for t in tasks {
            if t.await.unwrap() == vec![Verdict::New] {
                new += 1;
            }
        }
        assert_eq!(new, 1);
    }
}
