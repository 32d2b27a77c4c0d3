//! Object bytes → records: one module owns every decompressor and the size caps, then frames
//! JSON lines or CSV rows, or reads Parquet row groups. Streaming throughout; nothing holds the
//! whole object.

mod compress;
mod csv_rows;
mod hold;
mod lines;
pub mod parquet;
mod verify;

use std::io::{self, Read};
use std::ops::ControlFlow;

use crate::config::{ConverterFile, FileType};
use crate::datalang::value::{parse_record_in, RecordError, Spare};
use crate::datalang::{Keys, Record};
pub use compress::{decompress, detect, Decompressed, Entries};
pub use hold::Hold;
pub use lines::{Chunk, LineFramer};
pub use verify::{verify, Verified};

/// Bounds on what one object may make us read.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Decompressed bytes of one object; beyond it the object fails (a decompression bomb).
    pub max_decompressed_bytes: u64,
    /// Bytes of one record; a longer JSON line is an invalid record, a longer CSV row fails the object.
    pub max_record_bytes: usize,
    /// Decompressed bytes per compressed byte consumed, judged once 64 MiB have come out; beyond
    /// it the object fails as a decompression bomb. JSON compresses 10–20×, a bomb of zeros
    /// about 1000× (gzip) or far more (zstd). 0 turns the check off.
    pub max_decompression_ratio: u64,
    /// Compressed data only: hand out no inflated byte before the checksum of its gzip member
    /// or zstd frame is checked (`None`: as it inflates).
    pub hold: Option<Hold>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: 64 << 30,
            max_record_bytes: 10 << 20,
            max_decompression_ratio: 1000,
            hold: None,
        }
    }
}

/// Why an object could not be read to its end. Records before the error were delivered.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("corrupt {codec} data after {offset} decompressed bytes: {detail}")]
    Corrupt {
        codec: &'static str,
        offset: u64,
        detail: String,
    },
    #[error("compressionType is {codec}, but the data does not start with the {codec} signature ({magic}); if it is already decompressed (e.g. stored with Content-Encoding), use compressionType \"auto\" or \"none\"")]
    NotCompressed {
        codec: &'static str,
        magic: &'static str,
    },
    #[error("decompressed size exceeds the limit of {limit} bytes (raise the max-decompressed-bytes limit if the file is genuine)")]
    TooLarge { limit: u64 },
    #[error("{codec} data inflates {ratio}:1 ({output} bytes out of {input} compressed bytes), more than the limit of {limit}:1: it looks like a decompression bomb (raise S3I_MAX_DECOMPRESSION_RATIO, or set it to 0 to turn the check off, if the file is genuine)")]
    Bomb {
        codec: &'static str,
        output: u64,
        input: u64,
        ratio: u64,
        limit: u64,
    },
    #[error("CSV row {record} is longer than the limit of {limit} bytes (an unclosed quote?)")]
    RowTooLong { record: u64, limit: usize },
    #[error("CSV: {detail}")]
    Csv { detail: String },
    #[error("reading the object failed after {offset} decompressed bytes: {detail}")]
    Io { offset: u64, detail: String },
    #[error("Parquet: {0}")]
    Parquet(String),
    #[error("a gzip member or zstd frame inflates to more than {limit} bytes, more than can be held back until its checksum is checked (S3I_HOLD_MAX_BYTES)")]
    HoldFull { limit: u64 },
    #[error("stopped at the deadline with {held} inflated bytes held back until their checksum is checked")]
    HoldStopped { held: u64 },
}

impl DecodeError {
    /// Whether retrying the same bytes can succeed (a read error, not bad content).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DecodeError::Io { .. } | DecodeError::HoldFull { .. } | DecodeError::HoldStopped { .. }
        )
    }
}

/// One record as the decoder delivers it.
pub enum Rec<'a> {
    /// A record; `line` is its JSON text (JSON lines) or `None` (CSV, Parquet: rebuilt from
    /// `record`).
    Ok {
        record: &'a Record<'a>,
        line: Option<&'a [u8]>,
    },
    /// Not a record (bad JSON, not an object, too long, ragged CSV row): the reason, and the raw text.
    Invalid { reason: String, raw: &'a [u8] },
}

