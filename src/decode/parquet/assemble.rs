//! Rows rebuilt from leaf columns: each column is read as a stream of (definition level,
//! repetition level, value) triplets, in batches, and the [`Node`] tree consumes them row by
//! row (the record-assembly half of the Dremel encoding).

use std::borrow::Cow;

use parquet::column::reader::{get_typed_column_reader, ColumnReader, ColumnReaderImpl};
use parquet::data_type::DataType;
use parquet::errors::ParquetError;

use super::schema::Node;
use super::values::{key_text, Kind, Physical2V};
use crate::datalang::V;

/// Triplets read per column per batch.
const BATCH: usize = 1024;

/// One leaf column of one row group, positioned at its current triplet.
pub trait Column {
    fn has_next(&self) -> bool;
    fn def(&self) -> i16;
    fn rep(&self) -> i16;
    /// The current value (`Ok(None)` when null or absent).
    fn value(&self) -> Result<Option<V<'static>>, String>;
    fn advance(&mut self) -> Result<(), ParquetError>;
}

pub struct Typed<T: DataType> {
    reader: ColumnReaderImpl<T>,
    kind: Kind,
    max_def: i16,
    max_rep: i16,
    values: Vec<T::T>,
    defs: Vec<i16>,
    reps: Vec<i16>,
    /// Current triplet, triplets in the batch, and the current value's index in `values`.
    at: usize,
    len: usize,
    value_at: usize,
}

impl<T: DataType> Typed<T> {
    fn refill(&mut self) -> Result<(), ParquetError> {
        self.values.clear();
        self.defs.clear();
        self.reps.clear();
        let (max_def, max_rep) = (self.max_def, self.max_rep);
        let (reader, defs, reps, values) = (
            &mut self.reader,
            &mut self.defs,
            &mut self.reps,
            &mut self.values,
        );
        let (_, values, levels) = guard(|| {
            reader.read_records(
                BATCH,
                (max_def > 0).then_some(defs),
                (max_rep > 0).then_some(reps),
                values,
            )
        })?;
        self.len = if self.max_def > 0 { levels } else { values };
        if self.max_def > 0 && self.defs.len() < self.len
            || self.max_rep > 0 && self.reps.len() < self.len
        {
            return Err(ParquetError::General("fewer levels than announced".into()));
        }
        self.at = 0;
        self.value_at = 0;
        Ok(())
    }
}

impl<T: DataType> Column for Typed<T>
where
    T::T: Physical2V,
{
    fn has_next(&self) -> bool {
        self.at < self.len
    }

    fn def(&self) -> i16 {
        if !self.has_next() {
            0
        } else if self.max_def > 0 {
            self.defs[self.at]
        } else {
            0
        }
    }

    fn rep(&self) -> i16 {
        if self.max_rep > 0 && self.has_next() {
            self.reps[self.at]
        } else {
            0
        }
    }

    fn value(&self) -> Result<Option<V<'static>>, String> {
        if !self.has_next() || self.def() < self.max_def {
            return Ok(None);
        }
        match self.values.get(self.value_at) {
            Some(v) => v.to_v(self.kind),
            None => Err("a value is missing from its page".into()),
        }
    }

    fn advance(&mut self) -> Result<(), ParquetError> {
        if self.has_next() && self.def() == self.max_def {
            self.value_at += 1;
        }
        self.at += 1;
        if self.at >= self.len {
            self.refill()?;
        }
        Ok(())
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

/// A column reader for `reader`, after skipping its first `skip` rows, at its first triplet.
pub fn column(
    reader: ColumnReader,
    kind: Kind,
    max_def: i16,
    max_rep: i16,
    skip: usize,
) -> Result<Box<dyn Column>, ParquetError> {
    fn make<T: DataType>(
        reader: ColumnReader,
        kind: Kind,
        max_def: i16,
        max_rep: i16,
        skip: usize,
    ) -> Result<Box<dyn Column>, ParquetError>
    where
        T::T: Physical2V,
    {
        let mut reader: ColumnReaderImpl<T> = get_typed_column_reader(reader);
        if skip > 0 {
            let skipped = guard(|| reader.skip_records(skip))?;
            if skipped < skip {
                return Err(ParquetError::General(format!(
                    "the column has {skipped} rows, fewer than the {skip} to skip"
                )));
            }
        }
        let mut c = Typed {
            reader,
            kind,
            max_def,
            max_rep,
            values: Vec::with_capacity(BATCH),
            defs: Vec::new(),
            reps: Vec::new(),
            at: 0,
            len: 0,
            value_at: 0,
        };
        c.refill()?;
        Ok(Box::new(c))
    }
    use parquet::data_type as t;
    match reader {
        r @ ColumnReader::BoolColumnReader(_) => {
            make::<t::BoolType>(r, kind, max_def, max_rep, skip)
        }
        r @ ColumnReader::Int32ColumnReader(_) => {
            make::<t::Int32Type>(r, kind, max_def, max_rep, skip)
        }
        r @ ColumnReader::Int64ColumnReader(_) => {
            make::<t::Int64Type>(r, kind, max_def, max_rep, skip)
        }
        r @ ColumnReader::Int96ColumnReader(_) => {
            make::<t::Int96Type>(r, kind, max_def, max_rep, skip)
        }
        r @ ColumnReader::FloatColumnReader(_) => {
            make::<t::FloatType>(r, kind, max_def, max_rep, skip)
        }
        r @ ColumnReader::DoubleColumnReader(_) => {
            make::<t::DoubleType>(r, kind, max_def, max_rep, skip)
        }
        r @ ColumnReader::ByteArrayColumnReader(_) => {
            make::<t::ByteArrayType>(r, kind, max_def, max_rep, skip)
        }
        r @ ColumnReader::FixedLenByteArrayColumnReader(_) => {
            make::<t::FixedLenByteArrayType>(r, kind, max_def, max_rep, skip)
        }
    }
}

/// Why reading a row stopped: a column could not be read (its index and the error).
pub struct ColumnError(pub usize, pub ParquetError);

/// The columns of one row group (only those the plan reads are present) and the first
/// problem with a value of the current row.
pub struct Row<'c> {
    pub cols: &'c mut [Option<Box<dyn Column>>],
    pub bad: Option<String>,
}

