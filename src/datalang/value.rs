//! The record value model: a JSON tree whose strings borrow from the input line where they can.
//!
//! `serde_json::Value` allocates a `String` per key and a map per object; on 400-byte analytics
//! events that allocation is most of the cost. `V<'a>` keeps unescaped strings and keys as
//! borrowed slices of the line buffer and objects as small vectors, and the record parser
//! skips (validates without building) the top-level keys the converter never reads.
//!
//! Records are read by the scanner in `scan.rs`; serde_json (the visitors below) reads what
//! the scanner gives up on, and so writes every error message a bad line gets.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::scan;

/// A JSON number as parsed: integers stay exact.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::U(u) => u as f64,
            Num::F(f) => f,
        }
    }

    /// The value as an exact `i64`, when it is an integer that fits.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Num::I(i) => Some(i),
            Num::U(u) => i64::try_from(u).ok(),
            Num::F(_) => None,
        }
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, Num::F(_))
    }

    /// Numbers compare by value: `1` equals `1.0`.
    pub fn value_eq(self, other: Num) -> bool {
        match (self, other) {
            (Num::F(_), _) | (_, Num::F(_)) => self.as_f64() == other.as_f64(),
            (a, b) => match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => x == y,
                _ => matches!((a, b), (Num::U(x), Num::U(y)) if x == y),
            },
        }
    }

    /// JSON text of the number (`3`, `2.5`); non-finite floats have none.
    pub fn to_text(self) -> Option<String> {
        match self {
            Num::I(i) => Some(i.to_string()),
            Num::U(u) => Some(u.to_string()),
            Num::F(f) if f.is_finite() => serde_json::to_string(&f).ok(),
            Num::F(_) => None,
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

    /// A `Raw` value parsed into a tree; any other value as it is.
    pub fn resolved(&self) -> Option<V<'a>> {
        match self {
            V::Raw(text) => parse_value(text).ok(),
            other => Some(other.clone()),
        }
    }

    /// The name `typeof` gives this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            V::Raw(text) if text.starts_with('[') => "list",
            V::Raw(_) => "dict",
            V::Null => "null",
            V::Bool(_) => "bool",
            V::Num(_) => "number",
            V::Str(_) => "string",
            V::Arr(_) => "list",
            V::Obj(_) => "dict",
        }
    }

    /// Detaches the value from the source text.
    pub fn into_static(self) -> V<'static> {
        match self {
            V::Null => V::Null,
            V::Bool(b) => V::Bool(b),
            V::Num(n) => V::Num(n),
            V::Str(s) => V::Str(Cow::Owned(s.into_owned())),
            V::Arr(a) => V::Arr(a.into_iter().map(V::into_static).collect()),
            V::Obj(o) => V::Obj(
                o.into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_static()))
                    .collect(),
            ),
            V::Raw(text) => parse_value(text).map_or(V::Null, V::into_static),
        }
    }

    /// Compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// JSON equality: numbers by value, objects regardless of key order.
