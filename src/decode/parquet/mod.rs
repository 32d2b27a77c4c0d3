//! Parquet files → records, row group by row group, over any source that reads byte ranges
//! ([`ReadAt`]): a local file, or an S3 object read with ranged GETs. Only the footer and the
//! column chunks of the row group being read are ever fetched; nothing holds the whole file.
//!
//! A source that pays per request ([`ReadAt::read_ahead`]: S3) gets each row group's column
//! chunks in a few large reads (one per run of adjacent chunks), the first 64 MiB of them
//! fetched on a helper thread while the row group before is converted; pages are then served
//! from those buffers, which are freed as soon as their row group is done. At most one row
//! group's bytes and 64 MiB of the next are held.
//!
//! Values map as converter.md §1 "Parquet values" decides (`values.rs`); rows are rebuilt from
//! the leaf columns by `assemble.rs` following the plan that `schema.rs` builds once per file,
//! which is also where a column of a type without a record value fails the file. String
//! columns are read from their pages by `pages.rs`; byte ranges and the read-ahead window are
//! `ranges.rs`.
//!
//! About 750 lines, a third of them tests: the file-level reader (footer, row-group plan,
//! positions, read-ahead, the reading loop) kept in one place, as each part changes with the
//! others.
//! [`read_records`](super::read_records) reaches Parquet through [`read_stream`], which spools
//! a plain stream (stdin, a streaming GET) to an unlinked temporary file first; callers that
//! can read ranges use [`ParquetFile`] directly, which also resumes from a row group and row.

mod assemble;
mod pages;
mod ranges;
mod schema;
mod values;

use std::fs::File;
use std::io::{self, Read};
use std::ops::{ControlFlow, Range};
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;

use super::{DecodeError, ReadStats, Rec};
use crate::datalang::{Keys, Record, IN_PLACE, NO_SLOT, V};
use assemble::{column, Batch, Column, ColumnError, Reader, Row, BATCH_ROWS};
pub use ranges::ReadAt;
use ranges::{coalesce, fetch, split_at_budget, ReadFailed, Source, Window, READ_AHEAD_MAX};
use schema::{plan, Plan};

/// A row group's bytes being fetched on a helper thread.
struct Ahead {
    group: usize,
    fetch: std::thread::JoinHandle<io::Result<Vec<(u64, Bytes)>>>,
    /// What the read-ahead left for when the row group starts.
    rest: Vec<Range<u64>>,
}

/// One row group: where its rows sit in the file's numbering and in its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowGroupInfo {
    pub index: usize,
    /// The number (`n`) of its first row: rows are numbered from 0 across row groups.
    pub first_row: u64,
    pub rows: u64,
    /// The bytes of all its column chunks (what reading it fetches).
    pub bytes: Range<u64>,
}

/// Where to start reading: a row group, and a row within it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub row_group: usize,
    pub row: u64,
}

/// An open Parquet file: its footer read and every column's type checked.
pub struct ParquetFile<S: ReadAt> {
    reader: SerializedFileReader<Source<S>>,
    src: Source<S>,
    plan: Plan,
    groups: Vec<RowGroupInfo>,
    len: u64,
}

fn parquet_error(e: ParquetError, what: impl FnOnce(String) -> String) -> DecodeError {
    if let ParquetError::External(inner) = &e {
        if let Some(ReadFailed(io)) = inner.downcast_ref::<ReadFailed>() {
            return DecodeError::Io {
                offset: 0,
                detail: io.to_string(),
            };
        }
    }
    DecodeError::Parquet(what(e.to_string()))
}

