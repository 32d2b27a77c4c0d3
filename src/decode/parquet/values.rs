//! One Parquet leaf value → one record value, as converter.md §1 "Parquet values" decides.
//! What a column holds ([`Kind`]) is settled once from its schema; here only values are read.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use parquet::basic::{ConvertedType, LogicalType, Type as Physical};
use parquet::basic::{TimeUnit, TimestampType};
use parquet::data_type::{ByteArray, FixedLenByteArray, Int96};
use parquet::schema::types::Type;

use crate::datalang::time::civil_from_days;
use crate::datalang::{decimal_text, Dec, Num, V};

/// How a leaf column's physical values become record values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A null-typed column: every cell is absent.
    Null,
    Bool,
    /// Signed integers of any width (INT32 or INT64).
    Int,
    /// UINT_8/16/32 stored in an INT32.
    UInt32,
    /// UINT_64 stored in an INT64.
    UInt64,
    F32,
    F64,
    /// decimal(p, s): the unscaled integer, with `s` digits after the point.
    Decimal(i32),
    Str,
    Binary,
    Uuid,
    Int96,
    Date,
    /// Time of day in this many units per second.
    Time(i64),
    /// Timestamp in this many units per millisecond (1, 1000, 1000000).
    Timestamp(i64),
}

/// A primitive column's type that has no record value, as the error names it.
#[derive(Debug)]
pub struct UnsupportedType(pub String);

/// The kind of a primitive column, or why it has none (the message names its type).
pub fn kind_of(t: &Type) -> Result<Kind, UnsupportedType> {
    let info = t.get_basic_info();
    let physical = t.get_physical_type();
    let logical = info.logical_type_ref();
    let converted = info.converted_type();
    let unsupported = || {
        let mut what = format!("{physical}");
        if physical == Physical::FIXED_LEN_BYTE_ARRAY {
            if let Type::PrimitiveType { type_length, .. } = t {
                what = format!("{what}({type_length})");
            }
        }
        match (logical, converted) {
            (Some(l), _) => format!("{what} with logical type {l:?}"),
            (None, ConvertedType::NONE) => what,
            (None, c) => format!("{what} with converted type {c}"),
        }
    };
    let per_ms = |unit: &TimeUnit| match unit {
        TimeUnit::MILLIS => 1,
        TimeUnit::MICROS => 1_000,
        TimeUnit::NANOS => 1_000_000,
    };
    let kind = match (physical, logical) {
        (_, Some(LogicalType::Unknown)) => Kind::Null,
        (Physical::BOOLEAN, None) => Kind::Bool,
        (Physical::INT32 | Physical::INT64, Some(LogicalType::Integer(i))) => {
            match (i.is_signed, physical) {
                (true, _) => Kind::Int,
                (false, Physical::INT32) => Kind::UInt32,
                (false, _) => Kind::UInt64,
            }
        }
        (Physical::INT32 | Physical::INT64, Some(LogicalType::Decimal(d))) => {
            Kind::Decimal(d.scale)
        }
        (Physical::INT32, Some(LogicalType::Date)) => Kind::Date,
        (
            Physical::INT32 | Physical::INT64,
            Some(LogicalType::Time(TimestampType { unit, .. })),
        ) => Kind::Time(1000 * per_ms(unit)),
        (Physical::INT64, Some(LogicalType::Timestamp(TimestampType { unit, .. }))) => {
            Kind::Timestamp(per_ms(unit))
        }
        (Physical::INT32 | Physical::INT64, None) => match converted {
            ConvertedType::NONE
            | ConvertedType::INT_8
            | ConvertedType::INT_16
            | ConvertedType::INT_32
            | ConvertedType::INT_64 => Kind::Int,
            ConvertedType::UINT_8 | ConvertedType::UINT_16 | ConvertedType::UINT_32
                if physical == Physical::INT32 =>
            {
                Kind::UInt32
            }
            ConvertedType::UINT_64 if physical == Physical::INT64 => Kind::UInt64,
            ConvertedType::DECIMAL => Kind::Decimal(t.get_scale()),
            ConvertedType::DATE if physical == Physical::INT32 => Kind::Date,
            ConvertedType::TIME_MILLIS if physical == Physical::INT32 => Kind::Time(1000),
            ConvertedType::TIME_MICROS if physical == Physical::INT64 => Kind::Time(1_000_000),
            ConvertedType::TIMESTAMP_MILLIS if physical == Physical::INT64 => Kind::Timestamp(1),
            ConvertedType::TIMESTAMP_MICROS if physical == Physical::INT64 => Kind::Timestamp(1000),
            _ => return Err(UnsupportedType(unsupported())),
        },
        (Physical::INT96, None) => Kind::Int96,
        (Physical::FLOAT, None) => Kind::F32,
        (Physical::DOUBLE, None) => Kind::F64,
        (
            Physical::BYTE_ARRAY,
            Some(LogicalType::String | LogicalType::Enum | LogicalType::Json),
        ) => Kind::Str,
        (Physical::BYTE_ARRAY, Some(LogicalType::Bson)) => Kind::Binary,
        (Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY, Some(LogicalType::Decimal(d))) => {
            Kind::Decimal(d.scale)
        }
        (Physical::FIXED_LEN_BYTE_ARRAY, Some(LogicalType::Uuid)) => Kind::Uuid,
        (Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY, None) => match converted {
            ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON
                if physical == Physical::BYTE_ARRAY =>
            {
                Kind::Str
            }
            ConvertedType::NONE | ConvertedType::BSON => Kind::Binary,
            ConvertedType::DECIMAL => Kind::Decimal(t.get_scale()),
            _ => return Err(UnsupportedType(unsupported())),
        },
        _ => return Err(UnsupportedType(unsupported())),
    };
    Ok(kind)
}

