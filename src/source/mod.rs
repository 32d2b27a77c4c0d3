//! Where objects, the converter file and reports live: the port the pipeline uses, an S3
//! adapter (`s3`) and a local-folder adapter for unit tests and local runs.
//!
//! Objects are streamed: `open` answers (or fails: missing, denied) before any byte is read,
//! then hands a blocking `Read` that pulls the body as it goes, so memory stays bounded
//! whatever the object's size. Formats that need their end first (Parquet's footer) read
//! byte ranges instead (`ranges`): ranged GETs of the same pinned content.

use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::decode::parquet::ReadAt;

#[cfg(any(test, feature = "test-support"))]
mod local;
pub mod s3;

#[cfg(any(test, feature = "test-support"))]
pub use local::LocalSource;

/// An object as a listing or a HEAD describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    /// Epoch seconds (S3: when the upload began; a folder: the file's mtime).
    pub last_modified: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No such bucket, key or version: deleted or overwritten before it was read.
    #[error("object gone: {0}")]
    Missing(String),
    /// Access denied (bucket policy, KMS key, cross-account role).
    #[error("access denied: {0}")]
    Denied(String),
    /// The store could not be reached or failed in a way a retry may fix.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request itself (a 4xx such as KeyTooLongError): no retry helps.
    #[error("request refused: {0}")]
    Refused(String),
    /// The key no longer holds the content an import started on (overwritten, or the pinned
    /// version deleted).
    #[error("content changed: {0}")]
    Changed(String),
}

impl SourceError {
    /// Missing and denied are permanent for this object; the rest may pass.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, SourceError::Unavailable(_))
    }
}

/// A body to store: bytes in memory, or a file (a report's rejected records can be large).
pub enum Body {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// A streaming reader of one object's bytes.
pub type ObjectReader = Box<dyn Read + Send>;

/// Which content of a key is read: a version when the bucket is versioned, else the ETag.
/// An import pins the content it started on, so that a resume never reads another one.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Content {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.version_id, &self.etag) {
            (Some(v), _) => write!(f, "version {v}"),
            (None, Some(e)) => write!(f, "ETag {e}"),
            (None, None) => f.write_str("unknown content"),
        }
    }
}

/// An object being read, and which content it is.
pub struct Opened {
    pub reader: ObjectReader,
    pub content: Content,
}

/// An object read by byte ranges, and which content it is. Its reads block: use it on a
/// blocking thread.
pub struct Ranged {
    pub reader: Arc<dyn ReadAt>,
    pub content: Content,
}

/// The storage port.
pub trait ObjectSource: Send + Sync {
    /// Starts reading an object at byte `from` (0: its start): the version `want` names, else
    /// the current content if its ETag is `want.etag` (when set), else the current content. A
    /// content that is not the one wanted is `Changed` (or `Missing` when the key or version
    /// is gone).
    fn open(
        &self,
        bucket: &str,
        key: &str,
        want: &Content,
        from: u64,
    ) -> impl Future<Output = Result<Opened, SourceError>> + Send;
    /// Like `open`, for reading by byte ranges (Parquet: the footer, then row groups): every
    /// range comes from the content resolved here, or fails as `Changed`.
    fn ranges(
        &self,
        bucket: &str,
        key: &str,
        want: &Content,
    ) -> impl Future<Output = Result<Ranged, SourceError>> + Send;
    /// Describes an object (the converter file's ETag decides whether to recompile it).
    fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<ObjectInfo, SourceError>> + Send;
    /// Reads a small object whole (the converter file), with its ETag.
    fn get_small(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: usize,
    ) -> impl Future<Output = Result<(Vec<u8>, Option<String>), SourceError>> + Send;
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        content_type: &str,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// One page of the objects under `prefix` in key order: at most `max` (S3: 1,000), those
    /// after `start_after` when given. A listing of any size is read page by page, in constant
    /// memory, and can be taken up again later from the last key seen.
    fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> impl Future<Output = Result<ListPage, SourceError>> + Send;
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    /// The `start_after` of the next page; `None` when this page is the last.
    pub next: Option<String>,
}
