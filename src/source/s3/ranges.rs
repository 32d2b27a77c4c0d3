//! Byte ranges of one S3 object's pinned content (Parquet reads its footer, then row groups):
//! a HEAD resolves the content (the version wanted, else the ETag wanted, else the current
//! one) and its size, then every range is a GET of that version, or `If-Match` that ETag, so
//! that a resume never reads other content. The object's last 64 KiB (where a Parquet footer
//! is) are read once with the HEAD and kept. Reads block: they run on conversion threads.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use bytes::Bytes;
use std::io;

use super::{classify, etag, MAX_RESUMES};
use crate::source::{Content, ReadAt, SourceError};

/// The object's last bytes, read with the HEAD: a footer of up to this much costs no request.
const TAIL: u64 = 64 << 10;

pub(super) struct S3Ranges {
    client: Client,
    handle: tokio::runtime::Handle,
    bucket: String,
    key: String,
    what: String,
    version: Option<String>,
    etag: Option<String>,
    len: u64,
    /// The object's last bytes and where they start.
    tail: (u64, Bytes),
}

/// Whether an S3 error says the content is not the one asked for (`If-Match` failed).
fn precondition_failed<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    e.code() == Some("PreconditionFailed")
        || matches!(e, SdkError::ServiceError(s) if s.raw().status().as_u16() == 412)
}

impl S3Ranges {
    /// Resolves the content `want` names and reads its tail.
    pub(super) async fn open(
        client: &Client,
        bucket: &str,
        key: &str,
        want: &Content,
    ) -> Result<(S3Ranges, Content), SourceError> {
        let what = format!("s3://{bucket}/{key}");
        let out = client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(want.version_id.clone())
            .set_if_match(match &want.version_id {
                None => want.etag.as_ref().map(|e| format!("\"{e}\"")),
                Some(_) => None,
            })
            .send()
            .await
            .map_err(|e| {
                if precondition_failed(&e) {
                    SourceError::Changed(format!("{what} no longer has {want} (overwritten)"))
                } else {
                    classify(&what, e)
                }
            })?;
        let content = Content {
            version_id: out
                .version_id()
                .map(str::to_string)
                .filter(|v| v != "null")
                .or(want.version_id.clone()),
            etag: etag(out.e_tag()),
        };
        let len = out.content_length().unwrap_or(0).max(0) as u64;
        let mut ranges = S3Ranges {
            client: client.clone(),
            handle: tokio::runtime::Handle::current(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            what,
            version: content.version_id.clone(),
            etag: content.etag.clone(),
            len,
            tail: (len, Bytes::new()),
        };
        let start = len.saturating_sub(TAIL);
        if start < len {
            ranges.tail = (start, ranges.get(start, (len - start) as usize).await?);
        }
        Ok((ranges, content))
    }

    /// `len` bytes from `offset`, in one GET (resumed from the byte reached if the connection
    /// breaks), into one buffer of exactly that size.
    async fn get(&self, offset: u64, len: usize) -> Result<Bytes, SourceError> {
        let mut buf = Vec::with_capacity(len);
        let mut resumes = 0u32;
        let end = offset + len as u64 - 1;
        while buf.len() < len {
            let at = offset + buf.len() as u64;
            let before = buf.len();
            let sent = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .set_version_id(self.version.clone())
                .set_if_match(match &self.version {
                    None => self.etag.as_ref().map(|e| format!("\"{e}\"")),
                    Some(_) => None,
                })
                .range(format!("bytes={at}-{end}"))
                .send()
                .await;
            let failure = match sent {
                Err(e) if precondition_failed(&e) => {
                    return Err(SourceError::Changed(format!(
                        "{} no longer has {} (overwritten)",
                        self.what,
                        Content {
                            version_id: self.version.clone(),
                            etag: self.etag.clone()
                        }
                    )))
                }
                Err(e) => match classify(&self.what, e) {
                    e if e.is_permanent() => return Err(e),
                    e => e.to_string(),
                },
                Ok(out) => {
                    let mut body = out.body;
                    loop {
                        match body.try_next().await {
                            Ok(Some(chunk)) => {
                                let room = len - buf.len();
                                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                            }
                            Ok(None) if buf.len() > before => break String::new(),
                            Ok(None) => break "the response had no bytes".to_string(),
                            Err(e) => break aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                        }
                    }
                }
            };
            if failure.is_empty() {
                continue;
            }
            resumes += 1;
            if resumes > MAX_RESUMES {
                return Err(SourceError::Unavailable(format!(
                    "reading {} bytes {at}-{end}: {failure}",
                    self.what
                )));
            }
            tracing::info!(object = %self.what, offset = at, error = %failure, "retrying a ranged read");
            tokio::time::sleep(std::time::Duration::from_millis(200 << resumes)).await;
        }
        Ok(Bytes::from(buf))
    }
}

impl ReadAt for S3Ranges {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let end = offset.saturating_add(len as u64);
        if end > self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: bytes {offset}-{end} are past its end ({})",
                    self.what, self.len
                ),
            ));
        }
        if len == 0 {
            return Ok(Bytes::new());
        }
        let (start, tail) = &self.tail;
        if offset >= *start {
            let from = (offset - start) as usize;
            return Ok(tail.slice(from..from + len));
        }
        self.handle
            .block_on(self.get(offset, len))
            .map_err(io::Error::other)
    }

    fn read_ahead(&self) -> bool {
        true
    }
}