/// A leaf value: `Ok(None)` is absent (NaN, ±infinity, a null-typed column); `Err` makes the
/// record invalid (a string that is not UTF-8). Strings borrow the decoded page's bytes.
pub type Value<'a> = Result<Option<V<'a>>, String>;

/// Physical values that can become record values.
pub trait Physical2V {
    fn to_v(&self, kind: Kind) -> Value<'_>;
}

impl Physical2V for bool {
    fn to_v(&self, kind: Kind) -> Value<'_> {
        Ok(match kind {
            Kind::Null => None,
            _ => Some(V::Bool(*self)),
        })
    }
}

impl Physical2V for i32 {
    fn to_v(&self, kind: Kind) -> Value<'_> {
        match kind {
            Kind::UInt32 => Ok(Some(V::int(i64::from(*self as u32)))),
            _ => int_to_v(i64::from(*self), kind),
        }
    }
}

impl Physical2V for i64 {
    fn to_v(&self, kind: Kind) -> Value<'_> {
        int_to_v(*self, kind)
    }
}

fn int_to_v(v: i64, kind: Kind) -> Value<'static> {
    Ok(match kind {
        Kind::Null => None,
        Kind::UInt64 | Kind::UInt32 => {
            let u = v as u64;
            Some(V::Num(match i64::try_from(u) {
                Ok(i) => Num::I(i),
                Err(_) => Num::U(u),
            }))
        }
        Kind::Decimal(scale) => decimal(i128::from(v), scale),
        Kind::Date => Some(V::str(date(v))),
        Kind::Time(per_s) => Some(V::str(time_of_day(v, per_s))),
        Kind::Timestamp(per_ms) => Some(V::int(v.div_euclid(per_ms))),
        _ => Some(V::int(v)),
    })
}

impl Physical2V for f32 {
    fn to_v(&self, kind: Kind) -> Value<'_> {
        if kind == Kind::Null || !self.is_finite() {
            return Ok(None);
        }
        // The shortest text that reads back as the same f32, as an f64 (0.1f32 → 0.1).
        let f: f64 = self.to_string().parse().unwrap_or(f64::from(*self));
        Ok(V::float(f))
    }
}

impl Physical2V for f64 {
    fn to_v(&self, kind: Kind) -> Value<'_> {
        Ok(match kind {
            Kind::Null => None,
            _ => V::float(*self),
        })
    }
}

impl Physical2V for Int96 {
    fn to_v(&self, kind: Kind) -> Value<'_> {
        if kind == Kind::Null {
            return Ok(None);
        }
        let mut bytes = [0u8; 12];
        for (chunk, word) in bytes.chunks_mut(4).zip(self.data()) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Ok(Some(V::str(BASE64.encode(bytes))))
    }
}

impl Physical2V for ByteArray {
    fn to_v(&self, kind: Kind) -> Value<'_> {
        bytes_to_v(self.data(), kind)
    }
}

impl Physical2V for FixedLenByteArray {
    fn to_v(&self, kind: Kind) -> Value<'_> {
        bytes_to_v(self.data(), kind)
    }
}

fn bytes_to_v(b: &[u8], kind: Kind) -> Value<'_> {
    Ok(match kind {
        Kind::Null => None,
        Kind::Str => match std::str::from_utf8(b) {
            Ok(s) => Some(V::Str(Cow::Borrowed(s))),
            Err(e) => return Err(utf8_error(&e)),
        },
        Kind::Uuid if b.len() == 16 => Some(V::str(uuid(b))),
        Kind::Decimal(scale) => match be_i128(b) {
            Some(unscaled) => decimal(unscaled, scale),
            None => Some(wide_decimal(b, scale)),
        },
        _ => Some(V::str(BASE64.encode(b))),
    })
}

