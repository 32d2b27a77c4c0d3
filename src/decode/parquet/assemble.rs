//! Rows rebuilt from leaf columns: each column is read as a stream of (definition level,
//! repetition level, value) triplets and the [`Node`] tree consumes them row by row (the
//! record-assembly half of the Dremel encoding).
//!
//! Columns are read a batch of rows at a time ([`Column::refill`]): every column then holds
//! the triplets of the same rows. Their values are made once per batch, column by column
//! ([`Batch`]), borrowing the batch (strings are slices of the decoded pages; keys are the
//! plan's names) instead of copying it; rows are then rebuilt from them, each value moved
//! into its row.

use std::borrow::Cow;

use parquet::column::page::PageReader;
use parquet::column::reader::{get_typed_column_reader, ColumnReader, ColumnReaderImpl};
use parquet::data_type::{self as t, DataType};
use parquet::errors::ParquetError;

use super::pages::{StrReader, StrRef};
use super::schema::Node;
use super::values::{key_text, utf8_error, Kind, Physical2V, Value};
use crate::datalang::{push_made, V};

/// Rows read per batch. A batch's pages' values and its record values (32 bytes each) stay in
/// the core's cache at this size: with 4096 rows of 20 columns they did not (callgrind with
/// a simulated 2 MiB L2: 4.6× the misses).
pub const BATCH_ROWS: usize = 512;

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
    /// A string column read from its pages (`pages.rs`), not by the crate's reader.
    Str(StrReader),
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
            Typed2::Str(_) => unreachable!("string columns are read apart"),
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
        let (records, values, levels) = match &mut self.typed {
            Typed2::Str(r) => {
                let (records, triplets) = guard(|| r.read(rows, defs, reps))?;
                (records, r.values.len(), triplets)
            }
            typed => each_type!(typed, t => t.read(rows, defs, reps))?,
        };
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

    /// Whether triplet `at` has a value (its definition level is the column's highest). A
    /// string column's cell is `""` where it has none ([`str_cells`]); others' are `V::Null`.
    #[inline(always)]
    fn defined(&self, at: usize) -> bool {
        self.def(at) == self.max_def
    }

    #[inline]
    fn rep(&self, at: usize) -> i16 {
        if self.max_rep > 0 && at < self.len {
            self.reps[at]
        } else {
            0
        }
    }

    /// The batch's values by triplet into `out` (`V::Null` where null or absent: no leaf
    /// value is a JSON null; `""` in a string column read from its pages, see [`str_cells`]),
    /// and the triplets whose value is bad into `bad`.
    fn cells<'b>(&'b self, out: &mut Vec<V<'b>>, bad: &mut Vec<(usize, String)>) {
        out.reserve(self.len);
        let (kind, max_def, len) = (self.kind, self.max_def, self.len);
        let defs = &self.defs[..if max_def > 0 { len } else { 0 }];
        match &self.typed {
            Typed2::Bytes(t) if kind == Kind::Str => {
                let mut cache = TextCache::new();
                each_cell(&t.values, defs, max_def, len, out, bad, |v| {
                    cache.text(v.data())
                })
            }
            Typed2::Str(r) => str_cells(r, defs, max_def, len, out, bad),
            typed => each_type!(typed, t => {
                each_cell(&t.values, defs, max_def, len, out, bad, |v| v.to_v(kind))
            }),
        }
    }
}

/// `len` cells from `values` (one per triplet whose definition level is `max_def`, in order)
/// and `defs` (empty when `max_def` is 0: every triplet has a value).
#[inline(always)]
fn each_cell<'b, T>(
    values: &'b [T],
    defs: &[i16],
    max_def: i16,
    len: usize,
    out: &mut Vec<V<'b>>,
    bad: &mut Vec<(usize, String)>,
    mut to_v: impl FnMut(&'b T) -> Value<'b>,
) {
    let missing = || Err("a value is missing from its page".to_string());
    if defs.is_empty() {
        for i in 0..len {
            let v = match values.get(i) {
                Some(v) => to_v(v),
                None => missing(),
            };
            push_cell(v, out, bad);
        }
        return;
    }
    let mut k = 0;
    for &d in defs {
        if d == max_def {
            k += 1;
            let v = match values.get(k - 1) {
                Some(v) => to_v(v),
                None => missing(),
            };
            push_cell(v, out, bad);
        } else {
            out.push(V::Null);
        }
    }
}

