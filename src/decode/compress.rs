//! Every decompressor, the magic-byte sniffer and the decompressed-size cap, in one place.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flate2::bufread::GzDecoder;

use super::hold::Held;
use super::{classify, DecodeError, Limits, RESTART_EVERY};
use crate::config::Compression;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BUF: usize = 256 << 10;
/// Decompressed bytes before the ratio is judged: a small file may inflate a lot and harm no one,
/// and by then the buffers' read-ahead no longer matters.
const RATIO_AFTER: u64 = 64 << 20;

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

/// Reads the up to four bytes that decide the codec (a short first read must not fool the
/// sniffer); the reader goes on after them.
pub(crate) fn read_magic<R: BufRead>(raw: &mut R) -> Result<Vec<u8>, DecodeError> {
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
    Ok(prefix)
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

/// The data inflates beyond the ratio cap (a decompression bomb).
#[derive(Debug)]
pub(crate) struct RatioExceeded {
    pub codec: &'static str,
    pub output: u64,
    pub input: u64,
    pub limit: u64,
}

impl fmt::Display for RatioExceeded {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} bytes decompressed out of {} compressed bytes, more than {}:1",
            self.output, self.input, self.limit
        )
    }
}
impl std::error::Error for RatioExceeded {}

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

/// Counts the compressed bytes a decoder has consumed (not what a buffer read ahead).
struct Consumed<B> {
    inner: B,
    count: Counter,
}

impl<B: BufRead> Read for Consumed<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<B: BufRead> BufRead for Consumed<B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.count.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The ratio cap: output may not pass `max_ratio` × the compressed bytes consumed, once
/// `after` bytes have come out.
struct RatioCap {
    consumed: Counter,
    max_ratio: u64,
    after: u64,
}

/// Counts, caps, and tags codec errors.
struct Capped<'r> {
    inner: Box<dyn Read + Send + 'r>,
    codec: &'static str,
    count: Counter,
    limit: u64,
    /// `None` for plain data and when the check is off.
    ratio: Option<RatioCap>,
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
        if let Some(cap) = &self.ratio {
            let input = cap.consumed.get();
            if total >= cap.after && total / cap.max_ratio > input {
                return Err(io::Error::other(RatioExceeded {
                    codec: self.codec,
                    output: total,
                    input,
                    limit: cap.max_ratio,
                }));
            }
        }
        Ok(n)
    }
}

/// Where a decompressed stream can be entered again: the data's own offsets when it is not
/// compressed, else the starts of gzip members and zstd frames (a compressed stream can only
/// be entered where one starts).
#[derive(Clone)]
pub enum Entries {
    Plain,
    /// (compressed offset, decompressed offset) of member or frame starts, in order, about one
    /// per [`RESTART_EVERY`] decompressed bytes; those behind the reader are dropped as it asks.
    Starts(Arc<Mutex<VecDeque<(u64, u64)>>>),
}

impl Entries {
    fn starts() -> Entries {
        Entries::Starts(Arc::default())
    }

    /// Where to open the stored data to reach decompressed offset `at`: the offset to read
    /// from and the decompressed bytes to skip there. Asked with offsets that never go back.
    pub fn before(&self, at: u64) -> Option<(u64, u64)> {
        match self {
            Entries::Plain => Some((at, 0)),
            Entries::Starts(starts) => {
                let mut q = starts.lock().ok()?;
                while q.len() >= 2 && q[1].1 <= at {
                    q.pop_front();
                }
                q.front().filter(|s| s.1 <= at).map(|&(c, d)| (c, at - d))
            }
        }
    }
}

/// Notes member or frame starts for [`Entries`], and where the last member or frame whose
/// checksum checked out ends.
struct StartLog {
    entries: Entries,
    consumed: Counter,
    produced: u64,
    /// The decompressed offset of the last start noted.
    last: Option<u64>,
    confirmed: Counter,
}

impl StartLog {
    fn new(entries: &Entries, consumed: &Counter) -> StartLog {
        StartLog {
            entries: entries.clone(),
            consumed: consumed.clone(),
            produced: 0,
            last: None,
            confirmed: Counter::default(),
        }
    }

    /// A member or frame starts here. Starts are kept about one per [`RESTART_EVERY`]
    /// decompressed bytes: however well the data compresses, a resume re-reads little.
    fn start(&mut self) {
        let c = self.consumed.get();
        if self.last.is_some_and(|l| self.produced < l + RESTART_EVERY) {
            return;
        }
        self.last = Some(self.produced);
        if let Entries::Starts(q) = &self.entries {
            if let Ok(mut q) = q.lock() {
                q.push_back((c, self.produced));
            }
        }
    }

    /// A member or frame ended and its checksum (if it has one) checked out.
    fn end(&mut self) {
        self.confirmed.0.store(self.produced, Ordering::Relaxed);
    }
}

