//! Rows rebuilt from leaf columns: each column is read as a stream of (definition level,
//! repetition level, value) triplets and the [`Node`] tree consumes them row by row (the
//! record-assembly half of the Dremel encoding).
//!
//! Columns are read a batch of rows at a time ([`Column::refill`]): every column then holds
//! the triplets of the same rows, and the rows are rebuilt from them with values that borrow
//! the batch (strings are slices of the decoded pages, keys the plan's names) instead of
//! copies. Each column's position in its batch is a [`At`], kept apart from the batch so
//! that the batch stays borrowed while the cursors move.

use std::borrow::Cow;

use parquet::column::reader::{get_typed_column_reader, ColumnReader, ColumnReaderImpl};
use parquet::data_type::{self as t, DataType};
use parquet::errors::ParquetError;

use super::schema::Node;
use super::values::{key_text, Kind, Physical2V, Value};
use crate::datalang::V;

/// Rows read per batch.
pub const BATCH_ROWS: usize = 4096;

/// A typed column reader and the values of its current batch.
pub struct Typed<T: DataType> {
    reader: ColumnReaderImpl<T>,
    values: Vec<T::T>,
}

impl<T: DataType> Typed<T> {
    /// Reads `rows` rows' levels into `defs`/`reps` and their values: (rows, values, levels).
    fn read(
        &mut self,
        rows: usize,
        defs: Option<&mut Vec<i16>>,
        reps: Option<&mut Vec<i16>>,
    ) -> Result<(usize, usize, usize), ParquetError> {
        self.values.clear();
        let (reader, values) = (&mut self.reader, &mut self.values);
        guard(|| reader.read_records(rows, defs, reps, values))
    }
}

/// A leaf column's reader, by physical type.
pub enum Typed2 {
    Bool(Typed<t::BoolType>),
    Int32(Typed<t::Int32Type>),
    Int64(Typed<t::Int64Type>),
    Int96(Typed<t::Int96Type>),
    Float(Typed<t::FloatType>),
    Double(Typed<t::DoubleType>),
    Bytes(Typed<t::ByteArrayType>),
    Fixed(Typed<t::FixedLenByteArrayType>),
}

/// Runs `$body` with `$t` bound to the typed reader, whatever its type.
macro_rules! each_type {
    ($e:expr, $t:ident => $body:expr) => {
        match $e {
            Typed2::Bool($t) => $body,
            Typed2::Int32($t) => $body,
            Typed2::Int64($t) => $body,
            Typed2::Int96($t) => $body,
            Typed2::Float($t) => $body,
            Typed2::Double($t) => $body,
            Typed2::Bytes($t) => $body,
            Typed2::Fixed($t) => $body,
        }
    };
}

/// One leaf column of one row group and the triplets of its current batch of rows.
pub struct Column {
    typed: Typed2,
    kind: Kind,
    max_def: i16,
    max_rep: i16,
    defs: Vec<i16>,
    reps: Vec<i16>,
    /// Triplets in the batch.
    len: usize,
}

impl Column {
    /// Reads the next `rows` rows (fewer at the column's end): how many it read.
    pub fn refill(&mut self, rows: usize) -> Result<usize, ParquetError> {
        self.defs.clear();
        self.reps.clear();
        let defs = (self.max_def > 0).then_some(&mut self.defs);
        let reps = (self.max_rep > 0).then_some(&mut self.reps);
        let (records, values, levels) = each_type!(&mut self.typed, t => t.read(rows, defs, reps))?;
        self.len = if self.max_def > 0 { levels } else { values };
        if self.max_def > 0 && self.defs.len() < self.len
            || self.max_rep > 0 && self.reps.len() < self.len
        {
            return Err(ParquetError::General("fewer levels than announced".into()));
        }
        Ok(records)
    }

    #[inline]
    fn def(&self, at: usize) -> i16 {
        if self.max_def > 0 && at < self.len {
            self.defs[at]
        } else {
            0
        }
    }

    #[inline]
    fn rep(&self, at: usize) -> i16 {
        if self.max_rep > 0 && at < self.len {
            self.reps[at]
        } else {
            0
        }
    }

    /// The value at `cur` (`Ok(None)` when null or absent).
    #[inline]
    fn value(&self, cur: At) -> Value<'_> {
        if cur.at >= self.len || self.def(cur.at) < self.max_def {
            return Ok(None);
        }
        let kind = self.kind;
        let missing = || Err("a value is missing from its page".into());
        each_type!(&self.typed, t => match t.values.get(cur.value_at) {
            Some(v) => v.to_v(kind),
            None => missing(),
        })
    }
}

