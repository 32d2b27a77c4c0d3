//! The slow path of reading JSON: serde_json, for whatever the scanner (`scan.rs`) gives up
//! on. It is the reference the scanner is tested against, and it writes every error message a
//! bad line gets.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::record::{dedupe_keys, Keys, Num, Record, RecordError, NO_SLOT, V};

/// `value::parse_record` by serde_json: the reference, and the path that explains every error.
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

/// `value::parse_value` by serde_json.
pub(super) fn parse_value_serde(text: &str) -> Result<V<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = ValueSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
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
                                    // Scalars only: what the scanner would build too (`scan::tests`).
                                    parse_value_serde(text).map_err(de::Error::custom)?
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
                Ok(Record::with_slots(V::Obj(entries), slots))
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
