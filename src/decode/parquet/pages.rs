//! String columns read from their pages directly: levels and dictionary indices decoded here
//! (the RLE/bit-packed hybrid), values left where they are in the decompressed pages. The
//! `parquet` crate's column reader hands each string out as a reference-counted `Bytes` (a
//! count taken and dropped per value) and decodes dictionary indices into copies; here a value
//! is a place in a page.
//!
//! Only column chunks whose metadata lists no encodings but PLAIN, the dictionary ones and RLE
//! (levels) are read this way ([`fast_string_chunk`]); the rest go through the crate.

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};
use parquet::errors::ParquetError;
use parquet::file::metadata::ColumnChunkMetaData;

use super::values::utf8_error;

/// Whether column chunk `meta` (a string column) can be read by [`StrReader`].
pub fn fast_string_chunk(meta: &ColumnChunkMetaData) -> bool {
    meta.encodings().all(|e| {
        matches!(
            e,
            Encoding::PLAIN | Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY | Encoding::RLE
        )
    })
}

fn err(what: impl Into<String>) -> ParquetError {
    ParquetError::General(what.into())
}

/// Bits needed for values up to `max`.
fn bit_width(max: u32) -> u32 {
    32 - max.leading_zeros()
}

/// A decoder of the RLE/bit-packed hybrid encoding over `data[pos..end]`.
struct Hybrid {
    data: Bytes,
    pos: usize,
    end: usize,
    width: u32,
    /// Values left in the current RLE run, and its value.
    rle_left: usize,
    rle_value: u32,
    /// Values left in the current bit-packed run, and the bit where the next one starts.
    packed_left: usize,
    bit: usize,
}

impl Hybrid {
    fn new(data: Bytes, pos: usize, end: usize, width: u32) -> Self {
        Hybrid {
            data,
            pos,
            end,
            width,
            rle_left: 0,
            rle_value: 0,
            packed_left: 0,
            bit: 0,
        }
    }

    fn varint(&mut self) -> Result<u64, ParquetError> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let Some(&b) = self.data[..self.end].get(self.pos) else {
                return Err(err("a run header runs past the end of its data"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(err("a run header is too long"));
            }
        }
    }

    /// Starts the next run: false at the end of the data.
    fn next_run(&mut self) -> Result<bool, ParquetError> {
        if self.pos >= self.end {
            return Ok(false);
        }
        let header = self.varint()?;
        let count = usize::try_from(header >> 1).map_err(|_| err("a run is too long"))?;
        if header & 1 == 1 {
            let bytes = count.saturating_mul(self.width as usize);
            let left = self.end - self.pos;
            self.bit = self.pos * 8;
            // A last run may be cut short: only the values whose bits are all there.
            let values = count.saturating_mul(8);
            self.packed_left = if self.width == 0 {
                values
            } else {
                values.min(left * 8 / self.width as usize)
            };
            self.pos += bytes.min(left);
        } else {
            let n = self.width.div_ceil(8) as usize;
            let Some(b) = self.data[..self.end].get(self.pos..self.pos + n) else {
                return Err(err("an RLE run's value runs past the end of its data"));
            };
            let mut v = 0u32;
            for (i, &byte) in b.iter().enumerate() {
                v |= u32::from(byte) << (8 * i);
            }
            self.pos += n;
            self.rle_left = count;
            self.rle_value = v;
        }
        Ok(true)
    }

