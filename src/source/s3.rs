//! The storage port on S3: streaming GETs (the notice's version when given), HEAD, small
//! reads, puts and listings. The body is pulled by an async task into a small bounded channel
//! and read on the conversion thread, so at most a few chunks are in memory at once. Ranged
//! reads of pinned content (Parquet) are in `s3/ranges.rs`.
//! The SDK does not decode `Content-Encoding: gzip` bodies: the bytes arrive as stored, and
//! the converter's compression setting (or the magic bytes) decides.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use super::{Body, Content, ListPage, ObjectInfo, ObjectSource, Opened, Ranged, SourceError};

mod ranges;

/// Chunks buffered between the network and the decoder (each typically 8–64 KiB).
const CHUNKS_AHEAD: usize = 16;
/// Ranged GETs that continue a download after its connection broke.
const MAX_RESUMES: u32 = 5;

#[derive(Clone)]
pub struct S3Source {
    /// The importer's own account: the converter file and reports.
    client: Client,
    /// Reads the source objects (open, list): the same client, or one with the credentials of
    /// an assumed role in the bucket owner's account.
    reader: Client,
    /// The reader for each source bucket, in that bucket's region (found once per bucket, see
    /// [`S3Source::reader_for`]): a bucket in another region than the function is read there
    /// instead of failing with `PermanentRedirect`.
    readers: Arc<Mutex<HashMap<String, Client>>>,
    /// The source buckets' region when set (`S3I_SOURCE_REGION`): no lookup.
    source_region: Option<String>,
}

impl S3Source {
    pub fn new(client: Client) -> Self {
        S3Source {
            reader: client.clone(),
            client,
            readers: Arc::default(),
            source_region: None,
        }
    }

    /// Reads source objects with another client (a cross-account role).
    pub fn with_reader(mut self, reader: Client) -> Self {
        self.reader = reader;
        self
    }

    /// Reads source buckets in `region` (no lookup); `None` finds each bucket's region.
    pub fn with_source_region(mut self, region: Option<String>) -> Self {
        self.source_region = region.filter(|r| !r.is_empty());
        self
    }

    /// The reader for `bucket`, in the bucket's region: the setting when given, else a
    /// HeadBucket asks S3 (`x-amz-bucket-region` comes with the answer, a 301 for a bucket in
    /// another region included). When the region cannot be learnt (no `s3:ListBucket`, a store
    /// that does not say), the reader stays in its own region, as before.
    pub async fn reader_for(&self, bucket: &str) -> Client {
        if let Some(client) = self
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(bucket)
        {
            return client.clone();
        }
        let region = match &self.source_region {
            Some(r) => Some(r.clone()),
            None => match self.reader.head_bucket().bucket(bucket).send().await {
                Ok(out) => out.bucket_region().map(str::to_string),
                Err(e) => e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .map(str::to_string),
            },
        };
        let own = self
            .reader
            .config()
            .region()
            .map(|r| r.as_ref().to_string());
        let client = match region {
            Some(region) if Some(&region) != own.as_ref() => {
                tracing::info!(bucket, region = %region, "source bucket read in its own region");
                let config = self
                    .reader
                    .config()
                    .to_builder()
                    .region(aws_sdk_s3::config::Region::new(region))
                    .build();
                Client::from_conf(config)
            }
            _ => self.reader.clone(),
        };
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bucket.to_string(), client.clone());
        client
    }

    /// The region `bucket` is read in (after [`S3Source::reader_for`] found it).
    pub async fn region_of(&self, bucket: &str) -> Option<String> {
        let client = self.reader_for(bucket).await;
        client.config().region().map(|r| r.to_string())
    }
}

