//! What the claims say: every claim of a source (`s3-import status`), or their totals
//! (`--summary`): objects by state, the records and events of the completed ones, and the
//! DynamoDB capacity units they consumed, with what those cost at on-demand prices.

use std::fmt::Write as _;

use serde::Serialize;

use crate::claims::{ClaimState, ClaimStore};
use crate::pipeline::{Adapters, Pipeline};
use crate::report::Counts;
use crate::store::{Capacity, StoreError};

/// The totals of a source's claims.
#[derive(Debug, Default, Serialize)]
pub struct StatusSummary {
    pub source: String,
    pub completed: u64,
    pub failed: u64,
    pub in_progress: u64,
    pub queued: u64,
    /// The completed objects' counts, added up.
    pub counts: Counts,
    /// The completed objects' invocations, added up.
    pub invocations: u64,
    /// The DynamoDB capacity units the completed objects consumed (each object's claim,
    /// dedupe and releases; see `Report::dynamodb`).
    pub dynamodb: Capacity,
    /// What [`StatusSummary::dynamodb`] costs at on-demand prices, in dollars.
    pub dynamodb_dollars: f64,
}

impl std::fmt::Display for StatusSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "source {}: {} objects completed, {} failed, {} in progress, {} queued",
            self.source, self.completed, self.failed, self.in_progress, self.queued
        )?;
        writeln!(f, "completed objects: {c}")?;
        writeln!(f, "invocations {}", self.invocations)?;
        let per_million = if c.payloads > 0 {
            format!(
                ", ${:.3} per million events",
                self.dynamodb_dollars * 1e6 / c.payloads as f64
            )
        } else {
            String::new()
        };
        write!(
            f,
            "DynamoDB: {} write units, {} read units (${:.4} at on-demand prices{per_million})",
            self.dynamodb.write_units, self.dynamodb.read_units, self.dynamodb_dollars
        )
    }
}

impl<A: Adapters> Pipeline<A> {
    /// Every claim of this source, for a person (`--json`: one JSON object per line).
    pub async fn status(&self, json: bool) -> Result<String, StoreError> {
        let mut claims = self.claims.list(&self.settings.source).await?;
        claims.sort_by(|a, b| (&a.0.bucket, &a.0.key).cmp(&(&b.0.bucket, &b.0.key)));
        let mut out = String::new();
        for (key, state) in &claims {
            let (label, detail) = match state {
                ClaimState::Completed { summary } => {
                    let c = &summary.counts;
                    (
                        "COMPLETED",
                        format!(
                            "records {} sent {} duplicates {} invalid {} rejected {}  {}",
                            c.records,
                            c.sent,
                            c.duplicates,
                            c.invalid,
                            c.rejected,
                            summary.report.as_deref().unwrap_or("")
                        ),
                    )
                }
                ClaimState::Failed { reason, .. } => ("FAILED", reason.clone()),
                ClaimState::Queued {
                    queued_until,
                    checkpoint,
                    ..
                } => (
                    "QUEUED",
                    format!("queued by a scan (its message in flight until {queued_until}), checkpoint {checkpoint}"),
                ),
                ClaimState::InProgress {
                    checkpoint,
                    progress,
                    lease_until,
                    ..
                } => {
                    (
                        "IN_PROGRESS",
                        format!(
                            "checkpoint {checkpoint} (sent {}), lease until {lease_until}",
                            progress.counts.sent
                        ),
                    )
                }
            };
            if json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::json!({"bucket": key.bucket, "key": key.key, "state": label, "detail": detail})
                );
            } else {
                let _ = writeln!(out, "{label:<12} s3://{}/{}  {detail}", key.bucket, key.key);
            }
        }
        if !json && claims.is_empty() {
            out.push_str("no claims yet\n");
        }
        Ok(out)
    }
    /// The totals of this source's claims.
    pub async fn status_summary(&self) -> Result<StatusSummary, StoreError> {
        let claims = self.claims.list(&self.settings.source).await?;
        let mut s = StatusSummary {
            source: self.settings.source.clone(),
            ..StatusSummary::default()
        };
        for (_, state) in &claims {
            match state {
                ClaimState::Completed { summary } => {
                    s.completed += 1;
                    s.counts.add(&summary.counts);
                    s.invocations += u64::from(summary.invocations);
                    s.dynamodb = s.dynamodb + summary.capacity;
                }
                ClaimState::Failed { .. } => s.failed += 1,
                ClaimState::InProgress { .. } => s.in_progress += 1,
                ClaimState::Queued { .. } => s.queued += 1,
            }
        }
        s.dynamodb_dollars = s.dynamodb.dollars();
        Ok(s)
    }
}
