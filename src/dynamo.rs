//! DynamoDB helpers for the claims and dedupe adapters: attribute values in and out, and
//! service errors classified as retryable or not (naming the table they concern).

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::error::Error;
use std::{fmt, io};

use crate::store::StoreError;

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

/// Error codes of a table (or account) over its capacity: retried, reported as throttling.
const THROTTLED: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
];

/// The table an error concerns, as messages name it: `claims table s3-import-claims`.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    /// `claims` or `dedupe`.
    pub role: &'static str,
    pub name: &'a str,
}

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} table {}", self.role, self.name)
    }
}

/// The error of a request to `table`, from what the SDK said: a service error's `code` and
/// `message`, or (no code) the `cause` of a failure to reach the service. Throttling and
/// transport failures are retryable (`Unavailable`); the codes in [`PERMANENT`] are not.
pub fn store_error_of(table: Table<'_>, code: &str, message: &str, cause: &str) -> StoreError {
    let said = match (code, message) {
        ("", "") => String::new(),
        ("", m) => m.to_string(),
        (c, "") => c.to_string(),
        (c, m) => format!("{c}: {m}"),
    };
    if code == "ResourceNotFoundException" {
        return StoreError::Refused(format!(
            "{table} does not exist (create it with `s3-import setup` or the SAM template)"
        ));
    }
    if PERMANENT.contains(&code) {
        return StoreError::Refused(format!("{table} refused the request: {said}"));
    }
    if THROTTLED.contains(&code) {
        return StoreError::Unavailable(format!("{table} throttled: {said}"));
    }
    if code.is_empty() && !cause.is_empty() {
        let cause = if said.is_empty() {
            cause.to_string()
        } else {
            format!("{cause} ({said})")
        };
        return StoreError::Unavailable(format!("{table} unreachable: {cause}"));
    }
    let said = if said.is_empty() {
        "unknown error"
    } else {
        &said
    };
    StoreError::Unavailable(format!("{table} unavailable: {said}"))
}

/// What a transport failure comes down to: the innermost error of the chain, named plainly
/// when it is an I/O error of a common kind (`connection refused: …`).
pub fn root_cause(e: &(dyn Error + 'static)) -> String {
    let mut root = e;
    let mut io_kind = None;
    let mut at = Some(e);
    while let Some(err) = at {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        root = err;
        at = err.source();
    }
    let plain = match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => "connection refused",
        Some(io::ErrorKind::ConnectionReset) => "connection reset",
        Some(io::ErrorKind::ConnectionAborted) => "connection aborted",
        Some(io::ErrorKind::TimedOut) => "timed out",
        Some(io::ErrorKind::NotConnected) => "not connected",
        _ => return root.to_string(),
    };
    let root = root.to_string();
    match root.get(..plain.len()) {
        // "Connection refused (os error 111)": said already.
        Some(head) if head.eq_ignore_ascii_case(plain) => {
            format!("{plain}{}", &root[plain.len()..])
        }
        _ => format!("{plain}: {root}"),
    }
}

