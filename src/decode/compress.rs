//! Every decompressor, the magic-byte sniffer and the decompressed-size cap, in one place.

use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::bufread::GzDecoder;

use super::{classify, DecodeError, Limits};
use crate::config::Compression;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BUF: usize = 256 << 10;

/// What the first bytes say the data is.
pub fn detect(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The decompressed size passed the cap.
#[derive(Debug)]
pub(crate) struct CapExceeded(pub u64);

impl fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "decompressed size exceeds {} bytes", self.0)
    }
}
impl std::error::Error for CapExceeded {}

/// The codec rejected the data (corrupt, truncated, bad checksum).
#[derive(Debug)]
pub(crate) struct CodecError {
    pub codec: &'static str,
    pub detail: String,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.codec, self.detail)
    }
}
impl std::error::Error for CodecError {}

/// An error of the underlying source, kept apart from codec errors.
#[derive(Debug)]
struct SourceError(io::Error);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for SourceError {}

struct Source<R>(R);

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::other(SourceError(e))),
                ok => return ok,
            }
        }
    }
}

/// Shared count of decompressed bytes.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts, caps, and tags codec errors.
struct Capped<'r> {
    inner: Box<dyn Read + Send + 'r>,
    codec: &'static str,
    count: Counter,
    limit: u64,
}

impl Read for Capped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let from_source = e.get_ref().is_some_and(|i| i.is::<SourceError>());
                return Err(if from_source || self.codec == "plain" {
                    e
                } else {
                    let detail = match e.kind() {
                        io::ErrorKind::UnexpectedEof => {
                            "truncated: the stream ends in the middle of a frame".to_string()
                        }
                        _ => e.to_string(),
                    };
                    io::Error::other(CodecError {
                        codec: self.codec,
                        detail,
                    })
                });
            }
        };
        let total = self.count.0.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.limit {
            return Err(io::Error::other(CapExceeded(self.limit)));
        }
        Ok(n)
    }
}

/// Concatenated gzip members, decoded whole (`cat a.gz b.gz`); zero padding after the last
/// member is accepted, as gzip(1) does, and anything else after it is an error.
struct MultiGz<R: BufRead> {
    state: Option<GzState<R>>,
}

enum GzState<R: BufRead> {
    Member(Box<GzDecoder<R>>),
    Between(R),
}

impl<R: BufRead> Read for MultiGz<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state.take() {
                None => return Ok(0),
                Some(GzState::Member(mut d)) => {
                    let n = d.read(buf)?;
                    if n > 0 || buf.is_empty() {
                        self.state = Some(GzState::Member(d));
                        return Ok(n);
                    }
                    self.state = Some(GzState::Between(d.into_inner()));
                }
                Some(GzState::Between(mut r)) => {
                    let head = r.fill_buf()?;
                    if head.is_empty() {
                        return Ok(0);
                    }
                    if head[0] == 0 {
                        loop {
                            let b = r.fill_buf()?;
                            if b.is_empty() {
                                return Ok(0);
                            }
                            if b.iter().any(|x| *x != 0) {
                                return Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    "data after the zero padding that follows the last gzip member",
                                ));
                            }
                            let len = b.len();
                            r.consume(len);
                        }
                    }
                    if head[0] != GZIP_MAGIC[0] || head.get(1).is_some_and(|b| *b != GZIP_MAGIC[1])
                    {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "data after the last gzip member is not gzip (trailing garbage)",
                        ));
                    }
                    self.state = Some(GzState::Member(Box::new(GzDecoder::new(r))));
                }
            }
        }
    }
}

/// Decompressed bytes of an object, buffered, with a count that other threads can read.
pub struct Decompressed<'r> {
    reader: BufReader<Capped<'r>>,
}

impl<'r> Decompressed<'r> {
    pub fn counter(&self) -> Counter {
        self.reader.get_ref().count.clone()
    }
}

impl Read for Decompressed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl BufRead for Decompressed<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.reader.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.reader.consume(n)
    }
}

/// Opens the decompressed stream of `raw` as the converter says (`auto`: by magic bytes).
pub fn decompress<'r, R: Read + Send + 'r>(
    raw: R,
    compression: Compression,
    limits: Limits,
) -> Result<Decompressed<'r>, DecodeError> {
    let mut raw = BufReader::with_capacity(BUF, Source(raw));
    // Up to four bytes decide the codec; a short first read must not fool the sniffer.
    let mut prefix = Vec::with_capacity(4);
    while prefix.len() < 4 {
        let b = raw.fill_buf().map_err(|e| classify(e, 0))?;
        if b.is_empty() {
            break;
        }
        let take = b.len().min(4 - prefix.len());
        prefix.extend_from_slice(&b[..take]);
        raw.consume(take);
    }
    let sniffed = detect(&prefix);
    let codec = match compression {
        Compression::Auto => sniffed,
        Compression::Gzip if !prefix.is_empty() && sniffed != Compression::Gzip => {
            return Err(DecodeError::NotCompressed {
                codec: "gzip",
                magic: "1f 8b",
            })
        }
        Compression::Zstd if !prefix.is_empty() && sniffed != Compression::Zstd => {
            return Err(DecodeError::NotCompressed {
                codec: "zstd",
                magic: "28 b5 2f fd",
            })
        }
        other => other,
    };
    let joined = BufReader::with_capacity(BUF, Cursor::new(prefix).chain(raw));
    let (inner, name): (Box<dyn Read + Send + 'r>, &'static str) = match codec {
        Compression::Gzip => (
            Box::new(MultiGz {
                state: Some(GzState::Between(joined)),
            }),
            "gzip",
        ),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(joined).map_err(|e| {
                DecodeError::Corrupt {
                    codec: "zstd",
                    offset: 0,
                    detail: e.to_string(),
                }
            })?;
            (Box::new(ZstdChecked { inner: d }), "zstd")
        }
        Compression::None | Compression::Auto => (Box::new(joined), "plain"),
    };
    let capped = Capped {
        inner,
        codec: name,
        count: Counter::default(),
        limit: limits.max_decompressed_bytes,
    };
    Ok(Decompressed {
        reader: BufReader::with_capacity(BUF, capped),
    })
}

/// Makes sure nothing but zstd frames follows the last frame.
struct ZstdChecked<R: BufRead> {
    inner: zstd::stream::read::Decoder<'static, R>,
}

impl<R: BufRead> Read for ZstdChecked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        // At the end, the underlying reader must be drained: leftover bytes mean a cut frame.
        let rest = self.inner.get_mut().fill_buf()?;
        if !rest.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "trailing data that is not a zstd frame",
            ));
        }
        Ok(0)
    }
}