/// Why a string column's value is not a string.
pub fn utf8_error(e: &std::str::Utf8Error) -> String {
    format!("string is not valid UTF-8 (at byte {})", e.valid_up_to())
}

/// A big-endian two's-complement integer that fits an i128 (any length, sign-extended).
fn be_i128(b: &[u8]) -> Option<i128> {
    if b.is_empty() {
        return Some(0);
    }
    let negative = b[0] & 0x80 != 0;
    let (extra, rest) = b.split_at(b.len().saturating_sub(16));
    let fill = if negative { 0xff } else { 0 };
    if extra.iter().any(|&x| x != fill) {
        return None;
    }
    if !extra.is_empty() && (rest[0] & 0x80 != 0) != negative {
        return None;
    }
    let mut buf = [fill; 16];
    buf[16 - rest.len()..].copy_from_slice(rest);
    Some(i128::from_be_bytes(buf))
}

/// decimal(p, s): an integer when `s` is 0 and it fits; otherwise a decimal that keeps its
/// digits (`12.30` for decimal(4,2) 12.3).
fn decimal<'a>(unscaled: i128, scale: i32) -> Option<V<'a>> {
    if scale == 0 {
        if let Ok(i) = i64::try_from(unscaled) {
            return Some(V::int(i));
        }
    }
    match u8::try_from(scale).ok().filter(|s| *s <= 38) {
        Some(scale) => Some(V::Num(Num::D(Dec::new(unscaled, scale)))),
        None => Some(wide_decimal(&unscaled.to_be_bytes(), scale)),
    }
}

/// A decimal wider than an i128 (decimal256, BigQuery's BIGNUMERIC) or with a scale over 38:
/// its exact text, every digit kept.
fn wide_decimal(b: &[u8], scale: i32) -> V<'static> {
    let unscaled = num_bigint::BigInt::from_signed_bytes_be(b);
    let digits = unscaled.magnitude().to_string();
    let negative = unscaled.sign() == num_bigint::Sign::Minus;
    let text = match usize::try_from(scale) {
        Ok(scale) => decimal_text(negative, &digits, scale),
        // A negative scale multiplies by a power of ten (allowed by Parquet, never written by
        // the writers we know).
        Err(_) => {
            let zeros = "0".repeat(scale.unsigned_abs() as usize);
            decimal_text(negative && digits != "0", &(digits + &zeros), 0)
        }
    };
    V::Wide(text.into_boxed_str())
}

/// Days since 1970-01-01 → `YYYY-MM-DD`.
pub fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{y:+05}-{m:02}-{d:02}")
    }
}

/// Units since midnight → `HH:MM:SS.mmm`, truncated.
fn time_of_day(units: i64, per_s: i64) -> String {
    let ms = units.div_euclid(per_s / 1000);
    let (s, ms) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        s.div_euclid(3600),
        s.rem_euclid(3600) / 60,
        s.rem_euclid(60)
    )
}

fn uuid(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    s
}