/// [`each_cell`] for a string column read from its pages, with one difference: every cell is a
/// string, `""` where the triplet is null (readers tell nulls by [`Column::defined`]) or its
/// value is bad. Made so, a cell is written in place by `Vec::extend`; a string or a null
/// made on two paths was made on the stack and copied, and reading back a value just
/// written by narrower stores stalls (measured: half of this loop's time was that one load).
fn str_cells<'b>(
    r: &'b StrReader,
    defs: &[i16],
    max_def: i16,
    len: usize,
    out: &mut Vec<V<'b>>,
    bad: &mut Vec<(usize, String)>,
) {
    let first = out.len();
    let values = &r.values[..r.values.len().min(len)];
    let missing = |at: usize| (first + at, "a value is missing from its page".to_string());
    let mut text = |at: usize, v: &'b StrRef| {
        r.text(v).unwrap_or_else(|| {
            bad.push((first + at, r.why(v)));
            ""
        })
    };
    if defs.is_empty() {
        out.extend(
            values
                .iter()
                .enumerate()
                .map(|(at, v)| V::Str(Cow::Borrowed(text(at, v)))),
        );
        bad.extend((values.len()..len).map(missing));
        out.resize(first + len, V::Str(Cow::Borrowed("")));
        return;
    }
    let mut k = 0;
    let mut short = Vec::new();
    out.extend(defs.iter().enumerate().map(|(at, &d)| {
        let s = match d == max_def {
            true => {
                k += 1;
                match values.get(k - 1) {
                    Some(v) => text(at, v),
                    None => {
                        short.push(at);
                        ""
                    }
                }
            }
            false => "",
        };
        V::Str(Cow::Borrowed(s))
    }));
    bad.extend(short.into_iter().map(missing));
}

/// A cell: its value, or `V::Null` where absent or bad (and why it is bad into `bad`).
#[inline(always)]
fn push_cell<'b>(v: Value<'b>, out: &mut Vec<V<'b>>, bad: &mut Vec<(usize, String)>) {
    match v {
        Ok(Some(v)) => out.push(v),
        Ok(None) => out.push(V::Null),
        Err(why) => {
            bad.push((out.len(), why));
            out.push(V::Null)
        }
    }
}

/// Slots of [`TextCache`].
const TEXT_CACHE: usize = 256;

/// Strings already checked for UTF-8, by address. A dictionary-encoded column hands out the
/// same bytes of its dictionary page again and again: a string at the same address and of the
/// same length as one already checked (all are alive while the batch is) is not checked again.
struct TextCache<'b>([&'b str; TEXT_CACHE]);

impl<'b> TextCache<'b> {
    fn new() -> Self {
        TextCache([""; TEXT_CACHE])
    }

    #[inline(always)]
    fn text(&mut self, b: &'b [u8]) -> Value<'b> {
        if b.is_empty() {
            return Ok(Some(V::Str(Cow::Borrowed(""))));
        }
        let addr = b.as_ptr() as usize;
        let slot = (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) % TEXT_CACHE;
        let hit = self.0[slot];
        if hit.as_ptr() as usize == addr && hit.len() == b.len() {
            return Ok(Some(V::Str(Cow::Borrowed(hit))));
        }
        match std::str::from_utf8(b) {
            Ok(s) => {
                self.0[slot] = s;
                Ok(Some(V::Str(Cow::Borrowed(s))))
            }
            Err(e) => Err(utf8_error(&e)),
        }
    }
}

/// The values of a batch of rows: per column, per triplet, in order ([`Batch::fill`]). A
/// column's values are taken in order, each once: the row being rebuilt moves them out.
pub struct Batch<'b> {
    cells: Vec<std::vec::IntoIter<V<'b>>>,
    /// Per column, the triplets whose value is bad (a string that is not UTF-8) and why.
    bad: Vec<Vec<(usize, String)>>,
    any_bad: bool,
}

impl<'b> Batch<'b> {
    /// The values of every open column of `cols`, and apart from them those of the columns
    /// marked in `kept` (top-level leaves, whose values records borrow where they are: see
    /// [`Row::in_place`]; empty for the others).
    pub fn fill(cols: &'b [Option<Column>], kept: &[bool]) -> (Self, Vec<Vec<V<'b>>>) {
        let mut bad = Vec::new();
        let mut in_place = Vec::with_capacity(cols.len());
        let cells = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut out = Vec::new();
                let mut why = Vec::new();
                if let Some(c) = c {
                    c.cells(&mut out, &mut why);
                }
                bad.push(why);
                in_place.push(match kept[i] {
                    true => std::mem::take(&mut out),
                    false => Vec::new(),
                });
                out.into_iter()
            })
            .collect();
        let any_bad = bad.iter().any(|b| !b.is_empty());
        let batch = Batch {
            cells,
            bad,
            any_bad,
        };
        (batch, in_place)
    }
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

