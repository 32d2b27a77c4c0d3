//! Object bytes → records: one module owns every decompressor and the size caps, then frames
//! JSON lines or CSV rows. Streaming throughout; nothing holds the whole object.

mod compress;
mod csv_rows;
mod lines;

use std::io::{self, Read};
use std::ops::ControlFlow;

use crate::config::{ConverterFile, FileType};
use crate::datalang::value::{parse_record, RecordError};
use crate::datalang::{Keys, Record};
pub use compress::{decompress, detect, Decompressed};
pub use lines::{Chunk, LineFramer};

/// Bounds on what one object may make us read.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Decompressed bytes of one object; beyond it the object fails (a decompression bomb).
    pub max_decompressed_bytes: u64,
    /// Bytes of one record; a longer JSON line is an invalid record, a longer CSV row fails the object.
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_decompressed_bytes: 64 << 30, max_record_bytes: 10 << 20 }
    }
}

/// Why an object could not be read to its end. Records before the error were delivered.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("corrupt {codec} data after {offset} decompressed bytes: {detail}")]
    Corrupt { codec: &'static str, offset: u64, detail: String },
    #[error("compressionType is {codec}, but the data does not start with the {codec} signature ({magic}); if it is already decompressed (e.g. stored with Content-Encoding), use compressionType \"auto\" or \"none\"")]
    NotCompressed { codec: &'static str, magic: &'static str },
    #[error("decompressed size exceeds the limit of {limit} bytes (raise the max-decompressed-bytes limit if the file is genuine)")]
    TooLarge { limit: u64 },
    #[error("CSV row {record} is longer than the limit of {limit} bytes (an unclosed quote?)")]
    RowTooLong { record: u64, limit: usize },
    #[error("CSV: {detail}")]
    Csv { detail: String },
    #[error("reading the object failed after {offset} decompressed bytes: {detail}")]
    Io { offset: u64, detail: String },
}

impl DecodeError {
    /// Whether retrying the same bytes can succeed (a read error, not bad content).
    pub fn is_retryable(&self) -> bool {
        matches!(self, DecodeError::Io { .. })
    }
}

/// One record as the decoder delivers it.
pub enum Rec<'a> {
    /// A record; `line` is its JSON text (JSON lines) or `None` (CSV, rebuilt from `record`).
    Ok { record: &'a Record<'a>, line: Option<&'a [u8]> },
    /// Not a record (bad JSON, not an object, too long, ragged CSV row): the reason, and the raw text.
    Invalid { reason: String, raw: &'a [u8] },
}

/// Counts that the decoder alone can know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub records: u64,
    pub decompressed_bytes: u64,
}

/// Reads every record of an object, in order, numbering them from 0 (blank lines and the CSV
/// header take no number). `threads` ≥ 2 decompresses and frames on a second thread.
/// `f` may stop early with `ControlFlow::Break`.
pub fn read_records<R: Read + Send>(
    raw: R,
    file: &ConverterFile,
    keys: &Keys,
    limits: Limits,
    threads: usize,
    mut f: impl FnMut(u64, Rec<'_>) -> ControlFlow<()>,
) -> Result<ReadStats, DecodeError> {
    let input = decompress(raw, file.compression, limits)?;
    match file.file_type {
        FileType::Csv => csv_rows::read(input, &file.csv, limits, &mut f),
        FileType::Json | FileType::Parquet => {
            let counter = input.counter();
            let mut n = 0u64;
            let mut visit = |chunk: &Chunk| -> ControlFlow<()> {
                for line in &chunk.lines {
                    let bytes = chunk.line(line);
                    if line.oversize == 0 && bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let rec = if line.oversize > 0 {
                        Rec::Invalid {
                            reason: format!(
                                "record is longer than the limit of {} bytes ({} bytes); raise --max-record-bytes if it is genuine",
                                limits.max_record_bytes, line.oversize
                            ),
                            raw: bytes,
                        }
                    } else {
                        match parse_record(bytes, keys) {
                            Ok(record) => {
                                let flow = f(n, Rec::Ok { record: &record, line: Some(bytes) });
                                n += 1;
                                if flow.is_break() {
                                    return flow;
                                }
                                continue;
                            }
                            Err(RecordError::NotObject(kind)) => Rec::Invalid {
                                reason: format!("record is a JSON {kind}; each line must be one JSON object"),
                                raw: bytes,
                            },
                            Err(RecordError::Syntax(e)) => Rec::Invalid { reason: format!("record is not valid JSON: {e}"), raw: bytes },
                            Err(RecordError::Utf8(at)) => Rec::Invalid { reason: format!("record is not valid UTF-8 (at byte {at})"), raw: bytes },
                        }
                    };
                    let flow = f(n, rec);
                    n += 1;
                    flow?;
                }
                ControlFlow::Continue(())
            };
            LineFramer::new(input, limits.max_record_bytes).run(threads, &mut visit)?;
            Ok(ReadStats { records: n, decompressed_bytes: counter.get() })
        }
    }
}

/// Maps an error from a decompressing reader back to what it was.
pub(crate) fn classify(e: io::Error, offset: u64) -> DecodeError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<compress::CapExceeded>()) {
        Some(cap) => DecodeError::TooLarge { limit: cap.0 },
        None => match e.get_ref().and_then(|inner| inner.downcast_ref::<compress::CodecError>()) {
            Some(c) => DecodeError::Corrupt { codec: c.codec, offset, detail: c.detail.clone() },
            None => DecodeError::Io { offset, detail: e.to_string() },
        },
    }
}