/// A map key as text: strings as they are, anything else as its JSON text.
pub fn key_text(v: V<'_>) -> Cow<'_, str> {
    match v {
        V::Str(s) => s,
        other => Cow::Owned(other.to_json()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Value<'_>) -> String {
        v.unwrap().map_or("absent".into(), |v| v.to_json())
    }

    #[test]
    fn numbers() {
        assert_eq!(text((-5i32).to_v(Kind::Int)), "-5");
        assert_eq!(text((-1i32).to_v(Kind::UInt32)), "4294967295");
        assert_eq!(text((-1i64).to_v(Kind::UInt64)), "18446744073709551615");
        assert_eq!(text(7i64.to_v(Kind::UInt64)), "7");
        assert_eq!(text(0.1f32.to_v(Kind::F32)), "0.1");
        assert_eq!(text(f32::NAN.to_v(Kind::F32)), "absent");
        assert_eq!(text(f64::INFINITY.to_v(Kind::F64)), "absent");
        assert_eq!(text(1230i64.to_v(Kind::Decimal(2))), "12.30");
        assert_eq!(text((-5i32).to_v(Kind::Decimal(3))), "-0.005");
        assert_eq!(text(12i64.to_v(Kind::Decimal(1))), "1.2");
        assert_eq!(text((-5i32).to_v(Kind::Decimal(0))), "-5");
        assert_eq!(text(3i32.to_v(Kind::Null)), "absent");
    }

    #[test]
    fn decimals_from_bytes() {
        let b = FixedLenByteArray::from(vec![0xff, 0xff, 0xfb, 0x2e]); // -1234
        assert_eq!(text(b.to_v(Kind::Decimal(2))), "-12.34");
        let big = ByteArray::from(vec![0u8; 20]);
        assert_eq!(text(big.to_v(Kind::Decimal(0))), "0");
        // 2^128: wider than an i128, kept whole.
        let wider = ByteArray::from([vec![1u8], vec![0u8; 16]].concat());
        assert_eq!(
            text(wider.to_v(Kind::Decimal(0))),
            "340282366920938463463374607431768211456"
        );
        // decimal(76, 38): BigQuery's BIGNUMERIC extremes, and small values at scale 38.
        let max = "578960446186580977117854925043439539266.34992332820282019728792003956564819967";
        let unscaled: String = max.chars().filter(|c| *c != '.').collect();
        let bytes = num_bigint::BigInt::parse_bytes(unscaled.as_bytes(), 10)
            .unwrap()
            .to_signed_bytes_be();
        let neg = (-num_bigint::BigInt::from_signed_bytes_be(&bytes)).to_signed_bytes_be();
        assert_eq!(text(ByteArray::from(bytes).to_v(Kind::Decimal(38))), max);
        assert_eq!(
            text(ByteArray::from(neg).to_v(Kind::Decimal(38))),
            format!("-{max}")
        );
        let small =
            num_bigint::BigInt::from(-1_234_500i64) * num_bigint::BigInt::from(10u8).pow(36);
        assert_eq!(
            text(ByteArray::from(small.to_signed_bytes_be()).to_v(Kind::Decimal(38))),
            "-12345.00000000000000000000000000000000000000"
        );
        // A 16-byte value with a scale over 38.
        let b = ByteArray::from(5i128.to_be_bytes().to_vec());
        assert_eq!(
            text(b.to_v(Kind::Decimal(40))),
            "0.0000000000000000000000000000000000000005"
        );
        let max = ByteArray::from(i128::MAX.to_be_bytes().to_vec());
        assert!(max.to_v(Kind::Decimal(38)).is_ok());
        // 38 digits kept exactly, beyond what a double holds.
        let digits: i128 = 12_345_678_901_234_567_890_123_456_789_012_345_678;
        let wide = ByteArray::from((-digits).to_be_bytes().to_vec());
        assert_eq!(
            text(wide.to_v(Kind::Decimal(10))),
            "-1234567890123456789012345678.9012345678"
        );
    }

    #[test]
    fn times_and_dates() {
        assert_eq!(text(1_500i64.to_v(Kind::Timestamp(1000))), "1");
        assert_eq!(text((-1i64).to_v(Kind::Timestamp(1_000_000))), "-1");
        assert_eq!(text(0i32.to_v(Kind::Date)), "\"1970-01-01\"");
        assert_eq!(text(18_000i32.to_v(Kind::Date)), "\"2019-04-14\"");
        assert_eq!(
            text(86_399_999_999i64.to_v(Kind::Time(1_000_000))),
            "\"23:59:59.999\""
        );
        assert_eq!(
            text(3_723_004i32.to_v(Kind::Time(1000))),
            "\"01:02:03.004\""
        );
        assert_eq!(
            text(1_000_000_001i64.to_v(Kind::Time(1_000_000_000))),
            "\"00:00:01.000\""
        );
    }

    #[test]
    fn int96_is_the_base64_of_its_bytes() {
        // The converter spec's test vector: "AP6qCz41AAAwhCUA" → 1562516140600 ms.
        let bytes = BASE64.decode("AP6qCz41AAAwhCUA").unwrap();
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let v = Int96::from(vec![word(0), word(4), word(8)]);
        assert_eq!(text(v.to_v(Kind::Int96)), "\"AP6qCz41AAAwhCUA\"");
        assert_eq!(
            crate::datalang::time::int96_to_ms("AP6qCz41AAAwhCUA"),
            Some(1_562_516_140_600)
        );
    }

    #[test]
    fn binary_uuid_strings() {
        let u: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            text(FixedLenByteArray::from(u).to_v(Kind::Uuid)),
            "\"00010203-0405-0607-0809-0a0b0c0d0e0f\""
        );
        assert_eq!(
            text(ByteArray::from(vec![0xffu8, 0]).to_v(Kind::Binary)),
            "\"/wA=\""
        );
        assert_eq!(text(ByteArray::from("é").to_v(Kind::Str)), "\"é\"");
        assert!(ByteArray::from(vec![0xffu8]).to_v(Kind::Str).is_err());
        assert_eq!(key_text(V::int(3)), "3");
        assert_eq!(key_text(V::Bool(true)), "true");
    }
}