    /// Appends up to `n` values to `out` (as `conv` makes them): how many there were.
    #[inline]
    fn get<T: Copy>(
        &mut self,
        n: usize,
        out: &mut Vec<T>,
        conv: impl Fn(u32) -> T,
    ) -> Result<usize, ParquetError> {
        let mut done = 0;
        out.reserve(n);
        while done < n {
            if self.rle_left > 0 {
                let k = self.rle_left.min(n - done);
                out.extend(std::iter::repeat_n(conv(self.rle_value), k));
                self.rle_left -= k;
                done += k;
            } else if self.packed_left > 0 {
                let k = self.packed_left.min(n - done);
                let w = self.width as usize;
                let mask = if w == 32 { u32::MAX } else { (1u32 << w) - 1 };
                let data = &self.data[..];
                let mut bit = self.bit;
                for _ in 0..k {
                    let byte = bit >> 3;
                    let word = match data.get(byte..byte + 8) {
                        Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
                        None => {
                            let mut buf = [0u8; 8];
                            let rest = &data[byte.min(data.len())..];
                            buf[..rest.len().min(8)].copy_from_slice(&rest[..rest.len().min(8)]);
                            u64::from_le_bytes(buf)
                        }
                    };
                    out.push(conv((word >> (bit & 7)) as u32 & mask));
                    bit += w;
                }
                self.bit = bit;
                self.packed_left -= k;
                done += k;
            } else if !self.next_run()? {
                break;
            }
        }
        Ok(done)
    }
}

/// A string value of the batch: `len` bytes from `start` of the batch's buffer `buf`, or of
/// the dictionary's text ([`DICT`]) or its strings that are not UTF-8 ([`DICT_BAD`]), or of
/// the batch's PLAIN text ([`PLAIN`]).
#[derive(Clone, Copy)]
pub struct StrRef {
    buf: u32,
    start: u32,
    len: u32,
}

/// [`StrRef::buf`] of a dictionary string.
const DICT: u32 = u32::MAX;
/// [`StrRef::buf`] of a dictionary string that is not UTF-8.
const DICT_BAD: u32 = u32::MAX - 1;
/// [`StrRef::buf`] of a PLAIN string copied into [`StrReader::plain_text`].
const PLAIN: u32 = u32::MAX - 2;

enum Values {
    /// Lengths and bytes from `pos` on.
    Plain {
        pos: usize,
    },
    Dict(Hybrid),
}

/// The data page being read.
struct PageState {
    buf: Bytes,
    /// Levels (triplets) not yet decoded.
    left: usize,
    defs: Option<Hybrid>,
    reps: Option<Hybrid>,
    values: Values,
    /// The index of `buf` in the batch's buffers, once a value of the batch points into it.
    in_batch: Option<u32>,
}

/// Levels decoded ahead (a row of a repeated column ends where the next level says so).
const AHEAD: usize = 1024;

/// A string column chunk read page by page, a batch of rows at a time.
pub struct StrReader {
    pages: Box<dyn PageReader>,
    max_def: i16,
    max_rep: i16,
    /// The dictionary's strings (as [`StrRef`]s), checked for UTF-8 once: those that are
    /// copied one after the other into `dict_text`, the others into `dict_bad`.
    dict: Vec<StrRef>,
    dict_text: String,
    dict_bad: Vec<u8>,
    page: Option<PageState>,
    /// Levels decoded ahead from `page`, from `ahead_at` on.
    ahead_defs: Vec<i16>,
    ahead_reps: Vec<i16>,
    ahead_at: usize,
    /// The data pages the batch's values point into.
    bufs: Vec<Bytes>,
    /// The batch's PLAIN values, a run of them at a time with their length prefixes, where
    /// a run is UTF-8 as a whole: checked in one pass instead of one call per value. Within
    /// such a run, a value is UTF-8 exactly when both its ends are character boundaries.
    plain_text: String,
    /// The batch's values (non-null triplets), in order.
    pub values: Vec<StrRef>,
    /// Scratch for dictionary indices.
    indices: Vec<u32>,
}

impl StrReader {
    pub fn new(pages: Box<dyn PageReader>, max_def: i16, max_rep: i16) -> Self {
        StrReader {
            pages,
            max_def,
            max_rep,
            dict: Vec::new(),
            dict_text: String::new(),
            dict_bad: Vec::new(),
            page: None,
            ahead_defs: Vec::new(),
            ahead_reps: Vec::new(),
            ahead_at: 0,
            bufs: Vec::new(),
            plain_text: String::new(),
            values: Vec::new(),
            indices: Vec::new(),
        }
    }