fn timed_out(e: &(dyn Error + 'static)) -> String {
    let root = root_cause(e);
    if root.starts_with("timed out") {
        root
    } else {
        format!("timed out ({root})")
    }
}

/// The error of an SDK request to `table`: service errors by their code, the rest (no
/// connection, a timeout, an unreadable response, a request that could not be built) by their
/// root cause; all but the service's permanent codes are retryable, as before.
pub fn sdk_store_error<E, R>(table: Table<'_>, e: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + Error + 'static,
    R: fmt::Debug + 'static,
{
    match e {
        SdkError::ServiceError(s) => store_error_of(
            table,
            s.err().code().unwrap_or(""),
            s.err().message().unwrap_or(""),
            "",
        ),
        SdkError::TimeoutError(_) => store_error_of(table, "", "", &timed_out(e)),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            store_error_of(table, "", "", &timed_out(e))
        }
        SdkError::ResponseError(_) => store_error_of(
            table,
            "",
            "",
            &format!("unreadable response: {}", root_cause(e)),
        ),
        SdkError::ConstructionFailure(_) => store_error_of(
            table,
            "",
            &format!("the request could not be built: {}", root_cause(e)),
            "",
        ),
        _ => store_error_of(table, "", "", &root_cause(e)),
    }
}

/// A DynamoDB client for a port where nothing listens, quick to give up: no retries, short
/// timeouts.
#[cfg(test)]
pub(crate) async fn unreachable_client() -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use std::time::Duration;

    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIMS: Table<'static> = Table {
        role: "claims",
        name: "s3i-claims",
    };
    const DEDUPE: Table<'static> = Table {
        role: "dedupe",
        name: "s3i-dedupe",
    };

    fn text(e: &StoreError) -> (bool, String) {
        match e {
            StoreError::Unavailable(t) => (true, t.clone()),
            StoreError::Refused(t) => (false, t.clone()),
        }
    }

    #[test]
    fn messages_name_the_table_and_the_real_cause() {
        let cases: &[(Table, &str, &str, &str, bool, &str)] = &[
            (
                DEDUPE,
                "ResourceNotFoundException",
                "Requested resource not found",
                "",
                false,
                "dedupe table s3i-dedupe does not exist (create it with `s3-import setup` or the SAM template)",
            ),
            (
                CLAIMS,
                "ProvisionedThroughputExceededException",
                "slow down",
                "",
                true,
                "claims table s3i-claims throttled: ProvisionedThroughputExceededException: slow down",
            ),
            (
                DEDUPE,
                "ThrottlingException",
                "",
                "",
                true,
                "dedupe table s3i-dedupe throttled: ThrottlingException",
            ),
            (
                DEDUPE,
                "RequestLimitExceeded",
                "account limit",
                "",
                true,
                "dedupe table s3i-dedupe throttled: RequestLimitExceeded: account limit",
            ),
            (
                CLAIMS,
                "AccessDeniedException",
                "not authorized to perform: dynamodb:UpdateItem",
                "",
                false,
                "claims table s3i-claims refused the request: AccessDeniedException: not authorized to perform: dynamodb:UpdateItem",
            ),
            (
                CLAIMS,
                "InternalServerError",
                "oops",
                "",
                true,
                "claims table s3i-claims unavailable: InternalServerError: oops",
            ),
            (
                DEDUPE,
                "",
                "",
                "connection refused (os error 111)",
                true,
                "dedupe table s3i-dedupe unreachable: connection refused (os error 111)",
            ),
            (
                CLAIMS,
                "",
                "",
                "",
                true,
                "claims table s3i-claims unavailable: unknown error",
            ),
        ];
        for (table, code, message, cause, retryable, want) in cases {
            let got = text(&store_error_of(*table, code, message, cause));
            assert_eq!(got, (*retryable, want.to_string()), "{code}");
        }
        // The error displays as its text: no other store's name in front.
        let e = store_error_of(DEDUPE, "ThrottlingException", "", "");
        assert_eq!(
            e.to_string(),
            "dedupe table s3i-dedupe throttled: ThrottlingException"
        );
    }

    #[derive(Debug)]
    struct Wrapper(&'static str, io::Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn the_root_cause_is_the_innermost_error() {
        let refused = Wrapper(
            "dispatch failure",
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "Connection refused (os error 111)",
            ),
        );
        assert_eq!(root_cause(&refused), "connection refused (os error 111)");
        let reset = Wrapper(
            "io error",
            io::Error::new(io::ErrorKind::ConnectionReset, "peer hung up"),
        );
        assert_eq!(root_cause(&reset), "connection reset: peer hung up");
        let dns = Wrapper(
            "dispatch failure",
            io::Error::other("failed to lookup address"),
        );
        assert_eq!(root_cause(&dns), "failed to lookup address");
    }
}

/// Counts the capacity units of an adapter's requests (see [`crate::store::Capacity`]).
#[derive(Debug, Default)]
pub struct CapacityMeter {
    read: std::sync::atomic::AtomicU64,
    write: std::sync::atomic::AtomicU64,
}

/// Bytes an item counts for: each attribute's name and value (strings and numbers as written).
pub fn item_bytes(item: &HashMap<String, AttributeValue>) -> u64 {
    item.iter()
        .map(|(name, v)| {
            let value = match v {
                AttributeValue::S(s) => s.len(),
                // DynamoDB stores about one byte per two digits, plus one.
                AttributeValue::N(n) => n.len().div_ceil(2) + 1,
                _ => 8,
            };
            (name.len() + value) as u64
        })
        .sum()
}

impl CapacityMeter {
    /// A write of an item of `bytes` (1 unit per KiB, at least 1), `times` over (2: in a
    /// transaction).
    pub fn write(&self, bytes: u64, times: u64) {
        let units = bytes.div_ceil(1024).max(1) * times;
        self.write
            .fetch_add(units, std::sync::atomic::Ordering::Relaxed);
        crate::store::charge(0, units);
    }

    /// A strongly consistent read of an item of `bytes` (1 unit per 4 KiB, at least 1).
    pub fn consistent_read(&self, bytes: u64) {
        let units = bytes.div_ceil(4096).max(1);
        self.read
            .fetch_add(units, std::sync::atomic::Ordering::Relaxed);
        crate::store::charge(units, 0);
    }

    pub fn total(&self) -> crate::store::Capacity {
        use std::sync::atomic::Ordering::Relaxed;
        crate::store::Capacity {
            read_units: self.read.load(Relaxed),
            write_units: self.write.load(Relaxed),
        }
    }
}