pub fn json_eq(a: &V<'_>, b: &V<'_>) -> bool {
    match (a, b) {
        (V::Raw(_), _) | (_, V::Raw(_)) => match (a.resolved(), b.resolved()) {
            (Some(x), Some(y)) => json_eq(&x, &y),
            _ => false,
        },
        (V::Null, V::Null) => true,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Num(x), V::Num(y)) => x.value_eq(*y),
        (V::Str(x), V::Str(y)) => x == y,
        (V::Arr(x), V::Arr(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (V::Obj(x), V::Obj(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| k == k2 && json_eq(v, v2)))
        }
        _ => false,
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

impl Serialize for V<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            V::Null => s.serialize_unit(),
            V::Bool(b) => s.serialize_bool(*b),
            V::Num(Num::I(i)) => s.serialize_i64(*i),
            V::Num(Num::U(u)) => s.serialize_u64(*u),
            V::Num(Num::F(f)) => s.serialize_f64(*f),
            V::Str(st) => s.serialize_str(st),
            V::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            V::Obj(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
            V::Raw(text) => match parse_value(text) {
                Ok(v) => v.serialize(s),
                Err(_) => s.serialize_unit(),
            },
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
            if k.as_ref() == key {
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
    pub value: V<'a>,
    /// `slots[id]` is the index in `value`'s entries of the key with slot `id`, or `NO_SLOT`.
    /// Empty when the record was not parsed with slot numbers (CSV rows, previews).
    slots: Vec<u32>,
}

pub(super) const NO_SLOT: u32 = u32::MAX;

impl<'a> Record<'a> {
    /// A record whose keys are found by name.
    pub fn new(value: V<'a>) -> Self {
        Record {
            value,
            slots: Vec::new(),
        }
    }

    pub(super) fn with_slots(value: V<'a>, slots: Vec<u32>) -> Self {
        Record { value, slots }
    }

    /// The value of the key with slot `id`; `None` when absent. `key` serves records without slots.
    #[inline(always)]
    pub fn slot(&self, id: u32, key: &str) -> Option<&V<'a>> {
        if self.slots.is_empty() {
            return self.value.get(key);
        }
        match (self.slots.get(id as usize), &self.value) {
            (Some(&i), V::Obj(entries)) if i != NO_SLOT => entries.get(i as usize).map(|(_, v)| v),
            _ => None,
        }
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

/// Parses one JSON-lines record, keeping only the wanted top-level keys.
pub fn parse_record<'a>(line: &'a [u8], keys: &Keys) -> Result<Record<'a>, RecordError> {
    // One validation pass for the whole line is cheaper than serde_json's per-string checks.
    let text = std::str::from_utf8(line).map_err(|e| RecordError::Utf8(e.valid_up_to()))?;
    let fast = match keys {
        Keys::Only { ids, raw } => scan::record(text, ids, raw),
        Keys::All => scan::whole_record(text),
    };
    match fast {
        Some(record) => Ok(record),
        None => parse_record_serde(text, keys),
    }
}

/// [`parse_record`] by serde_json: the reference, and the path that explains every error.
pub(super) fn parse_record_serde<'a>(
    text: &'a str,
    keys: &Keys,
) -> Result<Record<'a>, RecordError> {
    let line = text.as_bytes();
    let first = line.iter().find(|b| !b.is_ascii_whitespace());
    let kind = match first {
        Some(b'{') | None => None,
        Some(b'[') => Some("array"),
        Some(b'"') => Some("string"),
        Some(b't' | b'f') => Some("boolean"),
        Some(b'n') => Some("null"),
        Some(b'-' | b'0'..=b'9') => Some("number"),
        Some(_) => None,
    };
    if let Some(kind) = kind {
        // Only a well-formed value is "not an object"; anything else is a syntax error.
        if serde_json::from_str::<IgnoredAny>(text).is_ok() {
            return Err(RecordError::NotObject(kind));
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let record = RecordSeed { keys }
        .deserialize(&mut de)
        .map_err(|e| RecordError::Syntax(e.to_string()))?;
    de.end().map_err(|e| RecordError::Syntax(e.to_string()))?;
    Ok(record)
}

/// Parses any JSON text into a value that borrows from it.
pub fn parse_value(text: &str) -> Result<V<'_>, serde_json::Error> {
    match scan::value(text) {
        Some(v) => Ok(v),
        None => parse_value_serde(text),
    }
}

/// The text of member `key` of a value kept as text (see [`V::Raw`]); `None` when absent or
/// when `text` is not an object or array.
pub(super) fn raw_member<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    scan::member(text, key)
}

