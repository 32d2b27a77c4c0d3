//! A folder as a bucket: the storage port's twin for tests, examples and local runs.

use std::path::{Path, PathBuf};

use super::*;

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
