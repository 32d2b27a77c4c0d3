//! The dedupe port on DynamoDB: conditional puts in transactions of up to 100.
//!
//! Item: `pk` (the key, see [`pk`]), `obj` and `n` (the record that first sent the event) and
//! `expires_at` (epoch seconds; the table's TTL attribute). A put succeeds when the key is
//! absent or its `expires_at` has passed (TTL deletes lazily, so the stored time decides). A
//! transaction is cancelled as a whole when any condition fails; its `CancellationReasons`,
//! with the old items, tell duplicates (another record) from the caller's own keys (a retried
//! or resumed object), and the rest go again in the next transaction. A batch without
//! duplicates costs one request per 100 events.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{DedupeKey, DedupeStore, RecordRef, StoreError, Verdict, WINDOW_SECS};
use crate::dynamo::{num_attr, num_of, sdk_store_error, str_attr, str_of, Table};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// DynamoDB allows 100 actions per transaction.
const PER_TRANSACTION: usize = 100;
/// Rounds for items whose transaction was cancelled by a conflict or throttling.
const MAX_ROUNDS: u32 = 8;

type Item = HashMap<String, AttributeValue>;

/// The 7-day dedupe in a DynamoDB table whose partition key is the string attribute `pk`.
pub struct DynamoDedupe {
    client: Client,
    table: String,
    /// Requests made, for the figures in reports and benchmarks.
    requests: AtomicU64,
}

/// The partition key: a JSON array, so that no id spelling can collide.
pub fn pk(key: &DedupeKey) -> String {
    serde_json::to_string(&[&key.source, &key.id, &key.insert_id]).unwrap_or_default()
}

fn owner_of(item: &Item) -> Option<RecordRef> {
    Some(RecordRef {
        object: str_of(item, "obj")?.to_string(),
        n: num_of(item, "n")?.max(0) as u64,
    })
}

fn verdict(old: RecordRef, record: &RecordRef) -> Verdict {
    if &old == record {
        Verdict::Own
    } else {
        Verdict::Duplicate { first: old }
    }
}

