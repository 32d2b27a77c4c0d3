//! The claims port on DynamoDB: one item per (source, bucket, key), every write conditional.
//!
//! Item: `pk` (the key, see [`pk`]), `source`, `bucket`, `object_key`, `claim_state`
//! (`IN_PROGRESS` / `COMPLETED` / `FAILED`), `owner`, `lease_until` (epoch seconds),
//! `checkpoint`, `progress`, `summary`, `reason`, `updated_at`. The lease is compared in the
//! condition (`lease_until < :now`), never inferred from a missing item.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

use super::{ClaimKey, ClaimOutcome, ClaimState, ClaimStore, Held, StoreError};
use crate::dynamo::{num_attr, num_of, sdk_store_error, str_attr, str_of, Table};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";
const FAILED: &str = "FAILED";

/// Claims in a DynamoDB table whose partition key is the string attribute `pk`.
#[derive(Clone)]
pub struct DynamoClaims {
    client: Client,
    table: String,
}

/// The partition key: a JSON array, so that no bucket or key spelling can collide.
pub fn pk(key: &ClaimKey) -> String {
    serde_json::to_string(&[&key.source, &key.bucket, &key.key]).unwrap_or_default()
}

type Item = HashMap<String, AttributeValue>;

fn state_of(item: &Item) -> Option<ClaimState> {
    Some(match str_of(item, "claim_state")? {
        IN_PROGRESS => ClaimState::InProgress {
            owner: str_of(item, "owner").unwrap_or_default().to_string(),
            lease_until: num_of(item, "lease_until").unwrap_or(0),
            checkpoint: num_of(item, "checkpoint").unwrap_or(0).max(0) as u64,
            progress: str_of(item, "progress").unwrap_or_default().to_string(),
        },
        COMPLETED => ClaimState::Completed {
            summary: str_of(item, "summary").unwrap_or_default().to_string(),
        },
        _ => ClaimState::Failed {
            reason: str_of(item, "reason").unwrap_or_default().to_string(),
            progress: str_of(item, "progress").unwrap_or_default().to_string(),
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
];

/// The placeholders an expression uses; DynamoDB refuses unused ones, so pick them from
/// the expressions.
fn names_for(exprs: &[&str]) -> HashMap<String, String> {
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
        }
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
             REMOVE #reason, #summary";
        let condition = "attribute_not_exists(#pk) OR (#claim_state = :ip AND #lease_until < :now)";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", str_attr(pk(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_for(&[update, condition])))
            .expression_attribute_values(":ip", str_attr(IN_PROGRESS))
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
                    progress: String::new(),
                },
                Some(old) => ClaimOutcome::Acquired {
                    checkpoint: num_of(old, "checkpoint").unwrap_or(0).max(0) as u64,
                    takeover: true,
                    progress: str_of(old, "progress").unwrap_or_default().to_string(),
                },
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
        progress: &str,
        lease_until: i64,
    ) -> Result<Held, StoreError> {
        self.owned_update(
            key,
            owner,
            "#checkpoint = :cp, #progress = :p, #lease_until = :lease",
            vec![
                (":cp", num_attr(records_confirmed as i64)),
                (":p", str_attr(progress)),
                (":lease", num_attr(lease_until)),
            ],
        )
        .await
    }

    async fn complete(
        &self,
        key: &ClaimKey,
        owner: &str,
        summary: &str,
    ) -> Result<Held, StoreError> {
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

    async fn reset_failed(&self, key: &ClaimKey, progress: &str) -> Result<bool, StoreError> {
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
            .expression_attribute_values(":p", str_attr(progress))
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
