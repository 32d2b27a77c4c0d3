//! The in-memory record model: values ([`V`], [`Num`]) that borrow their strings from the
//! input line, records ([`Record`]) and the table of top-level keys a converter reads ([`KeyIds`]).
//!
//! `serde_json::Value` allocates a `String` per key and a map per object; on 400-byte analytics
//! events that allocation is most of the cost. `V<'a>` keeps unescaped strings and keys as
//! borrowed slices of the line buffer and objects as small vectors, and the record parser
//! skips (validates without building) the top-level keys the converter never reads.
//!
//! Nothing here reads or writes JSON text: that is `value.rs` (with `scan.rs` and
//! `fallback.rs`), which also holds the methods of `V` that parse a [`V::Raw`].

use std::borrow::Cow;
use std::collections::HashSet;

/// A JSON number as parsed: integers stay exact.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    I(i64),
    U(u64),
    F(f64),
    /// A decimal that keeps its digits (Parquet decimal(p, s): `12.30` stays `12.30`).
    D(Dec),
}

/// `unscaled × 10^-scale`, up to 38 digits, written with exactly `scale` digits after the point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dec {
    // An i128 in four 4-aligned parts: keeps `Num` at 24 bytes and a value (`V`) at 32.
    parts: [u32; 4],
    scale: u8,
}

impl Dec {
    pub fn new(unscaled: i128, scale: u8) -> Dec {
        let b = unscaled.to_le_bytes();
        let part = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Dec {
            parts: [part(0), part(4), part(8), part(12)],
            scale,
        }
    }

    pub fn unscaled(self) -> i128 {
        let mut b = [0u8; 16];
        for (i, p) in self.parts.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&p.to_le_bytes());
        }
        i128::from_le_bytes(b)
    }

    pub fn scale(self) -> u8 {
        self.scale
    }

    /// The exact text: `12.30`, `-0.005`, `7`.
    pub fn text(self) -> String {
        let u = self.unscaled();
        decimal_text(
            u < 0,
            &u.unsigned_abs().to_string(),
            usize::from(self.scale),
        )
    }

    /// The value as an integer, when it is one (`12.00` is 12) and fits.
    fn as_i64(self) -> Option<i64> {
        let pow = 10i128.checked_pow(u32::from(self.scale))?;
        let u = self.unscaled();
        (u % pow == 0)
            .then(|| i64::try_from(u / pow).ok())
            .flatten()
    }
}

/// `digits × 10^-scale` written with exactly `scale` digits after the point (`12.30`,
/// `-0.005`, `7`): the text of a decimal, whatever its width.
pub fn decimal_text(negative: bool, digits: &str, scale: usize) -> String {
    let mut out = String::with_capacity(digits.len() + scale + 3);
    if negative {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(digits);
        return out;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    out.push_str(int);
    out.push('.');
    out.push_str(frac);
    out
}

/// A plain decimal text (`-0012.3400`, no exponent) reduced to compare by value: the sign, the
/// significant digits and the power of ten of the last one (`12.30` and `12.3` give the same).
pub fn decimal_key(text: &str) -> Option<(bool, String, i64)> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() || !(int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let all: String = int.chars().chain(frac.chars()).collect();
    let trimmed = all.trim_end_matches('0');
    let exponent = -(frac.len() as i64) + (all.len() - trimmed.len()) as i64;
    let digits = trimmed.trim_start_matches('0');
    if digits.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((negative, digits.to_string(), exponent))
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::U(u) => u as f64,
            Num::F(f) => f,
            Num::D(d) => d.text().parse().unwrap_or(f64::NAN),
        }
    }

    /// The value as an exact `i64`, when it is an integer that fits.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Num::I(i) => Some(i),
            Num::U(u) => i64::try_from(u).ok(),
            Num::F(_) => None,
            Num::D(d) => d.as_i64(),
        }
    }

    pub fn is_integer(self) -> bool {
        match self {
            Num::F(_) => false,
            Num::D(d) => d.scale == 0,
            _ => true,
        }
    }

    /// Numbers compare by value: `1` equals `1.0`, and `12.30` equals `12.3`.
    pub fn value_eq(self, other: Num) -> bool {
        match (self, other) {
            (Num::D(a), Num::D(b)) if a.scale == b.scale => a.unscaled() == b.unscaled(),
            (Num::F(_) | Num::D(_), _) | (_, Num::F(_) | Num::D(_)) => {
                match (self.as_i64(), other.as_i64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => self.as_f64() == other.as_f64(),
                }
            }
            (a, b) => match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => x == y,
                _ => matches!((a, b), (Num::U(x), Num::U(y)) if x == y),
            },
        }
    }

    /// JSON text of the number (`3`, `2.5`, a decimal's own digits); non-finite floats have none.
    pub fn to_text(self) -> Option<String> {
        match self {
            Num::I(i) => Some(i.to_string()),
            Num::U(u) => Some(u.to_string()),
            Num::F(f) if f.is_finite() => serde_json::to_string(&f).ok(),
            Num::F(_) => None,
            Num::D(d) => Some(d.text()),
        }
    }
}

