//! The dedupe port on DynamoDB: PartiQL inserts in batches of 25, one write unit per event.
//!
//! Item: `pk` (the key, see [`pk`]), `obj` and `n` (the record that first sent the event) and
//! `expires_at` (epoch seconds; the table's TTL attribute). Each event is one `INSERT` of a
//! `BatchExecuteStatement` (25 a request, several requests in flight): DynamoDB makes each
//! insert conditional on the key being absent and settles it alone, so a duplicate costs its
//! own write unit and nothing else (a transaction of conditional puts cost 2 units an event,
//! and a duplicate cancelled the whole transaction, whose other items were written again).
//! An insert that finds the key (`DuplicateItem`) reads the holder: with the old item when the
//! store returns it, else one consistent `BatchGetItem` for the batch's found keys. A live
//! holder is this record (`Own`: a retried or resumed object) or another (`Duplicate`). A holder
//! whose `expires_at` has passed (TTL deletes lazily) is replaced by a `PutItem` conditional on
//! that expiry, and a key deleted in between is inserted again, for a few rounds.
//! `release` deletes a mark conditionally on its holder (`DeleteItem`).

use aws_sdk_dynamodb::types::{
    AttributeValue, BatchStatementErrorCodeEnum, BatchStatementRequest, KeysAndAttributes,
    ReturnValuesOnConditionCheckFailure,
};
use aws_sdk_dynamodb::Client;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Capacity, DedupeKey, DedupeStore, RecordRef, StoreError, Verdict, WINDOW_SECS};
use crate::dynamo::{
    item_bytes, num_attr, num_of, sdk_store_error, str_attr, str_of, CapacityMeter, Table,
};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// DynamoDB allows 25 statements per BatchExecuteStatement.
const PER_BATCH: usize = 25;
/// Keys per BatchGetItem.
const PER_BATCH_GET: usize = 100;
/// Requests of one call in flight at once.
const IN_FLIGHT: usize = 4;
/// Rounds for keys throttled, or deleted or taken over between the insert and the read.
const MAX_ROUNDS: u32 = 8;

type Item = HashMap<String, AttributeValue>;
type Events = [(DedupeKey, RecordRef)];

/// The 7-day dedupe in a DynamoDB table whose partition key is the string attribute `pk`.
pub struct DynamoDedupe {
    client: Client,
    table: String,
    /// Requests made, for the figures in reports and benchmarks.
    requests: AtomicU64,
    capacity: CapacityMeter,
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

/// What one event's attempt came to.
enum Step {
    Settled(Verdict),
    /// The key is held, by an item we have not seen (or seen expired: `Some(true)`).
    Held {
        expired: bool,
    },
    /// Throttled, conflicting, or the key vanished in between: the next round.
    Again,
}

/// The holder of a found item: its verdict while live, else that it expired.
fn judge(item: &Item, record: &RecordRef, now: i64) -> Step {
    let live = num_of(item, "expires_at").is_some_and(|t| t > now);
    match owner_of(item) {
        Some(old) if live => Step::Settled(verdict(old, record)),
        _ => Step::Held { expired: true },
    }
}

impl DynamoDedupe {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDedupe {
            client,
            table: table.into(),
            requests: AtomicU64::new(0),
            capacity: CapacityMeter::default(),
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

    fn refused(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Refused(format!("{}: {e}", self.table()))
    }

    /// The item that marks `key` as `record`'s until the window ends.
    fn item(key: &DedupeKey, record: &RecordRef, now: i64) -> Item {
        HashMap::from([
            ("pk".to_string(), str_attr(pk(key))),
            ("obj".to_string(), str_attr(&record.object)),
            ("n".to_string(), num_attr(record.n as i64)),
            ("expires_at".to_string(), num_attr(now + WINDOW_SECS)),
        ])
    }

    /// One BatchExecuteStatement of inserts over `batch` (indices into `events`, distinct keys).
    async fn insert(
        &self,
        events: &Events,
        batch: &[usize],
        now: i64,
    ) -> Result<Vec<(usize, Step)>, StoreError> {
        let statement = format!(
            "INSERT INTO \"{}\" VALUE {{'pk': ?, 'obj': ?, 'n': ?, 'expires_at': ?}}",
            self.table
        );
        let mut statements = Vec::with_capacity(batch.len());
        for &i in batch {
            let (key, record) = &events[i];
            let item = Self::item(key, record, now);
            // A failed insert costs its write too.
            self.capacity.write(item_bytes(&item), 1);
            let s = BatchStatementRequest::builder()
                .statement(&statement)
                .parameters(item["pk"].clone())
                .parameters(item["obj"].clone())
                .parameters(item["n"].clone())
                .parameters(item["expires_at"].clone())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| self.refused(e))?;
            statements.push(s);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let out = self
            .client
            .batch_execute_statement()
            .set_statements(Some(statements))
            .send()
            .await
            .map_err(|e| self.error(&e))?;
        let responses = out.responses();
        if responses.len() != batch.len() {
            return Err(StoreError::Unavailable(format!(
                "{}: {} answers to {} inserts",
                self.table(),
                responses.len(),
                batch.len()
            )));
        }
        let mut steps = Vec::with_capacity(batch.len());
        for (&i, response) in batch.iter().zip(responses) {
            let Some(error) = response.error() else {
                steps.push((i, Step::Settled(Verdict::New)));
                continue;
            };
            use BatchStatementErrorCodeEnum as Code;
            let step = match error.code() {
                Some(Code::DuplicateItem | Code::ConditionalCheckFailed) => {
                    match error.item().filter(|item| !item.is_empty()) {
                        Some(item) => judge(item, &events[i].1, now),
                        None => Step::Held { expired: false },
                    }
                }
                Some(
                    Code::ProvisionedThroughputExceeded
                    | Code::ThrottlingError
                    | Code::RequestLimitExceeded
                    | Code::TransactionConflict
                    | Code::InternalServerError,
                ) => Step::Again,
                code => {
                    let code = code.map_or("unknown error", |c| c.as_str());
                    return Err(self.refused(format!(
                        "an insert was refused: {code}: {}",
                        error.message().unwrap_or("")
                    )));
                }
            };
            steps.push((i, step));
        }
        Ok(steps)
    }