impl<S: ReadAt> ParquetFile<S> {
    /// Reads the footer. Fails when the source is not Parquet, is truncated, or has a column
    /// of a type without a record value (converter.md §1).
    pub fn open(src: S) -> Result<Self, DecodeError> {
        let len = src.len();
        let io_err = |e: io::Error| DecodeError::Io {
            offset: 0,
            detail: e.to_string(),
        };
        if len < 4 || &src.read_at(0, 4).map_err(io_err)?[..] != b"PAR1" {
            return Err(DecodeError::Parquet(
                "not a Parquet file: it does not start with the PAR1 magic".into(),
            ));
        }
        if len < 12 || &src.read_at(len - 4, 4).map_err(io_err)?[..] != b"PAR1" {
            return Err(DecodeError::Parquet(format!(
                "the file is truncated: it does not end with the PAR1 magic of a Parquet footer ({len} bytes)"
            )));
        }
        let src = Source {
            inner: Arc::new(src),
            window: Window::default(),
        };
        let reader = assemble::guard(|| SerializedFileReader::new(src.clone()))
            .map_err(|e| parquet_error(e, |e| format!("cannot read the footer: {e}")))?;
        let meta = reader.metadata();
        let plan = plan(meta.file_metadata().schema_descr())
            .map_err(|e| DecodeError::Parquet(e.to_string()))?;
        let mut groups = Vec::new();
        let mut first_row = 0u64;
        for (index, g) in meta.row_groups().iter().enumerate() {
            let corrupt = |what: &str| {
                DecodeError::Parquet(format!(
                    "the footer is corrupt: row group {index} has {what}"
                ))
            };
            let rows = u64::try_from(g.num_rows()).map_err(|_| corrupt("a negative row count"))?;
            let mut bytes: Option<Range<u64>> = None;
            for c in g.columns() {
                let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
                let (Ok(start), Ok(n)) = (u64::try_from(start), u64::try_from(c.compressed_size()))
                else {
                    return Err(corrupt("a column chunk at a negative offset or size"));
                };
                let end = start.saturating_add(n);
                if end > len {
                    return Err(corrupt("a column chunk past the end of the file"));
                }
                bytes = Some(match bytes {
                    Some(b) => b.start.min(start)..b.end.max(end),
                    None => start..end,
                });
            }
            let bytes = bytes.unwrap_or(0..0);
            groups.push(RowGroupInfo {
                index,
                first_row,
                rows,
                bytes,
            });
            first_row += rows;
        }
        Ok(ParquetFile {
            reader,
            src,
            plan,
            groups,
            len,
        })
    }

    /// The row groups, in file order.
    pub fn row_groups(&self) -> &[RowGroupInfo] {
        &self.groups
    }

    /// Every row of the file.
    pub fn rows(&self) -> u64 {
        self.groups.last().map_or(0, |g| g.first_row + g.rows)
    }

    /// The position of row `n` (the end of the file when `n` is past it).
    pub fn position_of(&self, n: u64) -> Position {
        match self.groups.iter().find(|g| n < g.first_row + g.rows) {
            Some(g) => Position {
                row_group: g.index,
                row: n - g.first_row,
            },
            None => Position {
                row_group: self.groups.len(),
                row: 0,
            },
        }
    }