impl Row<'_> {
    fn col(&self, i: usize) -> &dyn Column {
        self.cols[i]
            .as_deref()
            .expect("the plan's columns are open")
    }

    fn advance(&mut self, i: usize) -> Result<(), ColumnError> {
        let c = self.cols[i].as_mut().expect("the plan's columns are open");
        c.advance().map_err(|e| ColumnError(i, e))
    }

    /// Steps every leaf below `node` past a null or empty value.
    fn skip(&mut self, node: &Node) -> Result<(), ColumnError> {
        let mut leaves = Vec::new();
        node.leaves(&mut leaves);
        for i in leaves {
            self.advance(i)?;
        }
        Ok(())
    }

    fn ensure(&self, i: usize) -> Result<(), ColumnError> {
        if self.col(i).has_next() {
            Ok(())
        } else {
            Err(ColumnError(
                i,
                ParquetError::EOF("the column ends before the row group's last row".into()),
            ))
        }
    }

    /// The value of `node` in the current row: `None` when null (or NaN, or ±infinity).
    pub fn read(&mut self, node: &Node) -> Result<Option<V<'static>>, ColumnError> {
        match node {
            Node::Leaf { col, .. } => {
                self.ensure(*col)?;
                let v = match self.col(*col).value() {
                    Ok(v) => v,
                    Err(why) => {
                        self.bad.get_or_insert(why);
                        None
                    }
                };
                self.advance(*col)?;
                Ok(v)
            }
            Node::Opt { def, child } => {
                let first = child.first();
                self.ensure(first)?;
                if self.col(first).def() > *def {
                    self.read(child)
                } else {
                    self.skip(child)?;
                    Ok(None)
                }
            }
            Node::Group { fields } => {
                let mut out = Vec::with_capacity(fields.len());
                for (name, child) in fields {
                    if let Some(v) = self.read(child)? {
                        out.push((Cow::Owned(name.clone()), v));
                    }
                }
                Ok(Some(V::Obj(out)))
            }
            Node::List { def, rep, child } => {
                let first = child.first();
                self.ensure(first)?;
                let mut items = Vec::new();
                loop {
                    if self.col(first).def() > *def {
                        items.push(self.read(child)?.unwrap_or(V::Null));
                    } else {
                        self.skip(child)?;
                        break;
                    }
                    let c = self.col(first);
                    if !c.has_next() || c.rep() <= *rep {
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
                let mut entries: Vec<(Cow<'static, str>, V<'static>)> = Vec::new();
                loop {
                    if self.col(first).def() > *def {
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
                        self.skip(key)?;
                        if let Some(node) = value {
                            self.skip(node)?;
                        }
                        break;
                    }
                    let c = self.col(first);
                    if !c.has_next() || c.rep() <= *rep {
                        break;
                    }
                }
                Ok(Some(V::Obj(entries)))
            }
        }
    }
}