/// Client errors (4xx) that a retry may fix: timeouts, throttling, clock skew, expired
/// credentials (refreshed on the next attempt), a conflicting operation in progress, and an
/// object that changed under a ranged resume (the object is read again from the start).
const RETRYABLE_4XX: &[&str] = &[
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRefreshRequired",
    "OperationAborted",
    "PreconditionFailed",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

/// Client errors that no retry fixes, whatever status they come with: the request itself is
/// wrong (a key too long, a bad argument, a body too large, a bucket in another region, …).
const PERMANENT: &[&str] = &[
    "KeyTooLongError",
    "InvalidArgument",
    "InvalidRequest",
    "EntityTooLarge",
    "EntityTooSmall",
    "MalformedXML",
    "InvalidBucketName",
    "InvalidURI",
    "InvalidRange",
    "MetadataTooLarge",
    "MethodNotAllowed",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
];

/// What a KMS denial says to do: the objects are encrypted with a customer key.
const KMS_HINT: &str = "the object is encrypted with a KMS key the importer may not use: grant \
                        kms:Decrypt on that key (template parameter SourceKmsKeyArn)";

/// Classifies an S3 error: missing, denied, refused (a 4xx that no retry fixes, such as
/// KeyTooLongError), or worth retrying (5xx, throttling, timeouts, the network).
fn classify<E>(what: &str, e: SdkError<E, HttpResponse>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = match &e {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    };
    let (code, message) = (
        e.code().unwrap_or("").to_string(),
        e.message().unwrap_or("").to_string(),
    );
    let detail = if code.is_empty() {
        format!("{what}: {}", aws_sdk_s3::error::DisplayErrorContext(&e))
    } else {
        format!("{what}: {code} {message}").trim_end().to_string()
    };
    let client_error = status.is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429)
        && !RETRYABLE_4XX.contains(&code.as_str());
    if matches!(
        code.as_str(),
        "NoSuchKey" | "NoSuchVersion" | "NoSuchBucket" | "NotFound"
    ) || (code.is_empty() && status == Some(404))
    {
        SourceError::Missing(detail)
    } else if code.starts_with("KMS") || message.contains("kms:") || message.contains("KMS") {
        SourceError::Denied(format!("{detail} ({KMS_HINT})"))
    } else if code.starts_with("AccessDenied")
        || code == "AllAccessDisabled"
        || code == "Forbidden"
        || code == "InvalidObjectState"
        || (code.is_empty() && status == Some(403))
    {
        SourceError::Denied(detail)
    } else if PERMANENT.contains(&code.as_str()) || client_error {
        SourceError::Refused(format!("{detail} (HTTP {})", status.unwrap_or(400)))
    } else {
        SourceError::Unavailable(detail)
    }
}

/// Reads chunks that an async task pulls from the response body.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

fn etag(e: Option<&str>) -> Option<String> {
    e.map(|e| e.trim_matches('"').to_string())
}

