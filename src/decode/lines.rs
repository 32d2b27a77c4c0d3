//! JSON-lines framing: decompressed bytes → chunks of whole lines, optionally on its own thread.

use std::io::BufRead;
use std::ops::ControlFlow;
use std::sync::mpsc;

use super::compress::Decompressed;
use super::{classify, DecodeError};

/// Lines are handed over in chunks of about this size, so the channel costs nothing per line.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks in flight between the two threads: bounds memory at about this many MiB.
const IN_FLIGHT: usize = 3;

/// A line of a chunk: `data[start..end]` without the newline and a trailing `\r`.
#[derive(Clone, Copy, Debug)]
pub struct Line {
    pub start: usize,
    pub end: usize,
    /// Non-zero when the line was longer than the record limit: its full length (its bytes
    /// were skipped, only the first ones are kept for the report).
    pub oversize: u64,
    /// Empty or only white space: not a record, takes no record number.
    pub blank: bool,
}

/// Whole lines, copied out of the decompressor's buffer.
#[derive(Default)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub lines: Vec<Line>,
    /// The record number of the chunk's first record; blank lines take none.
    pub first_n: u64,
    /// Where the chunk stands in the object (0, 1, 2, …).
    pub seq: u64,
    /// The decompressed byte offset of the chunk's first line, from where the framer started.
    pub offset: u64,
}

impl Chunk {
    pub fn line(&self, l: &Line) -> &[u8] {
        &self.data[l.start..l.end]
    }

    /// The record number after this chunk's last record.
    pub fn end_n(&self) -> u64 {
        self.first_n + self.lines.iter().filter(|l| !l.blank).count() as u64
    }
}

/// Splits a decompressed stream into lines, bounded by the record limit.
pub struct LineFramer<'r> {
    input: Decompressed<'r>,
    max_record: usize,
    at_start: bool,
    eof: bool,
    /// An error met after some lines of a chunk: those lines go out first, the error next.
    pending: Option<DecodeError>,
    next_n: u64,
    next_seq: u64,
    /// Decompressed bytes consumed so far: the offset of the next line, once a chunk ends.
    offset: u64,
}

/// How much of an oversize line is kept for the error report.
const OVERSIZE_KEEP: usize = 1024;

impl<'r> LineFramer<'r> {
    pub fn new(input: Decompressed<'r>, max_record: usize) -> Self {
        LineFramer {
            input,
            max_record,
            at_start: true,
            eof: false,
            pending: None,
            next_n: 0,
            next_seq: 0,
            offset: 0,
        }
    }

    /// A framer over data that starts at a line boundary inside an object (a resume): its
    /// first record is numbered `first_n`, its first byte is at decompressed offset `offset`
    /// of the reading, and no byte-order mark is looked for.
    pub fn resumed(input: Decompressed<'r>, max_record: usize, first_n: u64, offset: u64) -> Self {
        LineFramer {
            at_start: false,
            next_n: first_n,
            offset,
            ..LineFramer::new(input, max_record)
        }
    }

    fn finish_line(&mut self, chunk: &mut Chunk, start: usize, oversize: u64) {
        let mut end = chunk.data.len();
        if chunk.data[start..end].ends_with(b"\r") {
            end -= 1;
        }
        let blank = oversize == 0 && chunk.data[start..end].iter().all(u8::is_ascii_whitespace);
        self.next_n += u64::from(!blank);
        chunk.lines.push(Line {
            start,
            end,
            oversize,
            blank,
        });
    }

    /// Fills `chunk` with the next lines; returns false once the input is exhausted and empty.
    pub fn next_chunk(&mut self, chunk: &mut Chunk) -> Result<bool, DecodeError> {
        chunk.data.clear();
        chunk.lines.clear();
        chunk.first_n = self.next_n;
        chunk.seq = self.next_seq;
        chunk.offset = self.offset;
        self.next_seq += 1;
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        if self.eof {
            return Ok(false);
        }
        let mut line_start = 0;
        let mut skipped: u64 = 0; // > 0 while skipping the rest of an oversize line
        loop {
            let counter = self.input.counter();
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) => {
                    let e = classify(e, counter.get());
                    self.eof = true;
                    // The unfinished line is not a record: the stream broke inside it.
                    chunk.data.truncate(line_start);
                    if chunk.lines.is_empty() {
                        return Err(e);
                    }
                    self.pending = Some(e);
                    return Ok(true);
                }
            };
            if buf.is_empty() {
                self.eof = true;
                if skipped > 0 {
                    self.finish_line(chunk, line_start, skipped);
                } else if chunk.data.len() > line_start {
                    self.finish_line(chunk, line_start, 0);
                }
                return Ok(!chunk.lines.is_empty());
            }
            let mut buf = buf;
            let mut bom = 0;
            if self.at_start {
                self.at_start = false;
                if buf.starts_with(b"\xEF\xBB\xBF") {
                    buf = &buf[3..];
                    bom = 3;
                }
            }
            match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    if skipped > 0 {
                        self.finish_line(chunk, line_start, skipped + i as u64);
                        skipped = 0;
                    } else {
                        chunk.data.extend_from_slice(&buf[..i]);
                        let len = chunk.data.len() - line_start;
                        if len > self.max_record {
                            chunk.data.truncate(line_start + OVERSIZE_KEEP);
                            self.finish_line(chunk, line_start, len as u64);
                        } else {
                            self.finish_line(chunk, line_start, 0);
                        }
                    }
                    self.input.consume(bom + i + 1);
                    self.offset += (bom + i + 1) as u64;
                    line_start = chunk.data.len();
                    if chunk.data.len() >= CHUNK_BYTES {
                        return Ok(true);
                    }
                }
                None => {
                    let len = buf.len();
                    if skipped > 0 {
                        skipped += len as u64;
                    } else {
                        chunk.data.extend_from_slice(buf);
                        let line_len = chunk.data.len() - line_start;
                        if line_len > self.max_record {
                            chunk.data.truncate(line_start + OVERSIZE_KEEP);
                            skipped = line_len as u64;
                        }
                    }
                    self.input.consume(bom + len);
                    self.offset += (bom + len) as u64;
                }
            }
        }
    }

    /// Hands every chunk to `visit`, framing on a second thread when `threads` ≥ 2.
    pub fn run(
        mut self,
        threads: usize,
        visit: &mut dyn FnMut(&Chunk) -> ControlFlow<()>,
    ) -> Result<(), DecodeError> {
        if threads < 2 {
            let mut chunk = Chunk::default();
            while self.next_chunk(&mut chunk)? {
                if visit(&chunk).is_break() {
                    break;
                }
            }
            return Ok(());
        }
        std::thread::scope(|s| {
            let (full_tx, full_rx) = mpsc::sync_channel::<Result<Chunk, DecodeError>>(IN_FLIGHT);
            let (empty_tx, empty_rx) = mpsc::sync_channel::<Chunk>(IN_FLIGHT + 1);
            for _ in 0..IN_FLIGHT {
                let _ = empty_tx.send(Chunk::default());
            }
            s.spawn(move || loop {
                let Ok(mut chunk) = empty_rx.recv() else {
                    return;
                };
                match self.next_chunk(&mut chunk) {
                    Ok(true) => {
                        if full_tx.send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                    Ok(false) => return,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        return;
                    }
                }
            });
            for item in full_rx.iter() {
                let chunk = item?;
                if visit(&chunk).is_break() {
                    break;
                }
                // The framer may have finished: a failed recycle is fine, queued items still count.
                let _ = empty_tx.send(chunk);
            }
            // Dropping the receivers makes the framer stop at its next send.
            Ok(())
        })
    }
}
