//! DynamoDB helpers for the claims and dedupe adapters: attribute values in and out, and
//! service errors classified as retryable or not (naming the table they concern).

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

use crate::claims::StoreError;

/// A string attribute.
pub fn str_attr(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub fn num_attr(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A string attribute of an item.
pub fn str_of<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

/// A number attribute of an item.
pub fn num_of(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// Error codes that no retry will fix.
const PERMANENT: &[&str] = &[
    "ResourceNotFoundException",
    "AccessDeniedException",
    "ValidationException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
];

/// A service error of the claims or dedupe table, classified as retryable or not.
pub fn store_error<E: ProvideErrorMetadata + std::fmt::Display>(e: E) -> StoreError {
    let code = e.code().unwrap_or("");
    let detail = match e.message() {
        Some(m) => format!("{code}: {m}"),
        None if code.is_empty() => e.to_string(),
        None => code.to_string(),
    };
    if PERMANENT.contains(&code) {
        StoreError::Refused(detail)
    } else {
        StoreError::Unavailable(detail)
    }
}
