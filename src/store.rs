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
