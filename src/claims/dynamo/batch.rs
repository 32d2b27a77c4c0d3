//! The claims table's batch requests, for scans: consistent BatchGetItem reads of many claims
//! (100 keys a request, unprocessed keys read again) and the queue marks, conditional updates
//! in transactions of up to 100 (a batch write cannot carry a condition), several in flight,
//! with the items whose condition failed told apart from a cancelled transaction.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{KeysAndAttributes, TransactWriteItem, Update};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::time::Duration;

use super::*;

impl DynamoClaims {
    /// One BatchGetItem round over `keys` (at most 100, distinct): the items found by `pk`,
    /// and the keys DynamoDB left unprocessed.
    pub(super) async fn batch_get(
        &self,
        keys: Vec<String>,
    ) -> Result<(Vec<Item>, Vec<String>), StoreError> {
        let mut ka = KeysAndAttributes::builder().consistent_read(true);
        for k in &keys {
            ka = ka.keys(HashMap::from([("pk".to_string(), str_attr(k))]));
        }
        let ka = ka
            .build()
            .map_err(|e| StoreError::Refused(format!("claims table {}: {e}", self.table)))?;
        self.count();
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, ka)
            .send()
            .await
            .map_err(|e| self.error(&e))?;
        let items: Vec<Item> = out
            .responses()
            .and_then(|r| r.get(&self.table))
            .cloned()
            .unwrap_or_default();
        for item in &items {
            self.capacity.consistent_read(item_bytes(item));
        }
        let left: Vec<String> = out
            .unprocessed_keys()
            .and_then(|u| u.get(&self.table))
            .map(|ka| {
                ka.keys()
                    .iter()
                    .filter_map(|k| str_of(k, "pk").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        // A key not found costs a read too.
        let missing = keys.len().saturating_sub(items.len() + left.len());
        for _ in 0..missing {
            self.capacity.consistent_read(1);
        }
        Ok((items, left))
    }

    /// Every item of `keys` (distinct, at most 100), retrying what DynamoDB leaves unprocessed.
    pub(super) async fn batch_get_all(
        &self,
        mut keys: Vec<String>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for round in 0..MAX_ROUNDS {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(20 << round)).await;
            }
            let (items, left) = self.batch_get(keys).await?;
            found.extend(items);
            if left.is_empty() {
                return Ok(found);
            }
            keys = left;
        }
        Err(StoreError::Unavailable(format!(
            "claims table {}: {} keys still unprocessed after {MAX_ROUNDS} rounds",
            self.table,
            keys.len()
        )))
    }