    fn set_dict(&mut self, page: Bytes, num_values: u32) -> Result<(), ParquetError> {
        self.dict.clear();
        self.dict_text.clear();
        self.dict_bad.clear();
        let mut pos = 0usize;
        for _ in 0..num_values {
            let (start, len) = plain_at(&page, pos)?;
            pos = start + len;
            let bytes = &page[start..pos];
            let (buf, at) = match std::str::from_utf8(bytes) {
                Ok(text) => {
                    self.dict_text.push_str(text);
                    (DICT, self.dict_text.len() - len)
                }
                Err(_) => {
                    self.dict_bad.extend_from_slice(bytes);
                    (DICT_BAD, self.dict_bad.len() - len)
                }
            };
            self.dict.push(StrRef {
                buf,
                start: u32::try_from(at).map_err(|_| err("the dictionary is too large"))?,
                len: len as u32,
            });
        }
        Ok(())
    }

    /// Moves to the next data page (reading a dictionary page on the way): false at the end.
    fn next_page(&mut self) -> Result<bool, ParquetError> {
        loop {
            let Some(page) = self.pages.get_next_page()? else {
                self.page = None;
                return Ok(false);
            };
            let level = |max: i16| bit_width(max as u32);
            let (buf, num_values, encoding, defs, reps, data_at) = match page {
                Page::DictionaryPage {
                    buf,
                    num_values,
                    encoding,
                    ..
                } => {
                    if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY) {
                        return Err(err(format!(
                            "unsupported dictionary page encoding {encoding}"
                        )));
                    }
                    self.set_dict(buf, num_values)?;
                    continue;
                }
                Page::DataPage {
                    buf,
                    num_values,
                    encoding,
                    def_level_encoding,
                    rep_level_encoding,
                    ..
                } => {
                    let mut at = 0;
                    let mut v1_levels = |max: i16, enc: Encoding| -> Result<_, ParquetError> {
                        if max == 0 {
                            return Ok(None);
                        }
                        if enc != Encoding::RLE {
                            return Err(err(format!("unsupported level encoding {enc}")));
                        }
                        let Some(n) = buf.get(at..at + 4) else {
                            return Err(err("the page ends in its levels"));
                        };
                        let n = u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize;
                        let start = at + 4;
                        if start + n > buf.len() {
                            return Err(err("the page ends in its levels"));
                        }
                        at = start + n;
                        Ok(Some(Hybrid::new(buf.clone(), start, start + n, level(max))))
                    };
                    let reps = v1_levels(self.max_rep, rep_level_encoding)?;
                    let defs = v1_levels(self.max_def, def_level_encoding)?;
                    (buf, num_values, encoding, defs, reps, at)
                }
                Page::DataPageV2 {
                    buf,
                    num_values,
                    encoding,
                    def_levels_byte_len,
                    rep_levels_byte_len,
                    ..
                } => {
                    let (r, d) = (rep_levels_byte_len as usize, def_levels_byte_len as usize);
                    if r + d > buf.len() {
                        return Err(err("the page ends in its levels"));
                    }
                    let reps = (self.max_rep > 0)
                        .then(|| Hybrid::new(buf.clone(), 0, r, level(self.max_rep)));
                    let defs = (self.max_def > 0)
                        .then(|| Hybrid::new(buf.clone(), r, r + d, level(self.max_def)));
                    (buf, num_values, encoding, defs, reps, r + d)
                }
            };
            let values = match encoding {
                Encoding::PLAIN => Values::Plain { pos: data_at },
                Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY => {
                    let Some(&width) = buf.get(data_at) else {
                        // No values at all (every triplet null): nothing to decode.
                        self.page = Some(PageState {
                            buf: buf.clone(),
                            left: num_values as usize,
                            defs,
                            reps,
                            values: Values::Plain { pos: buf.len() },
                            in_batch: None,
                        });
                        return Ok(true);
                    };
                    if width > 32 {
                        return Err(err(format!("dictionary indices of {width} bits")));
                    }
                    let end = buf.len();
                    Values::Dict(Hybrid::new(buf.clone(), data_at + 1, end, u32::from(width)))
                }
                other => return Err(err(format!("unsupported page encoding {other}"))),
            };
            self.page = Some(PageState {
                buf,
                left: num_values as usize,
                defs,
                reps,
                values,
                in_batch: None,
            });
            return Ok(true);
        }
    }

    /// Decodes up to [`AHEAD`] levels of the page ahead: false at the end of the column.
    fn fill_ahead(&mut self) -> Result<bool, ParquetError> {
        self.ahead_defs.clear();
        self.ahead_reps.clear();
        self.ahead_at = 0;
        loop {
            match &self.page {
                Some(p) if p.left > 0 => break,
                _ => {
                    if !self.next_page()? {
                        return Ok(false);
                    }
                }
            }
        }
        let p = self.page.as_mut().expect("a page");
        let n = p.left.min(AHEAD);
        for (dec, out) in [
            (&mut p.defs, &mut self.ahead_defs),
            (&mut p.reps, &mut self.ahead_reps),
        ] {
            if let Some(dec) = dec {
                if dec.get(n, out, |v| v as i16)? < n {
                    return Err(err("the page has fewer levels than values"));
                }
            }
        }
        p.left -= n;
        // Columns without levels: `n` triplets all the same.
        if p.defs.is_none() {
            self.ahead_defs.resize(n, self.max_def);
        }
        if p.reps.is_none() {
            self.ahead_reps.resize(n, 0);
        }
        Ok(true)
    }

    /// Reads the next `rows` rows: their levels appended to `defs`/`reps` (when the column
    /// has them), their values into [`StrReader::values`]. Returns (rows, triplets).
    pub fn read(
        &mut self,
        rows: usize,
        mut defs: Option<&mut Vec<i16>>,
        mut reps: Option<&mut Vec<i16>>,
    ) -> Result<(usize, usize), ParquetError> {
        self.values.clear();
        self.bufs.clear();
        self.plain_text.clear();
        if let Some(p) = &mut self.page {
            p.in_batch = None;
        }
        let (mut got, mut triplets) = (0usize, 0usize);
        loop {
            if self.ahead_at == self.ahead_defs.len() && !self.fill_ahead()? {
                break;
            }
            let (from, avail) = (self.ahead_at, self.ahead_defs.len());
            // The triplets of this step: whole rows, up to the row after the last wanted.
            let mut to = from;
            if self.max_rep > 0 {
                while to < avail {
                    if self.ahead_reps[to] == 0 {
                        if got == rows {
                            break;
                        }
                        got += 1;
                    }
                    to += 1;
                }
            } else {
                to = avail.min(from + (rows - got));
                got += to - from;
            }
            let d = &self.ahead_defs[from..to];
            if let Some(defs) = defs.as_deref_mut() {
                defs.extend_from_slice(d);
            }
            if let Some(reps) = reps.as_deref_mut() {
                reps.extend_from_slice(&self.ahead_reps[from..to]);
            }
            let max_def = self.max_def;
            let non_null = d.iter().filter(|&&x| x == max_def).count();
            self.ahead_at = to;
            triplets += to - from;
            self.take_values(non_null)?;
            if to < avail || got == rows && self.max_rep == 0 {
                break;
            }
            if got == rows {
                // A repeated column: the row ends where the next level starts a row.
                if self.ahead_at == self.ahead_defs.len() && !self.fill_ahead()? {
                    break;
                }
                if self.ahead_reps[self.ahead_at] == 0 {
                    break;
                }
            }
        }
        Ok((got, triplets))
    }

    /// Decodes the next `n` values of the page into [`StrReader::values`].
    fn take_values(&mut self, n: usize) -> Result<(), ParquetError> {
        if n == 0 {
            return Ok(());
        }
        let p = self.page.as_mut().expect("levels come from a page");
        match &mut p.values {
            Values::Plain { pos } => {
                let buf = match p.in_batch {
                    Some(i) => i,
                    None => {
                        self.bufs.push(p.buf.clone());
                        let i = (self.bufs.len() - 1) as u32;
                        p.in_batch = Some(i);
                        i
                    }
                };
                self.values.reserve(n);
                let (first, run) = (*pos, self.values.len());
                for _ in 0..n {
                    let (start, len) = plain_at(&p.buf, *pos)?;
                    self.values.push(StrRef {
                        buf,
                        start: start as u32,
                        len: len as u32,
                    });
                    *pos = start + len;
                }
                // The run as text, when it is UTF-8 (else each value is checked alone).
                let at = self.plain_text.len();
                if let Ok(text) = simdutf8::basic::from_utf8(&p.buf[first..*pos]) {
                    if u32::try_from(at + text.len()).is_ok() {
                        self.plain_text.push_str(text);
                        for v in &mut self.values[run..] {
                            v.buf = PLAIN;
                            v.start = (v.start as usize - first + at) as u32;
                        }
                    }
                }
            }
            Values::Dict(dec) => {
                self.indices.clear();
                if dec.get(n, &mut self.indices, |v| v)? < n {
                    return Err(err("the page has fewer values than its levels say"));
                }
                self.values.reserve(n);
                for &i in &self.indices {
                    let Some(&s) = self.dict.get(i as usize) else {
                        return Err(err(format!(
                            "dictionary index {i} out of range (the dictionary has {})",
                            self.dict.len()
                        )));
                    };
                    self.values.push(s);
                }
            }
        }
        Ok(())
    }

    /// Skips `rows` rows.
    pub fn skip(&mut self, rows: usize) -> Result<usize, ParquetError> {
        let mut done = 0;
        let (mut defs, mut reps) = (Vec::new(), Vec::new());
        while done < rows {
            let want = (rows - done).min(4096);
            defs.clear();
            reps.clear();
            let (got, _) = self.read(want, Some(&mut defs), Some(&mut reps))?;
            done += got;
            if got < want {
                break;
            }
        }
        Ok(done)
    }
}

