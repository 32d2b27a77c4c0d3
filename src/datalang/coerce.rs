//! How the language reads a value as a boolean, a number or text (shared with `convert`).

use std::borrow::Cow;

use super::record::{Num, V};

/// How a value reads as a boolean: `true`/`false` and their strings; everything else is false.
pub fn truthy(v: Option<&V<'_>>) -> bool {
    match v {
        Some(V::Bool(b)) => *b,
        Some(V::Str(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// How a value reads as a number: numbers, numeric strings, null and no value as 0.
pub(super) fn numeric(v: Option<&V<'_>>) -> Option<Num> {
    match v {
        None | Some(V::Null) => Some(Num::I(0)),
        Some(V::Num(n)) => Some(*n),
        Some(V::Wide(text)) => text.parse().ok().map(Num::F),
        Some(V::Str(s)) => parse_num(s),
        _ => None,
    }
}

/// A numeric string as a number: integers that fit 64 bits (signed or unsigned) exactly, else
/// the nearest finite double.
pub fn parse_num(s: &str) -> Option<Num> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Num::I(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Num::U(u));
    }
    let looks_numeric = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    match s.parse::<f64>() {
        Ok(f) if looks_numeric && f.is_finite() => Some(Num::F(f)),
        _ => None,
    }
}

/// Text of a scalar as `concat` writes it; objects, arrays, null and no value have none.
pub fn text_of<'v>(v: Option<&'v V<'_>>) -> Option<Cow<'v, str>> {
    match v? {
        V::Str(s) => Some(Cow::Borrowed(s.as_ref())),
        V::Num(n) => n.to_text().map(Cow::Owned),
        V::Wide(text) => Some(Cow::Borrowed(text.as_ref())),
        V::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// How a value reads as an integer: integers, integral floats, integer strings.
pub(super) fn integer_of(v: Option<&V<'_>>) -> Option<i64> {
    match v? {
        V::Num(n) => n.as_i64().or_else(|| {
            let f = n.as_f64();
            (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
        }),
        V::Str(s) => s.parse().ok(),
        V::Wide(text) => text.parse().ok(),
        _ => None,
    }
}
