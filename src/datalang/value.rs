//! Reading JSON text into record values and writing them back: the scanner (`scan.rs`) first,
//! serde_json (`fallback.rs`) for what it gives up on, which so writes every error message.
//!
//! The model itself ([`V`], [`Record`], [`KeyIds`]) is in `record.rs`; it is re-exported here.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::fallback::{parse_record_serde, parse_value_serde};
pub use super::record::{decimal_key, KeyIds, Keys, Num, Record, RecordError, Spare, V};
use super::scan;

/// Parses one JSON-lines record, keeping only the wanted top-level keys.
pub fn parse_record<'a>(line: &'a [u8], keys: &Keys) -> Result<Record<'a>, RecordError> {
    parse_record_in(line, keys, Spare::default())
}

/// [`parse_record`] into the memory of a record done with ([`Record::into_spare`]).
pub fn parse_record_in<'a>(
    line: &'a [u8],
    keys: &Keys,
    spare: Spare<'a>,
) -> Result<Record<'a>, RecordError> {
    // One validation pass for the whole line is cheaper than serde_json's per-string checks;
    // simdutf8's is several times faster than std's on this text (mostly ASCII, some of it
    // not). The position of a fault is std's to report: it is on the rare path.
    let text = match simdutf8::basic::from_utf8(line) {
        Ok(text) => text,
        Err(_) => std::str::from_utf8(line).map_err(|e| RecordError::Utf8(e.valid_up_to()))?,
    };
    let fast = match keys {
        Keys::Only { ids, raw } => scan::record(text, ids, raw, spare),
        Keys::All => scan::whole_record(text),
    };
    match fast {
        Some(record) => Ok(record),
        None => parse_record_serde(text, keys),
    }
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

/// The methods of [`V`] that parse a value kept as text ([`V::Raw`]).
impl<'a> V<'a> {
    /// A `Raw` value parsed into a tree; any other value as it is.
    pub fn resolved(&self) -> Option<V<'a>> {
        match self {
            V::Raw(text) => parse_value(text).ok(),
            other => Some(other.clone()),
        }
    }

    /// Detaches the value from the source text.
    pub fn into_static(self) -> V<'static> {
        match self {
            V::Null => V::Null,
            V::Bool(b) => V::Bool(b),
            V::Num(n) => V::Num(n),
            V::Wide(t) => V::Wide(t),
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
        (V::Wide(x), V::Wide(y)) => decimal_key(x) == decimal_key(y),
        (V::Wide(w), V::Num(n)) | (V::Num(n), V::Wide(w)) => match n {
            Num::F(f) => w.parse::<f64>().ok() == Some(*f),
            n => n.to_text().and_then(|t| decimal_key(&t)) == decimal_key(w),
        },
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

impl Serialize for V<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            V::Null => s.serialize_unit(),
            V::Bool(b) => s.serialize_bool(*b),
            V::Num(Num::I(i)) => s.serialize_i64(*i),
            V::Num(Num::U(u)) => s.serialize_u64(*u),
            V::Num(Num::F(f)) => s.serialize_f64(*f),
            // Serde has no decimal: its exact text as a raw JSON value (serde_json writes it as
            // is; a serde_json::Value takes it by value).
            V::Num(n @ Num::D(d)) => match serde_json::value::RawValue::from_string(d.text()) {
                Ok(raw) => raw.serialize(s),
                Err(_) => s.serialize_f64(n.as_f64()),
            },
            V::Wide(text) => match serde_json::value::RawValue::from_string(text.to_string()) {
                Ok(raw) => raw.serialize(s),
                Err(_) => s.serialize_unit(),
            },
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
