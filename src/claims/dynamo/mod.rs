//! The claims port on DynamoDB: one item per (source, bucket, key), every write conditional.
//! The single-item writes are here; the scan's batch reads and its queue marks in transactions
//! (set, confirmed, cleared) in `batch.rs`, over the same item layout and expression helpers.
//!
//! Item: `pk` (the key, see [`pk`]), `source`, `bucket`, `object_key`, `claim_state`
//! (`IN_PROGRESS` / `COMPLETED` / `FAILED` / `QUEUED`), `owner`, `lease_until` (epoch seconds),
//! `queued_until` (a scan's mark), `checkpoint`, `progress`, `summary`, `reason`, `updated_at`.
//! The lease is compared in the condition (`lease_until < :now`), never inferred from a missing
//! item. A scan reads claims with BatchGetItem (100 keys a request) and takes its queue marks
//! with conditional updates in transactions of up to 100 (as the dedupe table's puts): a batch
//! write cannot carry a condition, and an unconditional one could overwrite a claim taken or
//! completed between the read and the write.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{
    Capacity, ClaimKey, ClaimOutcome, ClaimState, ClaimStore, Held, Progress, ScanMark, StoreError,
    Summary,
};
use crate::dynamo::{
    item_bytes, num_attr, num_of, sdk_store_error, str_attr, str_of, CapacityMeter, Table,
};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

mod batch;
mod item;

pub use item::pk;
use item::{mark_pk, names_for, progress_text, state_of, COMPLETED, FAILED, IN_PROGRESS, QUEUED};

/// Keys per BatchGetItem (DynamoDB's limit).
const PER_BATCH_GET: usize = 100;
/// Actions per transaction (DynamoDB's limit).
const PER_TRANSACTION: usize = 100;
/// Requests of one `get_many` or `mark_queued` in flight at once.
const IN_FLIGHT: usize = 4;
/// Rounds for keys left unprocessed (throttling, conflicts).
const MAX_ROUNDS: u32 = 8;

/// Claims in a DynamoDB table whose partition key is the string attribute `pk`.
#[derive(Clone)]
pub struct DynamoClaims {
    client: Client,
    table: String,
    /// Requests made, for the scan's figures.
    requests: Arc<AtomicU64>,
    /// Capacity units: reads as found, writes estimated from what they write (claims are
    /// mostly under 1 KiB).
    capacity: Arc<CapacityMeter>,
}

type Item = HashMap<String, AttributeValue>;
/// One transaction of queue marks: the indices to try again, and those settled (marked or not).
type Round = (Vec<usize>, Vec<(usize, bool)>);

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl DynamoClaims {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoClaims {
            client,
            table: table.into(),
            requests: Arc::default(),
            capacity: Arc::default(),
        }
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A write request of about `bytes` (the values it sets; the rest of a claim is small).
    fn count_write(&self, bytes: usize) {
        self.capacity.write(bytes as u64 + 200, 1);
    }

    /// The error of a request to this table.
    fn error<E, R>(&self, e: &SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let table = Table {
            role: "claims",
            name: &self.table,
        };
        sdk_store_error(table, e)
    }

    /// An update that only the owner may make: `set` is the SET clause over `#st`, `#lease`, …
    async fn owned_update(
        &self,
        key: &ClaimKey,
        owner: &str,
        set: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Held, StoreError> {
        let update = format!("SET {set}, #updated_at = :upd");
        let condition = "#claim_state = :ip AND #owner = :o";
        self.count();
        let written: usize = values
            .iter()
            .map(|(_, v)| v.as_s().map_or(8, String::len))
            .sum();
        self.count_write(written);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .update_expression(&update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_for(&[&update, condition])))
            .expression_attribute_values(":ip", str_attr(IN_PROGRESS))
            .expression_attribute_values(":o", str_attr(owner))
            .expression_attribute_values(":upd", num_attr(now_secs()));
        for (name, value) in values {
            req = req.expression_attribute_values(name, value);
        }
        match req.send().await {
            Ok(_) => Ok(Held::Yes),
            Err(e) => {
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception())
                {
                    Ok(Held::Lost)
                } else {
                    Err(self.error(&e))
                }
            }
        }
    }
}