    /// Hands every row from `from` on to `f`, numbered across row groups, reading only the
    /// top-level columns `keys` names. `f` may stop early with `ControlFlow::Break`.
    /// `records` in the result is the number one past the last row handed over.
    // Long: the row-group loop, its ranged fetches and the batch-by-batch assembly of rows
    // share their buffers; split, each part would take them all as arguments.
    pub fn read(
        &self,
        keys: &Keys,
        from: Position,
        f: &mut dyn FnMut(u64, Rec<'_>) -> ControlFlow<()>,
    ) -> Result<ReadStats, DecodeError> {
        let fields: Vec<&(String, schema::Node)> = self
            .plan
            .fields
            .iter()
            .filter(|(name, _)| match keys {
                Keys::All => true,
                Keys::Only { ids, .. } => ids.get(name).is_some(),
            })
            .collect();
        // Each field's slot among the keys the converter reads: records then find their keys
        // by slot, as parsed JSON records do.
        let slot_of: Option<Vec<u32>> = match keys {
            Keys::All => None,
            Keys::Only { ids, .. } => Some(
                fields
                    .iter()
                    .map(|(name, _)| ids.get(name).unwrap_or(NO_SLOT))
                    .collect(),
            ),
        };
        let n_slots = match keys {
            Keys::All => 0,
            Keys::Only { ids, .. } => ids.len(),
        };
        // The fields that are a leaf (optional or not), when the converter finds keys by
        // slot: their column, whose values records then borrow from the batch in place
        // instead of having them moved into a value tree of their own.
        let in_place: Vec<Option<usize>> = fields
            .iter()
            .map(|(_, node)| node.leaf_column().filter(|_| slot_of.is_some()))
            .collect();
        let any_in_place = in_place.iter().any(Option::is_some);
        let mut slots: Vec<u32> = Vec::new();
        let mut leaves = Vec::new();
        for (_, node) in &fields {
            node.leaves(&mut leaves);
        }
        let descr = self.reader.metadata().file_metadata().schema_descr_ptr();
        let mut kept = vec![false; descr.num_columns()];
        for &col in in_place.iter().flatten() {
            kept[col] = true;
        }
        let mut n = self
            .groups
            .get(from.row_group)
            .map_or(self.rows(), |g| g.first_row + from.row.min(g.rows));
        let stats = |n| ReadStats {
            records: n,
            decompressed_bytes: self.len,
        };
        let skip_of = |g: &RowGroupInfo| {
            if g.index == from.row_group {
                from.row.min(g.rows)
            } else {
                0
            }
        };
        let todo: Vec<&RowGroupInfo> = self
            .groups
            .iter()
            .skip(from.row_group)
            .filter(|g| skip_of(g) < g.rows)
            .collect();
        let ahead = self.src.inner.read_ahead() && !leaves.is_empty();
        let mut next: Option<Ahead> = None;
        for (k, g) in todo.iter().enumerate() {
            let skip = skip_of(g);
            // Declared before the column readers, so dropped after them: the window is freed
            // once nothing of this row group is left.
            let _window = if ahead {
                let following = todo.get(k + 1).map(|g| g.index);
                Some(self.fill_window(g.index, &leaves, &mut next, following)?)
            } else {
                None
            };
            let corrupt = |ColumnError(col, e): ColumnError| {
                parquet_error(e, |e| {
                    format!(
                        "corrupt data in column `{}` of row group {}: {e}",
                        self.plan.column_names[col], g.index
                    )
                })
            };
            let group = assemble::guard(|| self.reader.get_row_group(g.index))
                .map_err(|e| parquet_error(e, |e| format!("row group {}: {e}", g.index)))?;
            let mut cols: Vec<Option<Column>> = Vec::new();
            cols.resize_with(descr.num_columns(), || None);
            for &i in &leaves {
                let d = descr.column(i);
                let kind = kind_of_leaf(&self.plan, i);
                let fast = kind == values::Kind::Str
                    && pages::fast_string_chunk(group.metadata().column(i));
                let c = assemble::guard(|| {
                    Ok(if fast {
                        Reader::Pages(group.get_column_page_reader(i)?)
                    } else {
                        Reader::Crate(Box::new(group.get_column_reader(i)?))
                    })
                })
                .and_then(|r| column(r, kind, d.max_def_level(), d.max_rep_level(), skip as usize))
                .map_err(|e| corrupt(ColumnError(i, e)))?;
                cols[i] = Some(c);
            }
            let mut at = vec![0usize; cols.len()];
            let mut left = g.rows - skip;
            while left > 0 {
                let want = left.min(BATCH_ROWS as u64) as usize;
                // Rows that every column has; a column that ends early fails after them.
                let (mut have, mut short) = (want, None);
                for &i in &leaves {
                    let c = cols[i].as_mut().expect("the plan's columns are open");
                    let got = c.refill(want).map_err(|e| corrupt(ColumnError(i, e)))?;
                    if got < have {
                        (have, short) = (got, Some(i));
                    }
                }
                at.fill(0);
                let (mut batch, kept) = Batch::fill(&cols, &kept);
                let mut out = Vec::with_capacity(fields.len());
                let mut parts = Vec::with_capacity(if any_in_place { fields.len() } else { 0 });
                for _ in 0..have {
                    let mut row = Row {
                        cols: &cols,
                        batch: &mut batch,
                        at: &mut at,
                        bad: None,
                        ended: None,
                    };
                    slots.clear();
                    slots.resize(n_slots, NO_SLOT);
                    parts.clear();
                    for (k, (name, node)) in fields.iter().enumerate() {
                        let at = match in_place[k] {
                            Some(col) => match row.in_place(col, &kept[col]) {
                                Some(v) => {
                                    parts.push(Some((name.as_str(), v)));
                                    IN_PLACE + (parts.len() - 1) as u32
                                }
                                None => continue,
                            },
                            None => {
                                let at = out.len() as u32;
                                if !row.push_field(name.as_str(), node, &mut out) {
                                    continue;
                                }
                                if any_in_place {
                                    parts.push(None);
                                }
                                at
                            }
                        };
                        if let Some(slot_of) = &slot_of {
                            // A repeated name is found at its first field, as by name.
                            match slots.get_mut(slot_of[k] as usize) {
                                Some(s) if *s == NO_SLOT => *s = at,
                                _ => {}
                            }
                        }
                    }
                    if let Some(col) = row.ended {
                        return Err(corrupt(Row::ended_error(col)));
                    }
                    let (flow, back) = match row.bad {
                        None => {
                            let record = match slot_of {
                                Some(_) => Record::with_parts(
                                    V::Obj(out),
                                    std::mem::take(&mut slots),
                                    std::mem::take(&mut parts),
                                ),
                                None => Record::new(V::Obj(out)),
                            };
                            let flow = f(
                                n,
                                Rec::Ok {
                                    record: &record,
                                    line: None,
                                },
                            );
                            let (value, s, p) = record.into_all_parts();
                            (slots, parts) = (s, p);
                            (flow, value)
                        }
                        Some(reason) => (f(n, Rec::Invalid { reason, raw: b"" }), V::Obj(out)),
                    };
                    // The row's entries are dropped; their vector serves the next row.
                    out = match back {
                        V::Obj(mut entries) => {
                            entries.clear();
                            entries
                        }
                        _ => Vec::new(),
                    };
                    n += 1;
                    if flow.is_break() {
                        return Ok(stats(n));
                    }
                }
                if let Some(i) = short {
                    return Err(corrupt(ColumnError(
                        i,
                        ParquetError::EOF("the column ends before the row group's last row".into()),
                    )));
                }
                left -= want as u64;
            }
        }
        Ok(stats(n))
    }
}

/// Empties the window when its row group is done (or reading stops).
struct WindowGuard<'a>(&'a Window);