/// Counts that the decoder alone can know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub records: u64,
    pub decompressed_bytes: u64,
}

/// Which reading a restart point belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartKind {
    Lines,
    Csv,
}

/// A place where reading an object can start again without reading what came before it:
/// record `n` starts `skip` decompressed bytes after byte `offset` of the stored object.
/// JSON lines and CSV have them: anywhere when not compressed (`skip` 0), at gzip member and
/// zstd frame starts when compressed (a single-stream object has only its start).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Restart {
    pub kind: RestartKind,
    pub n: u64,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
    /// CSV with a header: the column names (the header row is not read again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Vec<String>>,
    /// The object is not compressed: read on from here as plain data, whatever its bytes look
    /// like (a compressed object restarts at a member or frame start, and is sniffed there).
    #[serde(default, skip_serializing_if = "is_false")]
    pub plain: bool,
    /// The converter version (ETag) the reading ran under: another one may frame or number
    /// records differently, so its restart points are not used.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Offers restart points to a reading's `mark`, about one per [`RESTART_EVERY`] stored bytes
/// (compressed data: at member or frame starts about that many decompressed bytes apart).
pub(crate) struct Marker<'m> {
    entries: Entries,
    /// Where the reading started in the stored object.
    base: u64,
    /// The stored and the decompressed offset of the last restart point offered.
    last: Option<(u64, u64)>,
    mark: &'m mut dyn FnMut(Restart),
}

impl<'m> Marker<'m> {
    pub(crate) fn new(
        input: &Decompressed<'_>,
        from: Option<&Restart>,
        mark: &'m mut dyn FnMut(Restart),
    ) -> Self {
        Marker {
            entries: input.entries(),
            base: from.map_or(0, |r| r.offset),
            last: None,
            mark,
        }
    }

    /// Record `n` starts at decompressed offset `at` (counted from where this reading started).
    pub(crate) fn at(&mut self, kind: RestartKind, n: u64, at: u64, header: &Option<Vec<String>>) {
        // Cheap first: data never shrinks much when compressed, so less than a step of
        // decompressed bytes is less than a step of stored ones.
        if self.last.is_some_and(|(_, d)| at < d + RESTART_EVERY) {
            return;
        }
        let Some((offset, skip)) = self.entries.before(at) else {
            return;
        };
        // Plain data: a step of stored bytes; compressed: the next member or frame start
        // (those are about a step of decompressed bytes apart).
        let step = match self.entries {
            Entries::Plain => RESTART_EVERY,
            Entries::Starts(_) => 1,
        };
        if let Some((l, _)) = self.last {
            if offset < l + step {
                self.last = Some((l, at));
                return;
            }
        }
        self.last = Some((offset, at));
        (self.mark)(Restart {
            kind,
            n,
            offset: self.base + offset,
            skip,
            header: header.clone(),
            plain: matches!(self.entries, Entries::Plain),
            config: String::new(),
        });
    }
}

/// Discards the `skip` decompressed bytes before a restart point's record.
fn skip_to(input: &mut Decompressed<'_>, from: Option<&Restart>) -> Result<u64, DecodeError> {
    let skip = from.map_or(0, |r| r.skip);
    if skip > 0 {
        let got = io::copy(&mut input.take(skip), &mut io::sink())
            .map_err(|e| classify(e, input.counter().get()))?;
        if got < skip {
            return Err(DecodeError::Io {
                offset: got,
                detail: format!(
                    "the stored object ends before its restart point ({skip} bytes in)"
                ),
            });
        }
    }
    Ok(skip)
}

impl Restart {
    /// Whether a reading with this converter file can start here.
    pub fn fits(&self, file: &ConverterFile) -> bool {
        match self.kind {
            RestartKind::Lines => file.file_type == FileType::Json,
            RestartKind::Csv => {
                file.file_type == FileType::Csv && self.header.is_some() == file.csv.header
            }
        }
    }
}

/// Bytes between two restart points (each is offered to `mark` as reading passes it).
pub const RESTART_EVERY: u64 = 1 << 20;