impl StrReader {
    /// The string `s` of the batch, or `None` when it is not one ([`StrReader::why`] says why).
    /// Returned in registers, not through memory.
    #[inline(always)]
    pub fn text(&self, s: &StrRef) -> Option<&str> {
        let range = s.start as usize..s.start as usize + s.len as usize;
        let bytes = match s.buf {
            // Whole strings, checked when the dictionary was read.
            DICT => return self.dict_text.get(range),
            DICT_BAD => self.dict_bad.get(range),
            PLAIN => match self.plain_text.get(range.clone()) {
                Some(text) => return Some(text),
                // Not on character boundaries: the value is not UTF-8 on its own.
                None => self.plain_text.as_bytes().get(range),
            },
            b => self.bufs.get(b as usize).and_then(|buf| buf.get(range)),
        };
        std::str::from_utf8(bytes?).ok()
    }

    /// Why [`StrReader::text`] found no string at `s`.
    #[cold]
    pub fn why(&self, s: &StrRef) -> String {
        let range = s.start as usize..s.start as usize + s.len as usize;
        let bytes = match s.buf {
            DICT => return "a bad dictionary string".into(),
            DICT_BAD => self.dict_bad.get(range),
            PLAIN => self.plain_text.as_bytes().get(range),
            b => self.bufs.get(b as usize).and_then(|buf| buf.get(range)),
        };
        match bytes.map(std::str::from_utf8) {
            None => "a value runs past the end of its page".into(),
            Some(Err(e)) => utf8_error(&e),
            // Not reached: `text` fails only where one of the above does.
            Some(Ok(_)) => "a string that is not valid UTF-8".into(),
        }
    }
}

/// A PLAIN byte array at `pos`: (start of its bytes, length).
#[inline]
fn plain_at(buf: &[u8], pos: usize) -> Result<(usize, usize), ParquetError> {
    let Some(n) = buf.get(pos..pos + 4) else {
        return Err(err("a value runs past the end of its page"));
    };
    let len = u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize;
    let start = pos + 4;
    if len > buf.len() - start || len > u32::MAX as usize {
        return Err(err("a value runs past the end of its page"));
    }
    Ok((start, len))
}