impl ClaimStore for DynamoClaims {
    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<ClaimOutcome, StoreError> {
        let update = "SET #claim_state = :ip, #owner = :o, #lease_until = :lease, \
             #checkpoint = if_not_exists(#checkpoint, :zero), \
             #progress = if_not_exists(#progress, :empty), \
             #source = :source, #bucket = :bucket, #object_key = :key, #updated_at = :now \
             REMOVE #reason, #summary, #queued_until";
        let condition = "attribute_not_exists(#pk) OR #claim_state = :queued \
             OR (#claim_state = :ip AND #lease_until < :now)";
        self.count();
        self.count_write(pk(key).len() * 2 + owner.len());
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_for(&[update, condition])))
            .expression_attribute_values(":ip", str_attr(IN_PROGRESS))
            .expression_attribute_values(":queued", str_attr(QUEUED))
            .expression_attribute_values(":o", str_attr(owner))
            .expression_attribute_values(":lease", num_attr(lease_until))
            .expression_attribute_values(":zero", num_attr(0))
            .expression_attribute_values(":empty", str_attr(""))
            .expression_attribute_values(":source", str_attr(&key.source))
            .expression_attribute_values(":bucket", str_attr(&key.bucket))
            .expression_attribute_values(":key", str_attr(&key.key))
            .expression_attribute_values(":now", num_attr(now))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(match out.attributes().filter(|a| !a.is_empty()) {
                None => ClaimOutcome::Acquired {
                    checkpoint: 0,
                    takeover: false,
                    progress: Progress::default(),
                },
                Some(old) => {
                    let checkpoint = num_of(old, "checkpoint").unwrap_or(0).max(0) as u64;
                    let stored = str_of(old, "progress").unwrap_or_default();
                    let progress = Progress::parse(stored);
                    // A scan's mark is no import: taking it over is a first start, unless
                    // it kept the checkpoint of an import whose lease had ended.
                    let queued = str_of(old, "claim_state") == Some(QUEUED);
                    ClaimOutcome::Acquired {
                        takeover: !queued || checkpoint > 0 || !stored.is_empty(),
                        checkpoint,
                        progress,
                    }
                }
            }),
            Err(e) => {
                let held = match e.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                        c.item().and_then(state_of)
                    }
                    _ => return Err(self.error(&e)),
                };
                // Stores that do not return the item on a failed condition: read it.
                let held = match held {
                    Some(h) => Some(h),
                    None => self.get(key).await?,
                };
                Ok(match held {
                    Some(ClaimState::Completed { .. }) => ClaimOutcome::AlreadyCompleted,
                    Some(ClaimState::Failed { reason, .. }) => {
                        ClaimOutcome::AlreadyFailed { reason }
                    }
                    Some(ClaimState::InProgress { lease_until, .. }) => {
                        ClaimOutcome::HeldByOther { lease_until }
                    }
                    // Marked queued between the attempt and the read: try again later.
                    Some(ClaimState::Queued { .. }) => {
                        ClaimOutcome::HeldByOther { lease_until: now }
                    }
                    // Deleted in between (a reset): the caller may simply try again later.
                    None => ClaimOutcome::HeldByOther { lease_until: now },
                })
            }
        }
    }

    async fn checkpoint(
        &self,
        key: &ClaimKey,
        owner: &str,
        records_confirmed: u64,
        progress: &Progress,
        lease_until: i64,
    ) -> Result<Held, StoreError> {
        self.owned_update(
            key,
            owner,
            "#checkpoint = :cp, #progress = :p, #lease_until = :lease",
            vec![
                (":cp", num_attr(records_confirmed as i64)),
                (":p", str_attr(progress_text(progress))),
                (":lease", num_attr(lease_until)),
            ],
        )
        .await
    }

    async fn complete(
        &self,
        key: &ClaimKey,
        owner: &str,
        summary: &Summary,
    ) -> Result<Held, StoreError> {
        let summary = serde_json::to_string(summary).unwrap_or_default();
        self.owned_update(
            key,
            owner,
            "#claim_state = :done, #summary = :s",
            vec![(":done", str_attr(COMPLETED)), (":s", str_attr(summary))],
        )
        .await
    }

    async fn fail(&self, key: &ClaimKey, owner: &str, reason: &str) -> Result<Held, StoreError> {
        self.owned_update(
            key,
            owner,
            "#claim_state = :failed, #reason = :r",
            vec![(":failed", str_attr(FAILED)), (":r", str_attr(reason))],
        )
        .await
    }

    async fn release(&self, key: &ClaimKey, owner: &str, now: i64) -> Result<Held, StoreError> {
        self.owned_update(
            key,
            owner,
            "#lease_until = :lease",
            vec![(":lease", num_attr(now - 1))],
        )
        .await
    }

    async fn reset_failed(&self, key: &ClaimKey, progress: &Progress) -> Result<bool, StoreError> {
        let update = "SET #claim_state = :ip, #owner = :empty, #lease_until = :zero, \
                      #checkpoint = :zero, #progress = :p REMOVE #reason";
        let names = [
            "#claim_state",
            "#owner",
            "#lease_until",
            "#checkpoint",
            "#progress",
            "#reason",
        ];
        self.count();
        self.count_write(0);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .condition_expression("#claim_state = :failed")
            .update_expression(update)
            .set_expression_attribute_names(Some(names_for(&names)))
            .expression_attribute_values(":failed", str_attr(FAILED))
            .expression_attribute_values(":ip", str_attr(IN_PROGRESS))
            .expression_attribute_values(":empty", str_attr(""))
            .expression_attribute_values(":zero", num_attr(0))
            .expression_attribute_values(":p", str_attr(progress_text(progress)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception())
                {
                    Ok(false)
                } else {
                    Err(self.error(&e))
                }
            }
        }
    }

    async fn get(&self, key: &ClaimKey) -> Result<Option<ClaimState>, StoreError> {
        self.count();
        self.capacity.consistent_read(1);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(&e))?;
        Ok(out.item().and_then(state_of))
    }

    async fn get_many(&self, keys: &[ClaimKey]) -> Result<Vec<Option<ClaimState>>, StoreError> {
        let pks: Vec<String> = keys.iter().map(pk).collect();
        let mut distinct = pks.clone();
        distinct.sort();
        distinct.dedup();
        let chunks: Vec<Vec<String>> = distinct
            .chunks(PER_BATCH_GET)
            .map(<[String]>::to_vec)
            .collect();
        let found: Vec<Vec<Item>> = futures_util::stream::iter(chunks)
            .map(|chunk| self.batch_get_all(chunk))
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        let mut by_pk: HashMap<String, Item> = HashMap::new();
        for item in found.into_iter().flatten() {
            if let Some(k) = str_of(&item, "pk").map(str::to_string) {
                by_pk.insert(k, item);
            }
        }
        Ok(pks
            .iter()
            .map(|k| by_pk.get(k).and_then(state_of))
            .collect())
    }

    async fn mark_queued(
        &self,
        keys: &[ClaimKey],
        queued_until: i64,
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        self.conditional_writes(keys, |k| self.mark(k, queued_until, now))
            .await
    }

    async fn confirm_queued(
        &self,
        keys: &[ClaimKey],
        from: i64,
        to: i64,
    ) -> Result<(), StoreError> {
        self.conditional_writes(keys, |k| self.extend_mark(k, from, to))
            .await
            .map(|_| ())
    }

    async fn clear_queued(&self, key: &ClaimKey) -> Result<bool, StoreError> {
        // A bare mark (no checkpoint of an earlier import) goes with its item.
        let condition = "#claim_state = :queued AND #checkpoint = :zero AND #progress = :empty";
        self.count();
        self.count_write(0);
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_for(&[condition])))
            .expression_attribute_values(":queued", str_attr(QUEUED))
            .expression_attribute_values(":zero", num_attr(0))
            .expression_attribute_values(":empty", str_attr(""))
            .send()
            .await;
        match deleted {
            Ok(_) => return Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(self.error(&e)),
        }
        // A mark that kept an ended import's checkpoint: that ended import again.
        let update = "SET #claim_state = :ip, #owner = :empty, #lease_until = :zero \
                      REMOVE #queued_until";
        let condition = "#claim_state = :queued";
        self.count();
        self.count_write(0);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_for(&[update, condition])))
            .expression_attribute_values(":queued", str_attr(QUEUED))
            .expression_attribute_values(":ip", str_attr(IN_PROGRESS))
            .expression_attribute_values(":empty", str_attr(""))
            .expression_attribute_values(":zero", num_attr(0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error(&e)),
        }
    }

    async fn unmark_queued(&self, key: &ClaimKey, queued_until: i64) -> Result<(), StoreError> {
        let update = "SET #queued_until = :zero";
        let condition = "#claim_state = :queued AND #queued_until = :q";
        self.count();
        self.count_write(0);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_for(&[update, condition])))
            .expression_attribute_values(":queued", str_attr(QUEUED))
            .expression_attribute_values(":q", num_attr(queued_until))
            .expression_attribute_values(":zero", num_attr(0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error(&e)),
        }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn capacity(&self) -> Capacity {
        self.capacity.total()
    }

    async fn scan_mark(
        &self,
        source: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Option<ScanMark>, StoreError> {
        // BatchGetItem (consistent), the read the function is granted already.
        let items = self
            .batch_get_all(vec![mark_pk(source, bucket, prefix)])
            .await?;
        Ok(items.first().map(|item| ScanMark {
            final_before: num_of(item, "final_before").unwrap_or(0),
            full_at: num_of(item, "full_at").unwrap_or(0),
        }))
    }

    async fn set_scan_mark(
        &self,
        source: &str,
        bucket: &str,
        prefix: &str,
        mark: ScanMark,
    ) -> Result<(), StoreError> {
        self.count();
        self.count_write(0);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", str_attr(mark_pk(source, bucket, prefix)))
            .update_expression("SET #final_before = :f, #full_at = :full, #updated_at = :now")
            .expression_attribute_names("#final_before", "final_before")
            .expression_attribute_names("#full_at", "full_at")
            .expression_attribute_names("#updated_at", "updated_at")
            .expression_attribute_values(":f", num_attr(mark.final_before))
            .expression_attribute_values(":full", num_attr(mark.full_at))
            .expression_attribute_values(":now", num_attr(now_secs()))
            .send()
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    async fn list(&self, source: &str) -> Result<Vec<(ClaimKey, ClaimState)>, StoreError> {
        let mut found = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("#source = :source")
            .set_expression_attribute_names(Some(names_for(&["#source"])))
            .expression_attribute_values(":source", str_attr(source))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.error(&e))?;
            if let Some(state) = state_of(&item) {
                found.push((
                    ClaimKey {
                        source: source.to_string(),
                        bucket: str_of(&item, "bucket").unwrap_or_default().to_string(),
                        key: str_of(&item, "object_key").unwrap_or_default().to_string(),
                    },
                    state,
                ));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_endpoint_is_named_with_its_table_and_cause() {
        let claims = DynamoClaims::new(crate::dynamo::unreachable_client().await, "s3i-claims");
        let key = ClaimKey {
            source: "s".into(),
            bucket: "b".into(),
            key: "k".into(),
        };
        let started = std::time::Instant::now();
        let e = claims.claim(&key, "me", 10, 0).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, StoreError::Unavailable(_)), "{text}");
        assert!(
            text.starts_with("claims table s3i-claims unreachable: connection refused"),
            "{text}"
        );
        assert!(!text.contains("unhandled error"), "{text}");
        assert!(started.elapsed().as_secs() < 5);
        let e = claims.get(&key).await.unwrap_err().to_string();
        assert!(e.contains("claims table s3i-claims"), "{e}");
    }
}
