//! CSV framing: rows → records of column name → string (an empty cell is absent).

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::rc::Rc;

use super::compress::Decompressed;
use super::{classify, DecodeError, Limits, Marker, ReadStats, Rec, Restart, RestartKind};
use crate::config::CsvOptions;
use crate::datalang::{Record, V};

/// Fails the read when one row grows past the record limit (the csv crate would buffer it whole).
struct RowGuard<'r> {
    inner: Decompressed<'r>,
    since_row: Rc<Cell<u64>>,
    limit: u64,
}

#[derive(Debug)]
struct RowTooLong;
impl std::fmt::Display for RowTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("row too long")
    }
}
impl std::error::Error for RowTooLong {}

impl Read for RowGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.since_row.get() + n as u64;
        self.since_row.set(total);
        if total > self.limit {
            return Err(io::Error::other(RowTooLong));
        }
        Ok(n)
    }
}

fn joined(fields: &csv::ByteRecord, delimiter: u8) -> Vec<u8> {
    let mut raw = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            raw.push(delimiter);
        }
        raw.extend_from_slice(f);
    }
    raw
}

/// A header kept in restart points (saved with each checkpoint) must stay small.
fn header_fits(header: &Option<Vec<String>>) -> bool {
    header
        .as_ref()
        .is_none_or(|h| h.iter().map(String::len).sum::<usize>() <= 16 << 10)
}

// Long: the row loop with its restart points, header and row-length guards in one place, as
// the JSON-lines reader has them.
pub(super) fn read(
    input: Decompressed<'_>,
    opts: &CsvOptions,
    limits: Limits,
    from: Option<&Restart>,
    skipped: u64,
    marker: &mut Marker<'_>,
    f: &mut dyn FnMut(u64, Rec<'_>) -> ControlFlow<()>,
) -> Result<ReadStats, DecodeError> {
    let counter = input.counter();
    let since_row = Rc::new(Cell::new(0));
    // The csv reader reads ahead by its buffer: allow that much on top of the record limit.
    let guard = RowGuard {
        inner: input,
        since_row: since_row.clone(),
        limit: limits.max_record_bytes as u64 + (64 << 10),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .escape(opts.escape)
        .double_quote(opts.escape.is_none())
        .buffer_capacity(64 << 10)
        .from_reader(guard);
    let mut row = csv::ByteRecord::new();
    // A resume starts at a row boundary after the header, whose names it carries.
    let mut header: Option<Vec<String>> = from.and_then(|r| r.header.clone());
    let mut n = from.map_or(0, |r| r.n);
    let mut first = from.is_none();
    let mut restartable = header_fits(&header);
    loop {
        // The reader stands at the start of a row (the next record's, or a blank line's).
        let at = skipped + reader.position().byte();
        match reader.read_byte_record(&mut row) {
            Ok(true) => {
                // A row is there (so the restart is not the object's end), the header behind.
                if !first && restartable {
                    marker.at(RestartKind::Csv, n, at, &header);
                }
            }
            Ok(false) => break,
            Err(e) => {
                return Err(match e.into_kind() {
                    csv::ErrorKind::Io(io)
                        if io.get_ref().is_some_and(|i| i.is::<RowTooLong>()) =>
                    {
                        DecodeError::RowTooLong {
                            record: n,
                            limit: limits.max_record_bytes,
                        }
                    }
                    csv::ErrorKind::Io(io) => classify(io, counter.get()),
                    other => DecodeError::Csv {
                        detail: format!("{other:?} at record {n}"),
                    },
                })
            }
        }
        since_row.set(0);
        if first {
            first = false;
            if row.get(0).is_some_and(|c| c.starts_with(b"\xEF\xBB\xBF")) {
                let mut fixed = csv::ByteRecord::new();
                for (i, cell) in row.iter().enumerate() {
                    fixed.push_field(if i == 0 { &cell[3..] } else { cell });
                }
                row = fixed;
            }
            if opts.header {
                let names = row
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        String::from_utf8(c.to_vec()).map_err(|_| DecodeError::Csv {
                            detail: format!("header column {} is not valid UTF-8", i + 1),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some((i, dup)) = names
                    .iter()
                    .enumerate()
                    .find(|(i, a)| names[..*i].contains(a))
                {
                    return Err(DecodeError::Csv {
                        detail: format!("the header names column {dup:?} twice (column {})", i + 1),
                    });
                }
                header = Some(names);
                restartable = header_fits(&header);
                continue;
            }
        }
        if row.len() == 1 && row[0].is_empty() {
            continue; // a blank line
        }
        let width = header.as_ref().map_or(usize::MAX, Vec::len);
        let mut entries = Vec::with_capacity(row.len());
        let mut invalid = None;
        if row.len() > width {
            invalid = Some(format!(
                "row has {} fields, but the header names {} columns",
                row.len(),
                width
            ));
        } else {
            for (i, cell) in row.iter().enumerate() {
                if cell.is_empty() {
                    continue;
                }
                let name: Cow<'_, str> = match &header {
                    Some(h) => Cow::Borrowed(h[i].as_str()),
                    None => Cow::Owned(format!("_{}", i + 1)),
                };
                match std::str::from_utf8(cell) {
                    Ok(s) => entries.push((name, V::Str(Cow::Borrowed(s)))),
                    Err(_) => {
                        invalid = Some(format!("column {name:?} is not valid UTF-8"));
                        break;
                    }
                }
            }
        }
        let flow = match invalid {
            Some(reason) => {
                let raw = joined(&row, opts.delimiter);
                f(n, Rec::Invalid { reason, raw: &raw })
            }
            None => {
                let record = Record::new(V::Obj(entries));
                f(
                    n,
                    Rec::Ok {
                        record: &record,
                        line: None,
                    },
                )
            }
        };
        n += 1;
        if flow.is_break() {
            break;
        }
    }
    Ok(ReadStats {
        records: n,
        decompressed_bytes: counter.get(),
    })
}