impl Drop for WindowGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.0.lock() {
            w.clear();
        }
    }
}

impl<S: ReadAt> ParquetFile<S> {
    /// The byte ranges of row group `group`'s column chunks for columns `leaves`, coalesced.
    fn chunk_ranges(&self, group: usize, leaves: &[usize]) -> Vec<Range<u64>> {
        let g = self.reader.metadata().row_group(group);
        coalesce(
            leaves
                .iter()
                .map(|&i| {
                    let (start, len) = g.column(i).byte_range();
                    start..start.saturating_add(len).min(self.len)
                })
                .collect(),
        )
    }

    /// Puts row group `group`'s column chunks in the window (fetched ahead, or now), then
    /// starts fetching those of row group `following` on a helper thread.
    fn fill_window(
        &self,
        group: usize,
        leaves: &[usize],
        next: &mut Option<Ahead>,
        following: Option<usize>,
    ) -> Result<WindowGuard<'_>, DecodeError> {
        let parts = match next.take() {
            Some(a) if a.group == group => a
                .fetch
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the read-ahead thread panicked")))
                .and_then(|mut parts| {
                    parts.extend(fetch(&*self.src.inner, &a.rest)?);
                    parts.sort_by_key(|(start, _)| *start);
                    Ok(parts)
                }),
            _ => fetch(&*self.src.inner, &self.chunk_ranges(group, leaves)),
        }
        .map_err(|e| DecodeError::Io {
            offset: 0,
            detail: format!("reading row group {group}: {e}"),
        })?;
        if let Ok(mut w) = self.src.window.lock() {
            *w = parts;
        }
        if let Some(following) = following {
            let src = Arc::clone(&self.src.inner);
            let (ahead, rest) =
                split_at_budget(self.chunk_ranges(following, leaves), READ_AHEAD_MAX);
            *next = std::thread::Builder::new()
                .name("parquet-read-ahead".into())
                .spawn(move || fetch(&*src, &ahead))
                .ok()
                .map(|fetch| Ahead {
                    group: following,
                    fetch,
                    rest,
                });
        }
        Ok(WindowGuard(&self.src.window))
    }
}

/// The kind of leaf column `col` in the plan.
fn kind_of_leaf(plan: &Plan, col: usize) -> values::Kind {
    fn find(node: &schema::Node, col: usize) -> Option<values::Kind> {
        use schema::Node;
        match node {
            Node::Leaf { col: c, kind } => (*c == col).then_some(*kind),
            Node::Opt { child, .. } | Node::List { child, .. } => find(child, col),
            Node::Group { fields } => fields.iter().find_map(|(_, n)| find(n, col)),
            Node::Map { key, value, .. } => {
                find(key, col).or_else(|| value.as_deref().and_then(|v| find(v, col)))
            }
        }
    }
    plan.fields
        .iter()
        .find_map(|(_, n)| find(n, col))
        .unwrap_or(values::Kind::Null)
}

/// A temporary file, removed from its directory as soon as it is created.
fn spool_file() -> io::Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    loop {
        let path = dir.join(format!(
            "s3-import-parquet-{}-{}.spool",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads a Parquet file that arrives as a plain stream: it is copied to an unlinked temporary
/// file (the footer is at the end), then read by row groups from there.
pub fn read_stream<R: Read>(
    mut input: R,
    keys: &Keys,
    f: &mut dyn FnMut(u64, Rec<'_>) -> ControlFlow<()>,
) -> Result<ReadStats, DecodeError> {
    let mut spool = spool_file().map_err(|e| DecodeError::Io {
        offset: 0,
        detail: format!("cannot create a temporary file for the Parquet data: {e}"),
    })?;
    let mut copied = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(super::classify(e, copied)),
        };
        io::Write::write_all(&mut spool, &buf[..n]).map_err(|e| DecodeError::Io {
            offset: copied,
            detail: format!("writing the temporary copy of the Parquet data: {e}"),
        })?;
        copied += n as u64;
    }
    ParquetFile::open(spool)?.read(keys, Position::default(), f)
}

#[cfg(test)]
mod tests;