    /// The holders of `idx`'s keys (one consistent BatchGetItem, at most 100 distinct keys),
    /// judged; keys no longer there go again.
    async fn read_holders(
        &self,
        events: &Events,
        idx: &[usize],
        now: i64,
    ) -> Result<Vec<(usize, Step)>, StoreError> {
        let mut keys = KeysAndAttributes::builder().consistent_read(true);
        for &i in idx {
            keys = keys.keys(HashMap::from([(
                "pk".to_string(),
                str_attr(pk(&events[i].0)),
            )]));
        }
        let keys = keys.build().map_err(|e| self.refused(e))?;
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
        let mut steps = Vec::with_capacity(idx.len());
        for &i in idx {
            let key = pk(&events[i].0);
            let step = match items.get(key.as_str()) {
                Some(item) => {
                    self.capacity.consistent_read(item_bytes(item));
                    judge(item, &events[i].1, now)
                }
                // Not found (deleted since, or left unprocessed): insert again.
                None => {
                    self.capacity.consistent_read(1);
                    Step::Again
                }
            };
            steps.push((i, step));
        }
        Ok(steps)
    }

    /// Replaces an expired mark with this record's, conditional on the expiry (or absence).
    async fn replace_expired(
        &self,
        events: &Events,
        i: usize,
        now: i64,
    ) -> Result<Step, StoreError> {
        let (key, record) = &events[i];
        let item = Self::item(key, record, now);
        self.capacity.write(item_bytes(&item), 1);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #expires_at <= :now")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#expires_at", "expires_at")
            .expression_attribute_values(":now", num_attr(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Step::Settled(Verdict::New)),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    // Another took the key first; read its holder when not returned.
                    Ok(match c.item() {
                        Some(item) => judge(item, record, now),
                        None => Step::Held { expired: false },
                    })
                }
                _ => Err(self.error(&e)),
            },
        }
    }
}

impl DedupeStore for DynamoDedupe {
    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn capacity(&self) -> Capacity {
        self.capacity.total()
    }

    async fn check_and_mark(&self, events: &Events, now: i64) -> Result<Vec<Verdict>, StoreError> {
        // A batch may hold a key once: the first of a key goes to the table, the others of
        // the call follow its verdict.
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
            let batches: Vec<Vec<usize>> = todo.chunks(PER_BATCH).map(<[usize]>::to_vec).collect();
            let inserted: Vec<Vec<(usize, Step)>> = futures_util::stream::iter(batches)
                .map(|batch| async move { self.insert(events, &batch, now).await })
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            let mut again = Vec::new();
            let mut unread = Vec::new();
            let mut expired = Vec::new();
            let mut settle = |steps: Vec<(usize, Step)>,
                              unread: &mut Vec<usize>,
                              expired: &mut Vec<usize>,
                              again: &mut Vec<usize>| {
                for (i, step) in steps {
                    match step {
                        Step::Settled(v) => out[i] = Some(v),
                        Step::Held { expired: false } => unread.push(i),
                        Step::Held { expired: true } => expired.push(i),
                        Step::Again => again.push(i),
                    }
                }
            };
            for steps in inserted {
                settle(steps, &mut unread, &mut expired, &mut again);
            }
            let chunks: Vec<Vec<usize>> = unread
                .chunks(PER_BATCH_GET)
                .map(<[usize]>::to_vec)
                .collect();
            let read: Vec<Vec<(usize, Step)>> = futures_util::stream::iter(chunks)
                .map(|idx| async move { self.read_holders(events, &idx, now).await })
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            let mut unread_again = Vec::new();
            for steps in read {
                settle(steps, &mut unread_again, &mut expired, &mut again);
            }
            // A holder read once already and still unseen: the next round reads it again.
            again.extend(unread_again);
            let replaced: Vec<(usize, Step)> = futures_util::stream::iter(expired)
                .map(|i| async move {
                    Ok::<_, StoreError>((i, self.replace_expired(events, i, now).await?))
                })
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            let mut held = Vec::new();
            settle(replaced, &mut held, &mut Vec::new(), &mut again);
            // Lost the replacement to another without its item returned: start over for it.
            again.extend(held);
            todo = again;
        }
        if !todo.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "{}: {} keys still unsettled after {MAX_ROUNDS} rounds (throttled or contended)",
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

    async fn release(&self, events: &Events) -> Result<usize, StoreError> {
        let released: Vec<bool> = futures_util::stream::iter(0..events.len())
            .map(|i| async move {
                let (key, record) = &events[i];
                self.capacity.write(1, 1);
                self.requests.fetch_add(1, Ordering::Relaxed);
                let result = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", str_attr(pk(key)))
                    .condition_expression("#obj = :obj AND #n = :n")
                    .expression_attribute_names("#obj", "obj")
                    .expression_attribute_names("#n", "n")
                    .expression_attribute_values(":obj", str_attr(&record.object))
                    .expression_attribute_values(":n", num_attr(record.n as i64))
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(true),
                    // Held by another record, or not there: nothing of ours to take back.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(self.error(&e)),
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(released.into_iter().filter(|r| *r).count())
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