/// A JSON value borrowing its strings from the source text (`'a`).
#[derive(Clone, Debug)]
pub enum V<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(Cow<'a, str>),
    Arr(Vec<V<'a>>),
    /// Keys are unique (a repeated key keeps its last value, as serde_json does).
    Obj(Vec<(Cow<'a, str>, V<'a>)>),
    /// A validated JSON object or array kept as its source text: a top-level record value
    /// that the converter passes through whole. It is parsed only if something looks inside
    /// ([`V::resolved`]); the converter's expressions never see it otherwise.
    Raw(&'a str),
    /// A decimal too wide for [`Num::D`] (more than 38 digits, e.g. Parquet decimal(76, 38)),
    /// kept as its exact text (`-12345678901234567890123456789012345678901.5`): written as it
    /// is, compared by value, read as the nearest double by arithmetic.
    Wide(Box<str>),
}

impl<'a> V<'a> {
    pub fn str(s: impl Into<Cow<'a, str>>) -> Self {
        V::Str(s.into())
    }

    pub fn int(i: i64) -> Self {
        V::Num(Num::I(i))
    }

    /// A float; non-finite results have no JSON form and yield `None`.
    pub fn float(f: f64) -> Option<Self> {
        f.is_finite().then_some(V::Num(Num::F(f)))
    }

    pub fn get(&self, key: &str) -> Option<&V<'a>> {
        match self {
            V::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, V::Null)
    }

    /// The name `typeof` gives this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            V::Raw(text) if text.starts_with('[') => "list",
            V::Raw(_) => "dict",
            V::Null => "null",
            V::Bool(_) => "bool",
            V::Num(_) | V::Wide(_) => "number",
            V::Str(_) => "string",
            V::Arr(_) => "list",
            V::Obj(_) => "dict",
        }
    }
}