/// The strings of a batch's string columns, checked for UTF-8 once per batch (by column,
/// by value): `Err` holds where the invalid bytes start.
pub struct Texts<'b>(Vec<Option<Vec<Result<&'b str, usize>>>>);

/// Slots of [`Texts::of`]'s cache of strings already checked.
const TEXT_CACHE: usize = 256;

impl<'b> Texts<'b> {
    /// The strings of `cols`' string columns. A dictionary-encoded column hands out the same
    /// bytes of its dictionary page again and again: a string at the same address and of the
    /// same length as one already checked (all are alive while the batch is) is not checked
    /// again.
    pub fn of(cols: &'b [Option<Column>]) -> Self {
        let mut cache: [&'b str; TEXT_CACHE] = [""; TEXT_CACHE];
        Texts(
            cols.iter()
                .map(|c| match c {
                    Some(Column {
                        typed: Typed2::Bytes(t),
                        kind: Kind::Str,
                        ..
                    }) => {
                        cache.fill("");
                        Some(
                            t.values
                                .iter()
                                .map(|v| {
                                    let b = v.data();
                                    if b.is_empty() {
                                        return Ok("");
                                    }
                                    let addr = b.as_ptr() as usize;
                                    let slot = (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56)
                                        as usize
                                        % TEXT_CACHE;
                                    let hit = cache[slot];
                                    if hit.as_ptr() as usize == addr && hit.len() == b.len() {
                                        return Ok(hit);
                                    }
                                    let s = std::str::from_utf8(b).map_err(|e| e.valid_up_to())?;
                                    cache[slot] = s;
                                    Ok(s)
                                })
                                .collect(),
                        )
                    }
                    _ => None,
                })
                .collect(),
        )
    }
}

/// Where a column is in its batch: the current triplet and its value's index.
#[derive(Clone, Copy, Debug, Default)]
pub struct At {
    at: usize,
    value_at: usize,
}

/// Runs a step of the `parquet` crate's decoder, turning a panic on malformed data (it has a
/// few) into an error, so that a hostile file fails alone instead of taking the process down.
pub fn guard<T>(step: impl FnOnce() -> Result<T, ParquetError>) -> Result<T, ParquetError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("malformed data");
            Err(ParquetError::General(format!("the decoder failed: {why}")))
        }
    }
}

/// A column reader for `reader`, after skipping its first `skip` rows; [`Column::refill`]
/// reads its first batch.
pub fn column(
    reader: ColumnReader,
    kind: Kind,
    max_def: i16,
    max_rep: i16,
    skip: usize,
) -> Result<Column, ParquetError> {
    fn make<T: DataType>(reader: ColumnReader, skip: usize) -> Result<Typed<T>, ParquetError> {
        let mut reader: ColumnReaderImpl<T> = get_typed_column_reader(reader);
        if skip > 0 {
            let skipped = guard(|| reader.skip_records(skip))?;
            if skipped < skip {
                return Err(ParquetError::General(format!(
                    "the column has {skipped} rows, fewer than the {skip} to skip"
                )));
            }
        }
        Ok(Typed {
            reader,
            values: Vec::new(),
        })
    }
    let typed = match reader {
        r @ ColumnReader::BoolColumnReader(_) => Typed2::Bool(make(r, skip)?),
        r @ ColumnReader::Int32ColumnReader(_) => Typed2::Int32(make(r, skip)?),
        r @ ColumnReader::Int64ColumnReader(_) => Typed2::Int64(make(r, skip)?),
        r @ ColumnReader::Int96ColumnReader(_) => Typed2::Int96(make(r, skip)?),
        r @ ColumnReader::FloatColumnReader(_) => Typed2::Float(make(r, skip)?),
        r @ ColumnReader::DoubleColumnReader(_) => Typed2::Double(make(r, skip)?),
        r @ ColumnReader::ByteArrayColumnReader(_) => Typed2::Bytes(make(r, skip)?),
        r @ ColumnReader::FixedLenByteArrayColumnReader(_) => Typed2::Fixed(make(r, skip)?),
    };
    Ok(Column {
        typed,
        kind,
        max_def,
        max_rep,
        defs: Vec::new(),
        reps: Vec::new(),
        len: 0,
    })
}

/// Why reading a row stopped: a column could not be read (its index and the error).
pub struct ColumnError(pub usize, pub ParquetError);

/// The columns of one row group (only those the plan reads are present) with their batch,
/// each column's cursor in it, and the first problem with a value of the current row.
pub struct Row<'b, 'c> {
    pub cols: &'b [Option<Column>],
    pub texts: &'c Texts<'b>,
    pub cursors: &'c mut [At],
    pub bad: Option<String>,
}

