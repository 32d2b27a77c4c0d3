//! Where objects, the converter file and reports live: the port the pipeline uses, an S3
//! adapter (`s3`) and a local-folder adapter for unit tests and local runs.
//!
//! Objects are streamed: `open` answers (or fails: missing, denied) before any byte is read,
//! then hands a blocking `Read` that pulls the body as it goes, so memory stays bounded
//! whatever the object's size. Formats that need their end first (Parquet's footer) read
//! byte ranges instead (`ranges`): ranged GETs of the same pinned content.

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::decode::parquet::ReadAt;

pub mod s3;

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

/// Buckets as folders under a root: `root/<bucket>/<key>`. For unit tests and local runs.
pub struct LocalSource {
    root: PathBuf,
}

impl LocalSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalSource { root: root.into() }
    }

    fn path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }
}

fn io_error(what: &str, e: std::io::Error) -> SourceError {
    match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::Missing(what.to_string()),
        std::io::ErrorKind::PermissionDenied => SourceError::Denied(what.to_string()),
        _ => SourceError::Unavailable(format!("{what}: {e}")),
    }
}

fn etag_of(meta: &std::fs::Metadata) -> String {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{modified:x}", meta.len())
}

/// A file's modification time in epoch seconds.
fn mtime_secs(meta: &std::fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<ObjectInfo>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), base, out)?;
        } else if let Ok(rel) = entry.path().strip_prefix(base) {
            out.push(ObjectInfo {
                key: rel.to_string_lossy().replace('\\', "/"),
                size: meta.len(),
                etag: Some(etag_of(&meta)),
                last_modified: mtime_secs(&meta),
            });
        }
    }
    Ok(())
}

impl ObjectSource for LocalSource {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        want: &Content,
        from: u64,
    ) -> Result<Opened, SourceError> {
        use std::io::{Seek, SeekFrom};
        let what = format!("{bucket}/{key}");
        let mut file =
            std::fs::File::open(self.path(bucket, key)).map_err(|e| io_error(&what, e))?;
        let meta = file.metadata().map_err(|e| io_error(&what, e))?;
        let etag = etag_of(&meta);
        if want.etag.as_ref().is_some_and(|w| *w != etag) {
            return Err(SourceError::Changed(format!(
                "{what}: ETag is {etag}, not {}",
                want.etag.as_deref().unwrap_or_default()
            )));
        }
        file.seek(SeekFrom::Start(from))
            .map_err(|e| io_error(&what, e))?;
        Ok(Opened {
            reader: Box::new(file),
            content: Content {
                version_id: None,
                etag: Some(etag),
            },
        })
    }

    async fn ranges(&self, bucket: &str, key: &str, want: &Content) -> Result<Ranged, SourceError> {
        let what = format!("{bucket}/{key}");
        let file = std::fs::File::open(self.path(bucket, key)).map_err(|e| io_error(&what, e))?;
        let meta = file.metadata().map_err(|e| io_error(&what, e))?;
        let etag = etag_of(&meta);
        if want.etag.as_ref().is_some_and(|w| *w != etag) {
            return Err(SourceError::Changed(format!(
                "{what}: ETag is {etag}, not {}",
                want.etag.as_deref().unwrap_or_default()
            )));
        }
        Ok(Ranged {
            reader: Arc::new(file),
            content: Content {
                version_id: None,
                etag: Some(etag),
            },
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, SourceError> {
        let what = format!("{bucket}/{key}");
        let meta = std::fs::metadata(self.path(bucket, key)).map_err(|e| io_error(&what, e))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size: meta.len(),
            etag: Some(etag_of(&meta)),
            last_modified: mtime_secs(&meta),
        })
    }

    async fn get_small(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, Option<String>), SourceError> {
        let info = self.head(bucket, key).await?;
        if info.size > max_bytes as u64 {
            return Err(SourceError::Denied(format!(
                "{bucket}/{key} is {} bytes, more than {max_bytes}",
                info.size
            )));
        }
        let what = format!("{bucket}/{key}");
        let bytes = std::fs::read(self.path(bucket, key)).map_err(|e| io_error(&what, e))?;
        Ok((bytes, info.etag))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        _content_type: &str,
    ) -> Result<(), SourceError> {
        let path = self.path(bucket, key);
        let what = format!("{bucket}/{key}");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_error(&what, e))?;
        }
        match body {
            Body::Bytes(b) => std::fs::write(&path, b),
            Body::File(f) => std::fs::copy(f, &path).map(|_| ()),
        }
        .map_err(|e| io_error(&what, e))
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<ListPage, SourceError> {
        // A folder is walked whole each page: for tests and local runs, not millions of files.
        let base = self.root.join(bucket);
        let mut out = Vec::new();
        walk(&base, &base, &mut out).map_err(|e| io_error(bucket, e))?;
        out.retain(|o| o.key.starts_with(prefix) && start_after.is_none_or(|s| o.key.as_str() > s));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        let more = out.len() > max.max(1);
        out.truncate(max.max(1));
        Ok(ListPage {
            next: more.then(|| out.last().map(|o| o.key.clone())).flatten(),
            objects: out,
        })
    }
}