impl From<&serde_json::Value> for V<'static> {
    fn from(value: &serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => V::Null,
            serde_json::Value::Bool(b) => V::Bool(*b),
            serde_json::Value::Number(n) => V::Num(if let Some(i) = n.as_i64() {
                Num::I(i)
            } else if let Some(u) = n.as_u64() {
                Num::U(u)
            } else {
                Num::F(n.as_f64().unwrap_or(f64::NAN))
            }),
            serde_json::Value::String(s) => V::Str(Cow::Owned(s.clone())),
            serde_json::Value::Array(a) => V::Arr(a.iter().map(V::from).collect()),
            serde_json::Value::Object(o) => V::Obj(
                o.iter()
                    .map(|(k, v)| (Cow::Owned(k.clone()), V::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Top-level record keys the converter reads, each with its slot number.
///
/// Every key of every record is looked up here, so the lookup is a small chained hash table
/// on the key's length and three of its bytes (a few instructions; a general-purpose hash
/// costs more than the whole lookup on keys this short), then one comparison.
#[derive(Clone, Debug)]
pub struct KeyIds {
    /// `(key, slot, next entry of the same bucket + 1 or 0)`.
    entries: Vec<(Box<str>, u32, u32)>,
    /// Per bucket: its first entry + 1, or 0.
    buckets: Box<[u32; BUCKETS]>,
}

const BUCKETS: usize = 256;

impl Default for KeyIds {
    fn default() -> Self {
        KeyIds {
            entries: Vec::new(),
            buckets: Box::new([0; BUCKETS]),
        }
    }
}

impl KeyIds {
    #[inline]
    fn bucket(key: &[u8]) -> usize {
        let (first, last, mid) = match key {
            [] => (0, 0, 0),
            [one] => (*one, *one, *one),
            _ => (key[0], key[key.len() - 1], key[key.len() / 2]),
        };
        let h = (key.len() as u32)
            .wrapping_mul(0x9E37)
            .wrapping_add(u32::from(first).wrapping_mul(31))
            .wrapping_add(u32::from(last).wrapping_mul(131))
            .wrapping_add(u32::from(mid).wrapping_mul(7));
        (h ^ (h >> 8)) as usize % BUCKETS
    }

    /// The slot of `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<u32> {
        let mut at = self.buckets[Self::bucket(key.as_bytes())];
        while at != 0 {
            let (k, id, next) = &self.entries[at as usize - 1];
            if same_bytes(k.as_bytes(), key.as_bytes()) {
                return Some(*id);
            }
            at = *next;
        }
        None
    }

    /// The slot of `key`, giving it `id` if it has none yet.
    pub fn get_or_insert(&mut self, key: &str, id: u32) -> u32 {
        if let Some(existing) = self.get(key) {
            return existing;
        }
        let b = Self::bucket(key.as_bytes());
        self.entries.push((key.into(), id, self.buckets[b]));
        self.buckets[b] = self.entries.len() as u32;
        id
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every key with its slot.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.entries.iter().map(|(k, id, _)| (k.as_ref(), *id))
    }
}

/// `a == b`, without a `memcmp` call for keys of 4 to 16 bytes (most keys): two overlapping
/// loads from each side.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let w4 = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
    match n {
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        _ => a == b,
    }
}

/// Which top-level keys of a record are materialised; the others are validated and skipped.
#[derive(Clone, Debug)]
pub enum Keys {
    All,
    /// These keys, by slot; a slot marked in `raw` keeps an object or array value as `V::Raw`.
    Only {
        ids: KeyIds,
        raw: Vec<bool>,
    },
}

/// A record: its top-level object and, when parsed for a converter, where each slot's key is.
#[derive(Debug)]
pub struct Record<'a> {
    /// The record's top-level object, but for the values read in place ([`Record::parts`]):
    /// [`Record::whole`] is the whole record.
    pub value: V<'a>,
    /// `slots[id]` is the index in `value`'s entries of the key with slot `id`, `IN_PLACE +`
    /// its index in `parts`, or `NO_SLOT`. Empty when the record was not parsed with slot
    /// numbers (CSV rows, previews).
    slots: Vec<u32>,
    /// A Parquet row's top-level fields in the file's order when some are read in place
    /// (borrowed from their column's batch instead of moved into `value`): `(name, value)`
    /// for those, `None` for the next of `value`'s entries. Empty otherwise.
    parts: Vec<Part<'a>>,
}

/// A top-level field of a record read in place, or `None` for the next of its value's entries.
pub(crate) type Part<'a> = Option<(&'a str, &'a V<'a>)>;

pub(crate) const NO_SLOT: u32 = u32::MAX;

/// Slots from here on are indices in [`Record::parts`] (plus this), not in `value`'s entries.
pub(crate) const IN_PLACE: u32 = 1 << 31;

/// Memory a record was parsed into (emptied), for the next one: parsing the records of a chunk
/// one after another, each need not allocate its entries and slot table anew.
#[derive(Default)]
pub struct Spare<'a> {
    pub(crate) entries: Vec<(Cow<'a, str>, V<'a>)>,
    pub(crate) slots: Vec<u32>,
}

impl<'a> Record<'a> {
    /// A record whose keys are found by name.
    pub fn new(value: V<'a>) -> Self {
        Record {
            value,
            slots: Vec::new(),
            parts: Vec::new(),
        }
    }

    pub(crate) fn with_slots(value: V<'a>, slots: Vec<u32>) -> Self {
        Record {
            value,
            slots,
            parts: Vec::new(),
        }
    }

    /// A record some of whose top-level values are read in place (see [`Record::parts`]).
    pub(crate) fn with_parts(value: V<'a>, slots: Vec<u32>, parts: Vec<Part<'a>>) -> Self {
        Record {
            value,
            slots,
            parts,
        }
    }

    /// The value and the slot table, to reuse their memory for the next record.
    pub(crate) fn into_parts(self) -> (V<'a>, Vec<u32>) {
        (self.value, self.slots)
    }

    /// [`Record::into_parts`] and the parts.
    pub(crate) fn into_all_parts(self) -> (V<'a>, Vec<u32>, Vec<Part<'a>>) {
        (self.value, self.slots, self.parts)
    }

    /// The whole record: its value, with the values read in place put back in their order.
    pub fn whole(&self) -> Cow<'_, V<'a>> {
        if self.parts.is_empty() {
            return Cow::Borrowed(&self.value);
        }
        let mut entries = match &self.value {
            V::Obj(entries) => entries.iter(),
            _ => [].iter(),
        };
        let whole = self
            .parts
            .iter()
            .filter_map(|part| match part {
                Some((name, v)) => Some((Cow::Borrowed(*name), (*v).clone())),
                None => entries.next().cloned(),
            })
            .collect();
        Cow::Owned(V::Obj(whole))
    }

