//! Byte ranges for the Parquet reader: the [`ReadAt`] port (a local file, an S3 object read
//! with ranged GETs), the crate's `ChunkReader` over it with a window of read-ahead buffers,
//! and how a row group's column chunks are coalesced into few reads under the read-ahead budget.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

/// A source of bytes by offset: a local file, an object read with ranged GETs.
pub trait ReadAt: Send + Sync + 'static {
    /// The total size in bytes.
    fn len(&self) -> u64;
    /// Exactly `len` bytes from `offset` (a short read is an error).
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether each read costs a request (S3): the reader then fetches a row group's column
    /// chunks in a few large reads, ahead of time, instead of page by page.
    fn read_ahead(&self) -> bool {
        false
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        (**self).read_at(offset, len)
    }
    fn read_ahead(&self) -> bool {
        (**self).read_ahead()
    }
}

impl ReadAt for File {
    fn len(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    }
}

/// A read of the source that failed (kept apart from bad content: it may succeed again).
#[derive(Debug)]
pub(super) struct ReadFailed(pub(super) io::Error);

impl std::fmt::Display for ReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ReadFailed {}

/// Bytes fetched ahead for the row group being read: (offset, bytes) runs, in file order.
pub(super) type Window = Arc<Mutex<Vec<(u64, Bytes)>>>;

/// [`ReadAt`] as the `parquet` crate wants it, serving reads that fall inside the row group
/// fetched ahead from memory.
pub(super) struct Source<S> {
    pub(super) inner: Arc<S>,
    pub(super) window: Window,
}

impl<S> Clone for Source<S> {
    fn clone(&self) -> Self {
        Source {
            inner: Arc::clone(&self.inner),
            window: Arc::clone(&self.window),
        }
    }
}

impl<S: ReadAt> Source<S> {
    /// Up to `max` bytes from `pos`: from the window when `pos` is inside it (never past the
    /// run it falls in), else read from the source.
    fn block(&self, pos: u64, max: usize) -> io::Result<Bytes> {
        if let Some(b) = self.windowed(pos, 1) {
            let n = max.min(b.len());
            return Ok(b.slice(..n));
        }
        let n = (self.inner.len().saturating_sub(pos)).min(max as u64) as usize;
        self.inner.read_at(pos, n)
    }

    /// The window's bytes from `pos` to the end of its run, if `pos..pos + len` is inside it.
    /// A read that spans adjacent runs (where the read-ahead stopped) is copied together.
    fn windowed(&self, pos: u64, len: usize) -> Option<Bytes> {
        let window = self.window.lock().ok()?;
        let i = window
            .iter()
            .position(|(start, b)| pos >= *start && pos < start + b.len() as u64)?;
        let (start, bytes) = &window[i];
        let first = bytes.slice((pos - start) as usize..);
        if first.len() >= len {
            return Some(first);
        }
        let mut joined = first.to_vec();
        let mut end = start + bytes.len() as u64;
        for (next, b) in &window[i + 1..] {
            if *next != end || joined.len() >= len {
                break;
            }
            joined.extend_from_slice(&b[..b.len().min(len - joined.len())]);
            end += b.len() as u64;
        }
        (joined.len() >= len).then(|| Bytes::from(joined))
    }
}

impl<S: ReadAt> Length for Source<S> {
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl<S: ReadAt> ChunkReader for Source<S> {
    type T = Cursor<S>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Cursor<S>> {
        Ok(Cursor {
            src: self.clone(),
            pos: start,
            buf: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if let Some(b) = self.windowed(start, length) {
            return Ok(b.slice(..length));
        }
        self.inner
            .read_at(start, length)
            .map_err(|e| ParquetError::External(Box::new(ReadFailed(e))))
    }
}

/// A sequential reader over a [`Source`] (page headers are read this way), in small blocks.
pub(super) struct Cursor<S> {
    src: Source<S>,
    pos: u64,
    buf: Bytes,
}

/// Block size of [`Cursor`]: a page header is well under it.
pub(super) const CURSOR_BLOCK: usize = 16 << 10;

impl<S: ReadAt> Read for Cursor<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = self.src.block(self.pos, CURSOR_BLOCK.max(out.len()))?;
            self.pos += self.buf.len() as u64;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// Column chunks closer than this are fetched in one read (the gap is read and dropped).
pub(super) const COALESCE_GAP: u64 = 1 << 20;

/// Sorted byte ranges, with neighbours closer than [`COALESCE_GAP`] merged.
pub(super) fn coalesce(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(COALESCE_GAP) => {
                last.end = last.end.max(r.end)
            }
            _ => out.push(r),
        }
    }
    out
}

/// Bytes of the next row group fetched while this one is read; the rest of it is fetched when
/// it starts. Memory for Parquet pages stays under one row group + this.
pub(super) const READ_AHEAD_MAX: u64 = 64 << 20;

/// `ranges` cut where `budget` bytes of them are reached: (before, after).
pub(super) fn split_at_budget(
    ranges: Vec<Range<u64>>,
    budget: u64,
) -> (Vec<Range<u64>>, Vec<Range<u64>>) {
    let (mut before, mut after, mut left) = (Vec::new(), Vec::new(), budget);
    for r in ranges {
        let n = r.end - r.start;
        if left >= n {
            left -= n;
            before.push(r);
        } else if left > 0 {
            before.push(r.start..r.start + left);
            after.push(r.start + left..r.end);
            left = 0;
        } else {
            after.push(r);
        }
    }
    (before, after)
}

/// Reads `ranges` whole, one read each.
pub(super) fn fetch<S: ReadAt>(src: &S, ranges: &[Range<u64>]) -> io::Result<Vec<(u64, Bytes)>> {
    ranges
        .iter()
        .map(|r| Ok((r.start, src.read_at(r.start, (r.end - r.start) as usize)?)))
        .collect()
}

/// A [`ReadAt`] over bytes in memory, for tests.
#[cfg(test)]
pub(crate) struct Mem(pub Vec<u8>);

#[cfg(test)]
impl ReadAt for Mem {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = offset as usize;
        self.0
            .get(start..start + len)
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_ahead_budget_splits_ranges_and_reads_span_the_cut() {
        assert_eq!(
            split_at_budget(vec![0..10, 20..40, 50..60], 15),
            (vec![0..10, 20..25], vec![25..40, 50..60])
        );
        assert_eq!(
            split_at_budget(vec![0..10, 20..30], 20),
            (vec![0..10, 20..30], vec![])
        );
        let src = Source {
            inner: Arc::new(Mem((0..100u8).collect())),
            window: Window::default(),
        };
        *src.window.lock().unwrap() = vec![
            (10, Bytes::from((10..20u8).collect::<Vec<_>>())),
            (20, Bytes::from((20..30u8).collect::<Vec<_>>())),
        ];
        assert_eq!(
            &src.windowed(15, 10).unwrap()[..],
            &(15..25u8).collect::<Vec<_>>()[..]
        );
        assert_eq!(
            src.windowed(25, 10),
            None,
            "past the window: read from the source"
        );
        assert_eq!(
            src.get_bytes(25, 10).unwrap(),
            Bytes::from((25..35u8).collect::<Vec<_>>())
        );
    }

    #[test]
    fn coalescing_merges_near_ranges_only() {
        let mb = 1u64 << 20;
        assert_eq!(
            coalesce(vec![
                10..20,
                0..5,
                5 * mb..6 * mb,
                20..30,
                30 + mb..40 + mb,
                7..7
            ]),
            vec![0..40 + mb, 5 * mb..6 * mb]
        );
    }
}