    /// The queue mark's conditional update of one key.
    pub(super) fn mark(
        &self,
        key: &ClaimKey,
        queued_until: i64,
        now: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = "SET #claim_state = :queued, #queued_until = :q, \
             #checkpoint = if_not_exists(#checkpoint, :zero), \
             #progress = if_not_exists(#progress, :empty), \
             #source = :source, #bucket = :bucket, #object_key = :key, #updated_at = :now";
        let condition = "attribute_not_exists(#pk) \
             OR (#claim_state = :queued AND #queued_until < :now) \
             OR (#claim_state = :ip AND #lease_until < :now)";
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_for(&[update, condition])))
            .expression_attribute_values(":queued", str_attr(QUEUED))
            .expression_attribute_values(":ip", str_attr(IN_PROGRESS))
            .expression_attribute_values(":q", num_attr(queued_until))
            .expression_attribute_values(":zero", num_attr(0))
            .expression_attribute_values(":empty", str_attr(""))
            .expression_attribute_values(":source", str_attr(&key.source))
            .expression_attribute_values(":bucket", str_attr(&key.bucket))
            .expression_attribute_values(":key", str_attr(&key.key))
            .expression_attribute_values(":now", num_attr(now))
            .build()
            .map_err(|e| StoreError::Refused(format!("claims table {}: {e}", self.table)))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The update that extends this scan's mark `from` to `to` (its message was sent).
    pub(super) fn extend_mark(
        &self,
        key: &ClaimKey,
        from: i64,
        to: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = "SET #queued_until = :to";
        let condition = "#claim_state = :queued AND #queued_until = :from";
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_for(&[update, condition])))
            .expression_attribute_values(":queued", str_attr(QUEUED))
            .expression_attribute_values(":from", num_attr(from))
            .expression_attribute_values(":to", num_attr(to))
            .build()
            .map_err(|e| StoreError::Refused(format!("claims table {}: {e}", self.table)))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// One transaction of queue marks over `batch` (indices into `keys`): settled answers go
    /// into `out`, the indices to try again are returned. A transaction is cancelled as a
    /// whole when one condition fails; its reasons say which keys are held (not marked), and
    /// the others go again.
    pub(super) async fn mark_round(
        &self,
        keys: &[ClaimKey],
        batch: &[usize],
        write: &(impl Fn(&ClaimKey) -> Result<TransactWriteItem, StoreError> + Sync),
        out: &mut [Option<bool>],
    ) -> Result<Vec<usize>, StoreError> {
        let mut req = self.client.transact_write_items();
        for &i in batch {
            req = req.transact_items(write(&keys[i])?);
            self.capacity.write(pk(&keys[i]).len() as u64 + 200, 2);
        }
        self.count();
        let err = match req.send().await {
            Ok(_) => {
                for &i in batch {
                    out[i] = Some(true);
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
            return Ok(batch.to_vec());
        }
        let mut again = Vec::new();
        for (&i, reason) in batch.iter().zip(reasons) {
            match reason.code() {
                Some("ConditionalCheckFailed") => out[i] = Some(false),
                _ => again.push(i),
            }
        }
        Ok(again)
    }

    /// One conditional write per key (`write` builds it), in transactions of up to 100, several
    /// in flight: true where its condition held. A cancelled transaction's reasons say which
    /// conditions failed; the others go again.
    pub(super) async fn conditional_writes(
        &self,
        keys: &[ClaimKey],
        write: impl Fn(&ClaimKey) -> Result<TransactWriteItem, StoreError> + Sync,
    ) -> Result<Vec<bool>, StoreError> {
        // A transaction may name an item once: a repeated key follows its first.
        let mut first_of: HashMap<String, usize> = HashMap::new();
        let mut todo = Vec::new();
        let mut follows = vec![None; keys.len()];
        for (i, k) in keys.iter().enumerate() {
            match first_of.get(&pk(k)) {
                Some(&f) => follows[i] = Some(f),
                None => {
                    first_of.insert(pk(k), i);
                    todo.push(i);
                }
            }
        }
        let mut out: Vec<Option<bool>> = vec![None; keys.len()];
        let write = &write;
        for round in 0..MAX_ROUNDS {
            if todo.is_empty() {
                break;
            }
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(20 << round)).await;
            }
            let batches: Vec<Vec<usize>> = todo
                .chunks(PER_TRANSACTION)
                .map(<[usize]>::to_vec)
                .collect();
            let rounds: Vec<Round> = futures_util::stream::iter(batches)
                .map(|batch: Vec<usize>| async move {
                    let mut local = vec![None; keys.len()];
                    let again = self.mark_round(keys, &batch, write, &mut local).await?;
                    let settled = batch
                        .iter()
                        .filter_map(|&i| local[i].map(|m| (i, m)))
                        .collect();
                    Ok::<_, StoreError>((again, settled))
                })
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            todo = Vec::new();
            for (again, settled) in rounds {
                todo.extend(again);
                for (i, m) in settled {
                    out[i] = Some(m);
                }
            }
        }
        if !todo.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "claims table {}: {} conditional writes still conflicting after {MAX_ROUNDS} rounds",
                self.table,
                todo.len()
            )));
        }
        // A repeated key was marked once, by its first: the others are not queued again.
        for (i, f) in follows.iter().enumerate() {
            if f.is_some() {
                out[i] = Some(false);
            }
        }
        Ok(out.into_iter().map(|m| m.unwrap_or(false)).collect())
    }
}