/// Concatenated gzip members, decoded whole (`cat a.gz b.gz`); zero padding after the last
/// member is accepted, as gzip(1) does, and anything else after it is an error.
struct MultiGz<R: BufRead> {
    state: Option<GzState<R>>,
    log: StartLog,
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
                    self.log.produced += n as u64;
                    if n > 0 || buf.is_empty() {
                        self.state = Some(GzState::Member(d));
                        return Ok(n);
                    }
                    // A member's end: its CRC and length were checked by the decoder.
                    self.log.end();
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
                    self.log.start();
                    self.state = Some(GzState::Member(Box::new(GzDecoder::new(r))));
                }
            }
        }
    }
}

/// Decompressed bytes of an object, buffered, with a count that other threads can read.
pub struct Decompressed<'r> {
    reader: BufReader<Box<dyn Read + Send + 'r>>,
    count: Counter,
    entries: Entries,
}

impl<'r> Decompressed<'r> {
    pub fn counter(&self) -> Counter {
        self.count.clone()
    }

    /// Whether the data is not compressed: its byte offsets are the object's own.
    pub fn is_plain(&self) -> bool {
        matches!(self.entries, Entries::Plain)
    }

    /// Where the data can be entered again (shared: usable from another thread).
    pub fn entries(&self) -> Entries {
        self.entries.clone()
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
    decompress_judged_after(raw, compression, limits, RATIO_AFTER)
}

/// [`decompress`], judging the ratio once `ratio_after` bytes have come out.
fn decompress_judged_after<'r, R: Read + Send + 'r>(
    raw: R,
    compression: Compression,
    limits: Limits,
    ratio_after: u64,
) -> Result<Decompressed<'r>, DecodeError> {
    let mut raw = BufReader::with_capacity(BUF, Source(raw));
    let prefix = read_magic(&mut raw)?;
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
    let consumed = Counter::default();
    let joined = Consumed {
        inner: BufReader::with_capacity(BUF, Cursor::new(prefix).chain(raw)),
        count: consumed.clone(),
    };
    let entries = match codec {
        Compression::None | Compression::Auto => Entries::Plain,
        _ => Entries::starts(),
    };
    let log = StartLog::new(&entries, &consumed);
    let confirmed = log.confirmed.clone();
    let (inner, name): (Box<dyn Read + Send + 'r>, &'static str) = match codec {
        Compression::Gzip => (
            Box::new(MultiGz {
                state: Some(GzState::Between(joined)),
                log,
            }),
            "gzip",
        ),
        Compression::Zstd => {
            let context = zstd::stream::raw::Decoder::new().map_err(|e| DecodeError::Corrupt {
                codec: "zstd",
                offset: 0,
                detail: e.to_string(),
            })?;
            let zstd = MultiZstd {
                reader: joined,
                context,
                in_frame: false,
                log,
            };
            (Box::new(zstd), "zstd")
        }
        Compression::None | Compression::Auto => (Box::new(joined), "plain"),
    };
    let ratio = (name != "plain" && limits.max_decompression_ratio > 0).then_some(RatioCap {
        consumed,
        max_ratio: limits.max_decompression_ratio,
        after: ratio_after,
    });
    let count = Counter::default();
    let capped = Capped {
        inner,
        codec: name,
        count: count.clone(),
        limit: limits.max_decompressed_bytes,
        ratio,
    };
    let reader: Box<dyn Read + Send + 'r> = match limits.hold {
        Some(hold) if name != "plain" => Box::new(Held::new(capped, confirmed, hold)),
        _ => Box::new(capped),
    };
    Ok(Decompressed {
        reader: BufReader::with_capacity(BUF, reader),
        count,
        entries,
    })
}

/// Zstd frames one after another, each decoded to its end (so that frame starts are known)
/// with one decoding context for all of them; anything after the last frame that is not a
/// frame is an error, and so is a stream that ends inside a frame.
struct MultiZstd<R: BufRead> {
    reader: R,
    context: zstd::stream::raw::Decoder<'static>,
    in_frame: bool,
    log: StartLog,
}

impl<R: BufRead> Read for MultiZstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let input = self.reader.fill_buf()?;
            let at_end = input.is_empty();
            if !self.in_frame {
                if at_end {
                    return Ok(0);
                }
                if input.len() >= 4 && !is_zstd_frame(input) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "trailing data that is not a zstd frame",
                    ));
                }
                // A skippable frame (metadata, a seek table) holds no data to restart at.
                if input.starts_with(&ZSTD_MAGIC) {
                    self.log.start();
                }
                self.in_frame = true;
            }
            let mut src = InBuffer::around(input);
            let mut dst = OutBuffer::around(&mut *buf);
            let hint = self.context.run(&mut src, &mut dst)?;
            let (consumed, produced) = (src.pos(), dst.pos());
            self.reader.consume(consumed);
            self.log.produced += produced as u64;
            if hint == 0 {
                // The frame is decoded and flushed (its checksum checked, if it has one):
                // the next bytes start another (or nothing).
                self.log.end();
                self.in_frame = false;
                self.context.reinit()?;
            }
            if produced > 0 {
                return Ok(produced);
            }
            if at_end && self.in_frame {
                // Nothing more to read or flush, and the frame is not finished.
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// A zstd frame or a skippable frame (magic 0x184D2A5?) starts here.
fn is_zstd_frame(head: &[u8]) -> bool {
    head.starts_with(&ZSTD_MAGIC) || (head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
}

#[cfg(test)]
mod tests;
