//! The error of the claims and dedupe stores, below both ports and their adapters.

/// An error of the claims or the dedupe store. The text says which store (`claims table
/// s3-import-claims`, `dedupe table …`) and the cause (connection refused, throttled, missing
/// table, …); see `crate::dynamo::store_error_of`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with a retryable error.
    #[error("{0}")]
    Unavailable(String),
    /// The store refused the request for good (permissions, missing table, …).
    #[error("{0}")]
    Refused(String),
}

/// DynamoDB capacity units a store's requests consumed, counted request by request by the
/// on-demand rules (a write: 1 unit per KiB of the item, a failed condition included; a
/// transaction's items twice; a consistent read: 1 unit per 4 KiB, an item not found
/// included). The local stack does not report capacity for every request (PartiQL batches,
/// failed conditions), so the figures are counted, not read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    pub read_units: u64,
    pub write_units: u64,
}

impl Capacity {
    /// What was consumed since `before`.
    pub fn since(self, before: Capacity) -> Capacity {
        Capacity {
            read_units: self.read_units.saturating_sub(before.read_units),
            write_units: self.write_units.saturating_sub(before.write_units),
        }
    }
}