/// Reads every record of an object, in order, numbering them from 0 (blank lines and the CSV
/// header take no number). `threads` ≥ 2 decompresses and frames on a second thread.
/// `f` may stop early with `ControlFlow::Break`.
pub fn read_records<R: Read + Send>(
    raw: R,
    file: &ConverterFile,
    keys: &Keys,
    limits: Limits,
    threads: usize,
    f: impl FnMut(u64, Rec<'_>) -> ControlFlow<()>,
) -> Result<ReadStats, DecodeError> {
    read_records_from(raw, file, keys, limits, threads, None, &mut |_| {}, f)
}

/// [`read_records`] from a restart point (`raw` then starts at its offset), offering `mark`
/// the restart points it passes (about one per [`RESTART_EVERY`] stored bytes; in compressed
/// data only at member and frame starts, about as many decompressed bytes apart), each before any record it numbers is handed to `f`.
#[allow(clippy::too_many_arguments)]
pub fn read_records_from<R: Read + Send>(
    raw: R,
    file: &ConverterFile,
    keys: &Keys,
    limits: Limits,
    threads: usize,
    from: Option<&Restart>,
    mark: &mut dyn FnMut(Restart),
    mut f: impl FnMut(u64, Rec<'_>) -> ControlFlow<()>,
) -> Result<ReadStats, DecodeError> {
    // The object's very start is no restart: it is read as new (a byte-order mark is looked for).
    let from = from.filter(|r| r.offset > 0 || r.skip > 0);
    let compression = match from {
        Some(r) if r.plain => crate::config::Compression::None,
        _ => file.compression,
    };
    let mut input = decompress(raw, compression, limits)?;
    let mut marker = Marker::new(&input, from, mark);
    let skipped = skip_to(&mut input, from)?;
    match file.file_type {
        FileType::Csv => {
            csv_rows::read(input, &file.csv, limits, from, skipped, &mut marker, &mut f)
        }
        FileType::Parquet => parquet::read_stream(input, keys, &mut f),
        FileType::Json => {
            let counter = input.counter();
            let framer = match from {
                Some(r) => LineFramer::resumed(input, limits.max_record_bytes, r.n, skipped),
                None => LineFramer::new(input, limits.max_record_bytes),
            };
            let mut n = 0u64;
            let mut visit = |chunk: &Chunk| -> ControlFlow<()> {
                marker.at(RestartKind::Lines, chunk.first_n, chunk.offset, &None);
                let flow = visit_chunk(chunk, keys, limits, &mut f);
                n = chunk.end_n();
                flow
            };
            framer.run(threads, &mut visit)?;
            Ok(ReadStats {
                records: n,
                decompressed_bytes: counter.get(),
            })
        }
    }
}

/// Hands every record of a chunk of JSON lines to `f`, numbered from the chunk's `first_n`.
pub fn visit_chunk(
    chunk: &Chunk,
    keys: &Keys,
    limits: Limits,
    f: &mut dyn FnMut(u64, Rec<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut n = chunk.first_n;
    let mut spare = Spare::default();
    for line in &chunk.lines {
        if line.blank {
            continue;
        }
        let bytes = chunk.line(line);
        let flow = if line.oversize > 0 {
            let reason = format!(
                "record is longer than the limit of {} bytes ({} bytes); raise --max-record-bytes if it is genuine",
                limits.max_record_bytes, line.oversize
            );
            f(n, Rec::Invalid { reason, raw: bytes })
        } else {
            match parse_record_in(bytes, keys, std::mem::take(&mut spare)) {
                Ok(record) => {
                    let flow = f(
                        n,
                        Rec::Ok {
                            record: &record,
                            line: Some(bytes),
                        },
                    );
                    spare = record.into_spare();
                    flow
                }
                Err(e) => {
                    let reason = match e {
                        RecordError::NotObject(kind) => {
                            format!("record is a JSON {kind}; each line must be one JSON object")
                        }
                        RecordError::Syntax(e) => format!("record is not valid JSON: {e}"),
                        RecordError::Utf8(at) => {
                            format!("record is not valid UTF-8 (at byte {at})")
                        }
                    };
                    f(n, Rec::Invalid { reason, raw: bytes })
                }
            }
        };
        n += 1;
        flow?;
    }
    ControlFlow::Continue(())
}

/// Whether [`convert_chunks`] can spread this converter's input over several threads.
pub fn parallel_capable(file: &ConverterFile) -> bool {
    file.file_type == FileType::Json
}

/// JSON lines only: frames the object on one thread while `workers` threads run `work` on
/// whole chunks; `sink` receives the results in the object's order, on the calling thread.
/// Memory stays bounded: at most about `2 × workers + 2` chunks (1 MiB each) exist at once.
pub fn convert_chunks<R: Read + Send, T: Send>(
    raw: R,
    file: &ConverterFile,
    limits: Limits,
    workers: usize,
    work: impl Fn(&Chunk) -> T + Sync,
    mut sink: impl FnMut(T) -> ControlFlow<()>,
) -> Result<ReadStats, DecodeError> {
    use std::collections::BTreeMap;
    use std::sync::{mpsc, Arc, Mutex};

    let input = decompress(raw, file.compression, limits)?;
    let counter = input.counter();
    let mut framer = LineFramer::new(input, limits.max_record_bytes);
    let workers = workers.max(1);
    let slots = 2 * workers + 2;
    std::thread::scope(|s| {
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Result<Chunk, DecodeError>)>(workers);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) =
            mpsc::sync_channel::<(u64, Result<T, DecodeError>, Option<Chunk>)>(slots);
        let (free_tx, free_rx) = mpsc::sync_channel::<Chunk>(slots);
        for _ in 0..slots {
            let _ = free_tx.send(Chunk::default());
        }
        // The framer: stops at the input's end, at an error, or when nobody listens any more.
        s.spawn(move || loop {
            let Ok(mut chunk) = free_rx.recv() else {
                return;
            };
            let item = match framer.next_chunk(&mut chunk) {
                Ok(true) => (chunk.seq, Ok(chunk)),
                Ok(false) => return,
                // The error takes the place (sequence number) of the chunk it broke.
                Err(e) => (chunk.seq, Err(e)),
            };
            let last = item.1.is_err();
            if job_tx.send(item).is_err() || last {
                return;
            }
        });
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let work = &work;
            s.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let sent = match job {
                    Err(mpsc::RecvError) => return,
                    Ok((seq, Ok(chunk))) => done_tx.send((seq, Ok(work(&chunk)), Some(chunk))),
                    Ok((seq, Err(e))) => done_tx.send((seq, Err(e), None)),
                };
                if sent.is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        // In-order delivery; results that arrive early wait here (at most `slots` of them).
        let mut waiting: BTreeMap<u64, Result<T, DecodeError>> = BTreeMap::new();
        let mut next = 0u64;
        let mut records_done = 0u64;
        for (seq, result, chunk) in done_rx.iter() {
            if let Some(chunk) = chunk {
                records_done = records_done.max(chunk.end_n());
                let _ = free_tx.send(chunk);
            }
            waiting.insert(seq, result);
            while let Some(result) = waiting.remove(&next) {
                next += 1;
                match result {
                    Ok(t) => {
                        if sink(t).is_break() {
                            return Ok(ReadStats {
                                records: records_done,
                                decompressed_bytes: counter.get(),
                            });
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(ReadStats {
            records: records_done,
            decompressed_bytes: counter.get(),
        })
    })
}

/// Maps an error from a decompressing reader back to what it was.
pub(crate) fn classify(e: io::Error, offset: u64) -> DecodeError {
    match e
        .get_ref()
        .and_then(|i| i.downcast_ref::<hold::HoldError>())
    {
        Some(hold::HoldError::Full { limit }) => return DecodeError::HoldFull { limit: *limit },
        Some(hold::HoldError::Stopped { held }) => return DecodeError::HoldStopped { held: *held },
        None => {}
    }
    if let Some(b) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<compress::RatioExceeded>())
    {
        return DecodeError::Bomb {
            codec: b.codec,
            output: b.output,
            input: b.input,
            ratio: b.output / b.input.max(1),
            limit: b.limit,
        };
    }
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<compress::CapExceeded>())
    {
        Some(cap) => DecodeError::TooLarge { limit: cap.0 },
        None => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<compress::CodecError>())
        {
            Some(c) => DecodeError::Corrupt {
                codec: c.codec,
                offset,
                detail: c.detail.clone(),
            },
            None => DecodeError::Io {
                offset,
                detail: e.to_string(),
            },
        },
    }
}

#[cfg(test)]
mod tests;