impl ObjectSource for S3Source {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        want: &Content,
        from: u64,
    ) -> Result<Opened, SourceError> {
        let what = format!("s3://{bucket}/{key}");
        let reader = self.reader_for(bucket).await;
        let out = reader
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(want.version_id.clone())
            .set_if_match(match &want.version_id {
                None => want.etag.as_ref().map(|e| format!("\"{e}\"")),
                Some(_) => None,
            })
            .set_range((from > 0).then(|| format!("bytes={from}-")))
            .send()
            .await
            .map_err(|e| match e.code() {
                Some("PreconditionFailed") => {
                    SourceError::Changed(format!("{what} no longer has {want} (overwritten)"))
                }
                _ => classify(&what, e),
            });
        let out = match out {
            // Nothing after `from`: an empty body (the ETag or version was checked with it).
            Err(SourceError::Refused(why)) if from > 0 && why.contains("InvalidRange") => {
                return Ok(Opened {
                    reader: Box::new(std::io::empty()),
                    content: want.clone(),
                })
            }
            out => out?,
        };
        let etag = out.e_tag().map(str::to_string);
        let version = out
            .version_id()
            .map(str::to_string)
            .filter(|v| v != "null")
            .or(want.version_id.clone());
        let content = Content {
            version_id: version.clone(),
            etag: self::etag(etag.as_deref()),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
        let client = reader;
        let (bucket, key) = (bucket.to_string(), key.to_string());
        tokio::spawn(async move {
            // A connection that breaks mid-object (timeouts while the decoder pushes back, a
            // reset) resumes with a ranged GET of the same version or ETag from the byte
            // reached, so a long import never restarts from zero for a network hiccup.
            let mut body = out.body;
            let (mut offset, mut resumes) = (from, 0u32);
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => {
                        offset += chunk.len() as u64;
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                        resumes += 1;
                        if resumes > MAX_RESUMES {
                            let msg = format!("reading {what} at byte {offset}: {detail}");
                            let _ = tx.send(Err(io::Error::other(msg))).await;
                            return;
                        }
                        tracing::info!(object = %what, offset, error = %detail, "resuming the download");
                        tokio::time::sleep(std::time::Duration::from_millis(200 << resumes)).await;
                        let resumed = client
                            .get_object()
                            .bucket(&bucket)
                            .key(&key)
                            .set_version_id(version.clone())
                            .set_if_match(if version.is_none() {
                                etag.clone()
                            } else {
                                None
                            })
                            .range(format!("bytes={offset}-"))
                            .send()
                            .await;
                        match resumed {
                            Ok(next) => body = next.body,
                            Err(e) => {
                                let e = classify(&what, e);
                                let msg = format!("resuming {what} at byte {offset}: {e}");
                                let _ = tx.send(Err(io::Error::other(msg))).await;
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(Opened {
            reader: Box::new(ChannelReader {
                rx,
                current: Bytes::new(),
            }),
            content,
        })
    }

    async fn ranges(&self, bucket: &str, key: &str, want: &Content) -> Result<Ranged, SourceError> {
        let client = self.reader_for(bucket).await;
        let (reader, content) = ranges::S3Ranges::open(&client, bucket, key, want).await?;
        Ok(Ranged {
            reader: std::sync::Arc::new(reader),
            content,
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, SourceError> {
        let what = format!("s3://{bucket}/{key}");
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&what, e))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: etag(out.e_tag()),
            last_modified: out.last_modified().map(|t| t.secs()),
        })
    }

    async fn get_small(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, Option<String>), SourceError> {
        let what = format!("s3://{bucket}/{key}");
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&what, e))?;
        if out.content_length().unwrap_or(0) > max_bytes as i64 {
            return Err(SourceError::Denied(format!(
                "{what} is larger than {max_bytes} bytes"
            )));
        }
        let tag = etag(out.e_tag());
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| SourceError::Unavailable(format!("reading {what}: {e}")))?;
        Ok((bytes.to_vec(), tag))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        content_type: &str,
    ) -> Result<(), SourceError> {
        let what = format!("s3://{bucket}/{key}");
        let stream = match body {
            Body::Bytes(b) => ByteStream::from(b),
            Body::File(path) => ByteStream::from_path(&path)
                .await
                .map_err(|e| SourceError::Unavailable(format!("{}: {e}", path.display())))?,
        };
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(stream)
            .send()
            .await
            .map_err(|e| classify(&what, e))?;
        Ok(())
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<ListPage, SourceError> {
        let what = format!("s3://{bucket}/{prefix}");
        let page = self
            .reader_for(bucket)
            .await
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_start_after(start_after.filter(|s| !s.is_empty()).map(str::to_string))
            .max_keys(max.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| classify(&what, e))?;
        let objects: Vec<ObjectInfo> = page
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: etag(o.e_tag()),
                    last_modified: o.last_modified().map(|t| t.secs()),
                })
            })
            .collect();
        let more = page.is_truncated().unwrap_or(false);
        Ok(ListPage {
            next: more
                .then(|| objects.last().map(|o| o.key.clone()))
                .flatten(),
            objects,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    fn error_with(code: &str, status: u16) -> SourceError {
        let e = GetObjectError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        classify("s3://b/k", SdkError::service_error(e, raw))
    }

    fn error(code: &str) -> SourceError {
        error_with(code, 400)
    }

    #[test]
    fn s3_errors_are_classified_as_missing_denied_or_retryable() {
        for code in ["NoSuchKey", "NoSuchVersion", "NoSuchBucket"] {
            assert!(matches!(error(code), SourceError::Missing(_)), "{code}");
        }
        for code in [
            "AccessDenied",
            "KMS.DisabledException",
            "AllAccessDisabled",
            "InvalidObjectState",
        ] {
            assert!(matches!(error(code), SourceError::Denied(_)), "{code}");
        }
        // Client errors that no retry fixes: permanent (denied, for want of a variant).
        for (code, status) in [
            ("KeyTooLongError", 400),
            ("InvalidArgument", 400),
            ("InvalidRequest", 400),
            ("EntityTooLarge", 400),
            ("MalformedXML", 400),
            ("InvalidBucketName", 400),
            ("MethodNotAllowed", 405),
            ("PermanentRedirect", 301),
            ("SomeFutureClientError", 400),
            ("", 400),
        ] {
            let e = error_with(code, status);
            assert!(
                matches!(e, SourceError::Refused(_)) && e.is_permanent(),
                "{code}: {e}"
            );
        }
        assert!(matches!(error_with("", 404), SourceError::Missing(_)));
        assert!(matches!(error_with("", 403), SourceError::Denied(_)));
        // Server errors, throttling, timeouts, skew and expired credentials: retried.
        for (code, status) in [
            ("SlowDown", 503),
            ("InternalError", 500),
            ("ServiceUnavailable", 503),
            ("RequestTimeout", 400),
            ("RequestTimeTooSkewed", 403),
            ("ExpiredToken", 400),
            ("ThrottlingException", 400),
            ("TooManyRequests", 429),
            ("", 408),
            ("", 502),
        ] {
            let e = error_with(code, status);
            assert!(
                matches!(e, SourceError::Unavailable(_)) && !e.is_permanent(),
                "{code}: {e}"
            );
        }
        assert_eq!(
            error("KeyTooLongError").to_string(),
            "request refused: s3://b/k: KeyTooLongError m (HTTP 400)"
        );
        assert_eq!(
            error("AccessDenied").to_string(),
            "access denied: s3://b/k: AccessDenied m"
        );
    }

    #[test]
    fn kms_denials_say_which_grant_is_missing() {
        let e = error_with("KMS.DisabledException", 400).to_string();
        assert!(
            e.contains("kms:Decrypt") && e.contains("SourceKmsKeyArn"),
            "{e}"
        );
        let e = error_with("AccessDenied", 403).to_string();
        assert!(!e.contains("kms:Decrypt"), "{e}");
    }
}