/// [`parse_value`] by serde_json.
pub(super) fn parse_value_serde(text: &str) -> Result<V<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = ValueSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

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

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = V<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V<'de>, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = V<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<V<'de>, E> {
        Ok(V::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<V<'de>, E> {
        Ok(V::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<V<'de>, E> {
        Ok(V::Num(Num::I(i)))
    }
    fn visit_u64<E>(self, u: u64) -> Result<V<'de>, E> {
        Ok(V::Num(match i64::try_from(u) {
            Ok(i) => Num::I(i),
            Err(_) => Num::U(u),
        }))
    }
    fn visit_f64<E>(self, f: f64) -> Result<V<'de>, E> {
        Ok(V::Num(Num::F(f)))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<V<'de>, E> {
        Ok(V::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<V<'de>, E> {
        Ok(V::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<V<'de>, E> {
        Ok(V::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(ValueSeed)? {
            items.push(item);
        }
        Ok(V::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<V<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key_seed(KeySeed)? {
            let v = map.next_value_seed(ValueSeed)?;
            entries.push((k, v));
        }
        dedupe_keys(&mut entries);
        Ok(V::Obj(entries))
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

struct RecordSeed<'k> {
    keys: &'k Keys,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Record<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Record<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Record<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record<'de>, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, V<'de>)> = Vec::with_capacity(16);
        match self.keys {
            Keys::All => {
                while let Some(k) = map.next_key_seed(KeySeed)? {
                    let v = map.next_value_seed(ValueSeed)?;
                    entries.push((k, v));
                }
                dedupe_keys(&mut entries);
                Ok(Record::new(V::Obj(entries)))
            }
            Keys::Only { ids, raw } => {
                let mut slots = vec![NO_SLOT; ids.len()];
                while let Some(k) = map.next_key_seed(KeySeed)? {
                    match ids.get(k.as_ref()) {
                        Some(id) => {
                            let v = if raw[id as usize] {
                                let text =
                                    map.next_value::<&'de serde_json::value::RawValue>()?.get();
                                if text.starts_with(['{', '[']) {
                                    V::Raw(text)
                                } else {
                                    parse_value(text).map_err(de::Error::custom)?
                                }
                            } else {
                                map.next_value_seed(ValueSeed)?
                            };
                            let slot = &mut slots[id as usize];
                            if *slot == NO_SLOT {
                                *slot = entries.len() as u32;
                                entries.push((k, v));
                            } else {
                                // A repeated key keeps its last value.
                                entries[*slot as usize].1 = v;
                            }
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Record {
                    value: V::Obj(entries),
                    slots,
                })
            }
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Record<'de>, A::Error> {
        Err(de::Error::custom("not an object: array"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Record<'de>, E> {
        Err(E::custom("not an object: null"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Record<'de>, E> {
        Err(E::custom("not an object: bool"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Record<'de>, E> {
        Err(E::custom("not an object: number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Record<'de>, E> {
        Err(E::custom("not an object: number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Record<'de>, E> {
        Err(E::custom("not an object: number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Record<'de>, E> {
        Err(E::custom("not an object: string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_owns_escaped_ones() {
        let line = br#"{"a":"plain","b":"tab\there","c":{"d":[1,2.5,true,null]}}"#;
        let v = parse_record(line, &Keys::All).unwrap().value;
        assert!(matches!(v.get("a"), Some(V::Str(Cow::Borrowed("plain")))));
        assert!(matches!(v.get("b"), Some(V::Str(Cow::Owned(s))) if s == "tab\there"));
        assert_eq!(
            v.to_json(),
            r#"{"a":"plain","b":"tab\there","c":{"d":[1,2.5,true,null]}}"#
        );
    }

    #[test]
    fn skips_unwanted_keys_but_still_validates_them() {
        let mut ids = KeyIds::default();
        ids.get_or_insert("a", 0);
        ids.get_or_insert("c", 1);
        let keys = Keys::Only {
            ids,
            raw: vec![false, false],
        };
        let r = parse_record(br#"{"a":1,"b":{"x":[1,2]},"a":2}"#, &keys).unwrap();
        assert_eq!(r.value.to_json(), r#"{"a":2}"#);
        assert_eq!(r.slot(0, "a").map(V::to_json).as_deref(), Some("2"));
        assert!(r.slot(1, "c").is_none());
        assert!(parse_record(br#"{"a":1,"b":{"x":[1,2}}"#, &keys).is_err());
    }

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
    fn repeated_keys_keep_the_last_value() {
        let v = parse_record(br#"{"a":1,"b":2,"a":3}"#, &Keys::All)
            .unwrap()
            .value;
        assert_eq!(v.to_json(), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn non_objects_and_trailing_text_are_errors() {
        assert!(matches!(
            parse_record(b"[1]", &Keys::All),
            Err(RecordError::NotObject("array"))
        ));
        assert!(matches!(
            parse_record(b"\"x\"", &Keys::All),
            Err(RecordError::NotObject("string"))
        ));
        assert!(matches!(
            parse_record(b"{} {}", &Keys::All),
            Err(RecordError::Syntax(_))
        ));
        assert!(matches!(
            parse_record(b"{\"a\":", &Keys::All),
            Err(RecordError::Syntax(_))
        ));
        assert!(matches!(
            parse_record(b"{\"a\":\"\xff\"}", &Keys::All),
            Err(RecordError::Utf8(6))
        ));
    }

    #[test]
    fn equality_is_by_value() {
        let a = parse_value(r#"{"x":1,"y":[1.0,"s"]}"#).unwrap();
        let b = parse_value(r#"{"y":[1,"s"],"x":1.0}"#).unwrap();
        assert!(json_eq(&a, &b));
        assert!(!json_eq(&V::str("1"), &V::int(1)));
    }
}

#[cfg(test)]
mod raw_tests {
    use super::*;

    #[test]
    fn raw_slots_keep_objects_as_text_and_scalars_as_values() {
        let mut ids = KeyIds::default();
        ids.get_or_insert("o", 0);
        ids.get_or_insert("s", 1);
        let keys = Keys::Only {
            ids,
            raw: vec![true, true],
        };
        let r = parse_record(br#"{"o": {"a": [1, "x"]}, "s": "plain"}"#, &keys).unwrap();
        assert!(matches!(r.slot(0, "o"), Some(V::Raw(r#"{"a": [1, "x"]}"#))));
        assert!(matches!(r.slot(1, "s"), Some(V::Str(_))));
        assert_eq!(r.slot(0, "o").unwrap().type_name(), "dict");
        assert_eq!(r.slot(0, "o").unwrap().to_json(), r#"{"a":[1,"x"]}"#);
        let parsed = parse_value(r#"{"a":[1,"x"]}"#).unwrap();
        assert!(json_eq(r.slot(0, "o").unwrap(), &parsed));
    }
}