/// How a leaf column is read: by the crate's column reader, or from its pages (a string column
/// whose pages `pages.rs` reads).
pub enum Reader {
    Crate(Box<ColumnReader>),
    Pages(Box<dyn PageReader>),
}

/// A column reader for `reader`, after skipping its first `skip` rows; [`Column::refill`]
/// reads its first batch.
pub fn column(
    reader: Reader,
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
        Reader::Pages(pages) => {
            let mut r = StrReader::new(pages, max_def, max_rep);
            if skip > 0 {
                let skipped = guard(|| r.skip(skip))?;
                if skipped < skip {
                    return Err(ParquetError::General(format!(
                        "the column has {skipped} rows, fewer than the {skip} to skip"
                    )));
                }
            }
            Typed2::Str(r)
        }
        Reader::Crate(reader) => match *reader {
            r @ ColumnReader::BoolColumnReader(_) => Typed2::Bool(make(r, skip)?),
            r @ ColumnReader::Int32ColumnReader(_) => Typed2::Int32(make(r, skip)?),
            r @ ColumnReader::Int64ColumnReader(_) => Typed2::Int64(make(r, skip)?),
            r @ ColumnReader::Int96ColumnReader(_) => Typed2::Int96(make(r, skip)?),
            r @ ColumnReader::FloatColumnReader(_) => Typed2::Float(make(r, skip)?),
            r @ ColumnReader::DoubleColumnReader(_) => Typed2::Double(make(r, skip)?),
            r @ ColumnReader::ByteArrayColumnReader(_) => Typed2::Bytes(make(r, skip)?),
            r @ ColumnReader::FixedLenByteArrayColumnReader(_) => Typed2::Fixed(make(r, skip)?),
        },
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

/// The columns of one row group (only those the plan reads are present), the values of their
/// batch, each column's position in it (its triplet), the first problem with a value of the
/// current row, and the first column found to end before the row does.
pub struct Row<'b, 'c> {
    pub cols: &'b [Option<Column>],
    pub batch: &'c mut Batch<'b>,
    pub at: &'c mut [usize],
    pub bad: Option<String>,
    pub ended: Option<usize>,
}

impl<'b> Row<'b, '_> {
    #[inline]
    fn col(&self, i: usize) -> &'b Column {
        self.cols[i].as_ref().expect("the plan's columns are open")
    }

    #[inline]
    fn def(&self, i: usize) -> i16 {
        self.col(i).def(self.at[i])
    }

    #[inline]
    fn has_next(&self, i: usize) -> bool {
        self.at[i] < self.col(i).len
    }

    #[inline]
    fn advance(&mut self, i: usize) {
        self.at[i] += 1;
        self.batch.cells[i].next();
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

    /// Whether column `i` has a triplet left (if not, the row fails once read).
    #[inline]
    fn ensure(&mut self, i: usize) -> bool {
        if self.has_next(i) {
            true
        } else {
            self.ended.get_or_insert(i);
            false
        }
    }

    /// The error of a row that a column ended in.
    pub fn ended_error(col: usize) -> ColumnError {
        ColumnError(
            col,
            ParquetError::EOF("the column ends before the row group's last row".into()),
        )
    }

    #[cold]
    fn bad_cell(&mut self, col: usize, at: usize) {
        let list = &mut self.batch.bad[col];
        if let Some(i) = list.iter().position(|(k, _)| *k == at) {
            let (_, why) = list.swap_remove(i);
            self.bad.get_or_insert(why);
        }
    }

    /// The value of leaf column `col` in the current row.
    #[inline(always)]
    fn leaf(&mut self, col: usize) -> Option<V<'b>> {
        // A column's cells are its triplets, taken in order.
        let at = self.at[col];
        self.at[col] = at + 1;
        if self.batch.any_bad {
            self.bad_cell(col, at);
        }
        let defined = self.col(col).defined(at);
        match self.batch.cells[col].next() {
            Some(V::Null) => None,
            Some(v) if defined => Some(v),
            Some(_) => None,
            None => {
                self.ended.get_or_insert(col);
                None
            }
        }
    }

    /// [`Row::read`], with a leaf (optional or not) read in place: an optional leaf's cell is
    /// already `V::Null` where the leaf or the field is null.
    #[inline(always)]
    pub fn field(&mut self, node: &'b Node) -> Option<V<'b>> {
        match node.leaf_column() {
            Some(col) => self.leaf(col),
            None => self.read(node),
        }
    }

    /// [`Row::field`] pushed onto `out` as `name`'s entry, unless null: a leaf's cell goes
    /// from the batch straight into the entry, not through a returned value. It repeats
    /// [`Row::leaf`]'s steps on purpose: the two sharing a helper that returns the cell made
    /// Parquet convert 2% more instructions and 11% more CPU time (measured, min of 7).
    #[inline(always)]
    pub fn push_field<'o>(
        &mut self,
        name: &'b str,
        node: &'b Node,
        out: &mut Vec<(Cow<'o, str>, V<'o>)>,
    ) -> bool
    where
        'b: 'o,
    {
        let col = match node.leaf_column() {
            Some(col) => col,
            None => match self.read(node) {
                Some(v) => {
                    push_made(out, || (Cow::Borrowed(name), v));
                    return true;
                }
                None => return false,
            },
        };
        let at = self.at[col];
        self.at[col] = at + 1;
        if self.batch.any_bad {
            self.bad_cell(col, at);
        }
        let defined = self.col(col).defined(at);
        match self.batch.cells[col].next() {
            Some(V::Null) => false,
            Some(v) if defined => {
                push_made(out, || (Cow::Borrowed(name), v));
                true
            }
            Some(_) => false,
            None => {
                self.ended.get_or_insert(col);
                false
            }
        }
    }

    /// The value of top-level leaf column `col` in the current row, borrowed from `cells`
    /// (the column's values in [`Batch::fill`]'s `kept`) instead of moved: `None` when null.
    #[inline(always)]
    pub fn in_place<'k>(&mut self, col: usize, cells: &'k [V<'b>]) -> Option<&'k V<'b>> {
        let at = self.at[col];
        self.at[col] = at + 1;
        if self.batch.any_bad {
            self.bad_cell(col, at);
        }
        match cells.get(at) {
            Some(V::Null) => None,
            Some(v) if self.col(col).defined(at) => Some(v),
            Some(_) => None,
            None => {
                self.ended.get_or_insert(col);
                None
            }
        }
    }

    /// The value of `node` in the current row: `None` when null (or NaN, or ±infinity).
    /// A column that ends too soon is noted in [`Row::ended`].
    pub fn read(&mut self, node: &'b Node) -> Option<V<'b>> {
        match node {
            Node::Leaf { col, .. } => self.leaf(*col),
            Node::Opt { child, .. } if matches!(**child, Node::Leaf { .. }) => self.field(child),
            Node::Opt { def, child } => {
                let first = child.first();
                if !self.ensure(first) {
                    return None;
                }
                if self.def(first) > *def {
                    self.read(child)
                } else {
                    self.skip(child);
                    None
                }
            }
            Node::Group { fields } => {
                let mut out = Vec::with_capacity(fields.len());
                for (name, child) in fields {
                    self.push_field(name, child, &mut out);
                }
                Some(V::Obj(out))
            }
            Node::List { def, rep, child } => {
                let first = child.first();
                if !self.ensure(first) {
                    return None;
                }
                let mut items = Vec::new();
                loop {
                    if self.def(first) > *def {
                        items.push(self.read(child).unwrap_or(V::Null));
                    } else {
                        self.skip(child);
                        break;
                    }
                    if !self.has_next(first) || self.col(first).rep(self.at[first]) <= *rep {
                        break;
                    }
                }
                Some(V::Arr(items))
            }
            Node::Map {
                def,
                rep,
                key,
                value,
            } => {
                let first = key.first();
                if !self.ensure(first) {
                    return None;
                }
                let mut entries: Vec<(Cow<'b, str>, V<'b>)> = Vec::new();
                loop {
                    if self.def(first) > *def {
                        let k = self.read(key);
                        let v = match value {
                            Some(node) => self.read(node),
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
                    if !self.has_next(first) || self.col(first).rep(self.at[first]) <= *rep {
                        break;
                    }
                }
                Some(V::Obj(entries))
            }
        }
    }
}