    /// The record's memory, for the next record of the same text to be parsed into.
    pub fn into_spare(self) -> Spare<'a> {
        let (value, mut slots) = self.into_parts();
        let mut entries = match value {
            V::Obj(entries) => entries,
            _ => Vec::new(),
        };
        entries.clear();
        slots.clear();
        Spare { entries, slots }
    }

    /// The value of the key with slot `id`; `None` when absent. `key` serves records without slots.
    #[inline(always)]
    pub fn slot(&self, id: u32, key: &str) -> Option<&V<'a>> {
        if self.slots.is_empty() {
            return self.value.get(key);
        }
        match self.slots.get(id as usize) {
            Some(&i) if i < IN_PLACE => match &self.value {
                V::Obj(entries) => entries.get(i as usize).map(|(_, v)| v),
                _ => None,
            },
            Some(&i) if i != NO_SLOT => self.parts.get((i - IN_PLACE) as usize)?.map(|p| p.1),
            _ => None,
        }
    }
}

/// Pushes what `make` makes onto `out`, made where it is stored when `out` has room. A plain
/// `push` makes its value on the stack first (it must survive the call that grows the
/// vector) and copies it, and reading back a value just written by narrower stores stalls.
#[inline(always)]
pub fn push_made<T>(out: &mut Vec<T>, make: impl FnOnce() -> T) {
    if out.len() < out.capacity() {
        out.push(make());
    } else {
        out.reserve(1);
        out.push(make());
    }
}

/// Why a line is not a record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("not valid UTF-8 (byte {0})")]
    Utf8(usize),
    #[error("a JSON {0} is not a record; each line must be one JSON object")]
    NotObject(&'static str),
}

/// Keeps the last value of each repeated key, as serde_json does.
pub(super) fn dedupe_keys(entries: &mut Vec<(Cow<'_, str>, V<'_>)>) {
    if entries.len() < 2 {
        return;
    }
    let has_dup = if entries.len() <= 16 {
        (1..entries.len()).any(|i| entries[..i].iter().any(|(k, _)| *k == entries[i].0))
    } else {
        let mut seen = HashSet::with_capacity(entries.len());
        !entries.iter().all(|(k, _)| seen.insert(k.as_ref()))
    };
    if has_dup {
        // Keep the last occurrence of each key, in the position of its first occurrence.
        let mut out: Vec<(Cow<'_, str>, V<'_>)> = Vec::with_capacity(entries.len());
        for (k, v) in entries.drain(..) {
            match out.iter_mut().find(|(k2, _)| *k2 == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
        *entries = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_find_every_key_and_only_those() {
        let mut ids = KeyIds::default();
        // Many keys sharing length, first and last bytes land in the same buckets.
        let keys: Vec<String> = (0..600)
            .map(|i| format!("k{i:03}x"))
            .chain(["".into(), "a".into(), "é".into()])
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ids.get_or_insert(k, i as u32), i as u32);
        }
        assert_eq!(ids.get_or_insert("k007x", 9999), 7);
        assert_eq!(ids.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ids.get(k), Some(i as u32), "{k}");
        }
        for absent in ["k600x", "k00x", "b", "k007", "K007x", "ée"] {
            assert_eq!(ids.get(absent), None, "{absent}");
        }
        assert_eq!(ids.iter().count(), keys.len());
    }

    #[test]
    fn values_stay_small() {
        assert_eq!(std::mem::size_of::<Num>(), 24);
        assert_eq!(std::mem::size_of::<V<'_>>(), 32);
    }

    #[test]
    fn decimals_keep_their_digits_and_compare_by_value() {
        let d = |u: i128, s: u8| Num::D(Dec::new(u, s));
        assert_eq!(d(1230, 2).to_text().unwrap(), "12.30");
        assert_eq!(d(-5, 3).to_text().unwrap(), "-0.005");
        assert_eq!(
            d(i128::MIN + 1, 0).to_text().unwrap(),
            (i128::MIN + 1).to_string()
        );
        assert!(d(1230, 2).value_eq(Num::F(12.3)));
        assert!(d(1230, 2).value_eq(d(123, 1)));
        assert!(!d(1230, 2).value_eq(d(1231, 2)));
        assert!(d(1200, 2).value_eq(Num::I(12)));
        assert_eq!(d(1200, 2).as_i64(), Some(12));
        assert_eq!(d(1230, 2).as_i64(), None);
        assert!(!d(1200, 2).is_integer() && d(12, 0).is_integer());
        assert_eq!(d(1230, 2).as_f64(), 12.3);
    }
}