impl<'b> Row<'b, '_> {
    #[inline]
    fn col(&self, i: usize) -> &'b Column {
        self.cols[i].as_ref().expect("the plan's columns are open")
    }

    #[inline]
    fn def(&self, i: usize) -> i16 {
        self.col(i).def(self.cursors[i].at)
    }

    #[inline]
    fn has_next(&self, i: usize) -> bool {
        self.cursors[i].at < self.col(i).len
    }

    #[inline]
    fn advance(&mut self, i: usize) {
        let c = self.col(i);
        let cur = &mut self.cursors[i];
        if cur.at < c.len && c.def(cur.at) == c.max_def {
            cur.value_at += 1;
        }
        cur.at += 1;
    }

    /// Steps every leaf below `node` past a null or empty value.
    fn skip(&mut self, node: &Node) {
        match node {
            Node::Leaf { col, .. } => self.advance(*col),
            Node::Opt { child, .. } | Node::List { child, .. } => self.skip(child),
            Node::Group { fields } => fields.iter().for_each(|(_, n)| self.skip(n)),
            Node::Map { key, value, .. } => {
                self.skip(key);
                if let Some(v) = value {
                    self.skip(v);
                }
            }
        }
    }

    #[inline]
    fn ensure(&self, i: usize) -> Result<(), ColumnError> {
        if self.has_next(i) {
            Ok(())
        } else {
            Err(ColumnError(
                i,
                ParquetError::EOF("the column ends before the row group's last row".into()),
            ))
        }
    }

    /// The value of `node` in the current row: `None` when null (or NaN, or ±infinity).
    pub fn read(&mut self, node: &'b Node) -> Result<Option<V<'b>>, ColumnError> {
        match node {
            Node::Leaf { col, .. } => {
                let col = *col;
                self.ensure(col)?;
                let at = self.cursors[col];
                let c = self.col(col);
                let v = match &self.texts.0[col] {
                    Some(texts) if at.at < c.len && c.def(at.at) >= c.max_def => {
                        match texts.get(at.value_at) {
                            Some(Ok(s)) => Ok(Some(V::Str(Cow::Borrowed(*s)))),
                            Some(Err(at)) => {
                                Err(format!("string is not valid UTF-8 (at byte {at})"))
                            }
                            None => Err("a value is missing from its page".into()),
                        }
                    }
                    _ => c.value(at),
                };
                let v = match v {
                    Ok(v) => v,
                    Err(why) => {
                        self.bad.get_or_insert(why);
                        None
                    }
                };
                self.advance(col);
                Ok(v)
            }
            Node::Opt { def, child } => {
                let first = child.first();
                self.ensure(first)?;
                if self.def(first) > *def {
                    self.read(child)
                } else {
                    self.skip(child);
                    Ok(None)
                }
            }
            Node::Group { fields } => {
                let mut out = Vec::with_capacity(fields.len());
                for (name, child) in fields {
                    if let Some(v) = self.read(child)? {
                        out.push((Cow::Borrowed(name.as_str()), v));
                    }
                }
                Ok(Some(V::Obj(out)))
            }
            Node::List { def, rep, child } => {
                let first = child.first();
                self.ensure(first)?;
                let mut items = Vec::new();
                loop {
                    if self.def(first) > *def {
                        items.push(self.read(child)?.unwrap_or(V::Null));
                    } else {
                        self.skip(child);
                        break;
                    }
                    if !self.has_next(first) || self.col(first).rep(self.cursors[first].at) <= *rep
                    {
                        break;
                    }
                }
                Ok(Some(V::Arr(items)))
            }
            Node::Map {
                def,
                rep,
                key,
                value,
            } => {
                let first = key.first();
                self.ensure(first)?;
                let mut entries: Vec<(Cow<'b, str>, V<'b>)> = Vec::new();
                loop {
                    if self.def(first) > *def {
                        let k = self.read(key)?;
                        let v = match value {
                            Some(node) => self.read(node)?,
                            None => Some(V::Null),
                        };
                        if let (Some(k), Some(v)) = (k, v) {
                            let k = key_text(k);
                            // A repeated key keeps its last value.
                            match entries.iter_mut().find(|(k2, _)| *k2 == k) {
                                Some(slot) => slot.1 = v,
                                None => entries.push((k, v)),
                            }
                        }
                    } else {
                        self.skip(key);
                        if let Some(node) = value {
                            self.skip(node);
                        }
                        break;
                    }
                    if !self.has_next(first) || self.col(first).rep(self.cursors[first].at) <= *rep
                    {
                        break;
                    }
                }
                Ok(Some(V::Obj(entries)))
            }
        }
    }
}