impl DynamoDedupe {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDedupe {
            client,
            table: table.into(),
            requests: AtomicU64::new(0),
        }
    }

    fn table(&self) -> Table<'_> {
        Table {
            role: "dedupe",
            name: &self.table,
        }
    }

    /// The error of a request to this table.
    fn error<E, R>(&self, e: &SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        sdk_store_error(self.table(), e)
    }

    fn put(
        &self,
        key: &DedupeKey,
        record: &RecordRef,
        now: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", str_attr(pk(key)))
            .item("obj", str_attr(&record.object))
            .item("n", num_attr(record.n as i64))
            .item("expires_at", num_attr(now + WINDOW_SECS))
            .condition_expression("attribute_not_exists(#pk) OR #expires_at <= :now")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#expires_at", "expires_at")
            .expression_attribute_values(":now", num_attr(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Refused(format!("{}: {e}", self.table())))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// One transaction over `batch` (indices into `events`). Settled verdicts go into `out`;
    /// the indices to try again are returned.
    async fn transact(
        &self,
        events: &[(DedupeKey, RecordRef)],
        batch: &[usize],
        now: i64,
        out: &mut [Option<Verdict>],
    ) -> Result<Vec<usize>, StoreError> {
        let mut req = self.client.transact_write_items();
        for &i in batch {
            req = req.transact_items(self.put(&events[i].0, &events[i].1, now)?);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let err = match req.send().await {
            Ok(_) => {
                for &i in batch {
                    out[i] = Some(Verdict::New);
                }
                return Ok(Vec::new());
            }
            Err(e) => e,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) =
            err.as_service_error()
        else {
            return Err(self.error(&err));
        };
        let reasons = cancel.cancellation_reasons();
        if reasons.len() != batch.len() {
            // No per-item reasons: nothing was written; try every item again.
            return Ok(batch.to_vec());
        }
        let mut again = Vec::new();
        let mut unread = Vec::new();
        for (&i, reason) in batch.iter().zip(reasons) {
            match reason.code() {
                Some("ConditionalCheckFailed") => match reason.item().and_then(owner_of) {
                    Some(old) => out[i] = Some(verdict(old, &events[i].1)),
                    None => unread.push(i),
                },
                // "None": this item was fine; conflicts and throttling: try again.
                _ => again.push(i),
            }
        }
        if !unread.is_empty() {
            again.extend(self.read_owners(events, &unread, now, out).await?);
        }
        Ok(again)
    }

    /// For stores that do not return the old item with a failed condition: read the owners.
    /// Keys found expired or gone are tried again.
    async fn read_owners(
        &self,
        events: &[(DedupeKey, RecordRef)],
        idx: &[usize],
        now: i64,
        out: &mut [Option<Verdict>],
    ) -> Result<Vec<usize>, StoreError> {
        let mut keys = KeysAndAttributes::builder().consistent_read(true);
        for &i in idx {
            keys = keys.keys(HashMap::from([(
                "pk".to_string(),
                str_attr(pk(&events[i].0)),
            )]));
        }
        let keys = keys
            .build()
            .map_err(|e| StoreError::Refused(format!("{}: {e}", self.table())))?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let got = self
            .client
            .batch_get_item()
            .request_items(&self.table, keys)
            .send()
            .await
            .map_err(|e| self.error(&e))?;
        let items: HashMap<&str, &Item> = got
            .responses()
            .and_then(|r| r.get(&self.table))
            .into_iter()
            .flatten()
            .filter_map(|item| Some((str_of(item, "pk")?, item)))
            .collect();
        let mut again = Vec::new();
        for &i in idx {
            let key = pk(&events[i].0);
            let live = items
                .get(key.as_str())
                .filter(|item| num_of(item, "expires_at").is_some_and(|t| t > now))
                .and_then(|item| owner_of(item));
            match live {
                Some(old) => out[i] = Some(verdict(old, &events[i].1)),
                None => again.push(i),
            }
        }
        Ok(again)
    }
}

impl DedupeStore for DynamoDedupe {
    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn check_and_mark(
        &self,
        events: &[(DedupeKey, RecordRef)],
        now: i64,
    ) -> Result<Vec<Verdict>, StoreError> {
        // A transaction may hold a key once: the first of a key goes to the table, the
        // others of the batch follow its verdict.
        let mut first_of: HashMap<&DedupeKey, usize> = HashMap::new();
        let mut follows = vec![None; events.len()];
        let mut todo = Vec::new();
        for (i, (key, _)) in events.iter().enumerate() {
            match first_of.get(key) {
                Some(&f) => follows[i] = Some(f),
                None => {
                    first_of.insert(key, i);
                    todo.push(i);
                }
            }
        }
        let mut out: Vec<Option<Verdict>> = vec![None; events.len()];
        for round in 0..MAX_ROUNDS {
            if todo.is_empty() {
                break;
            }
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(20 << round)).await;
            }
            let mut again = Vec::new();
            for batch in todo.chunks(PER_TRANSACTION) {
                again.extend(self.transact(events, batch, now, &mut out).await?);
            }
            todo = again;
        }
        if !todo.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "{}: {} keys still conflicting after {MAX_ROUNDS} rounds",
                self.table(),
                todo.len()
            )));
        }
        for (i, f) in follows.iter().enumerate() {
            if let Some(f) = *f {
                out[i] = Some(match &out[f] {
                    Some(Verdict::Duplicate { first }) => Verdict::Duplicate {
                        first: first.clone(),
                    },
                    _ => verdict(events[f].1.clone(), &events[i].1),
                });
            }
        }
        Ok(out.into_iter().map(|v| v.unwrap_or(Verdict::New)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_endpoint_is_named_with_its_table_and_cause() {
        let dedupe = DynamoDedupe::new(crate::dynamo::unreachable_client().await, "s3i-dedupe");
        let event = (
            DedupeKey {
                source: "s".into(),
                id: "d".into(),
                insert_id: "i".into(),
            },
            RecordRef {
                object: "o".into(),
                n: 0,
            },
        );
        let e = dedupe.check_and_mark(&[event], 0).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, StoreError::Unavailable(_)), "{text}");
        assert!(
            text.starts_with("dedupe table s3i-dedupe unreachable: connection refused"),
            "{text}"
        );
    }
}
