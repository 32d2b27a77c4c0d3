//! Time conversions of the expression language: ISO-8601 ↔ epoch ms, Java-style patterns, INT96.
//!
//! Hand-written because they run once per record on the hot path: no allocation, no locale,
//! and patterns compiled once at load.

use base64::Engine;

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Fields of a date-time, checked and turned into epoch ms.
#[derive(Default)]
struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
    offset_s: i64,
}

impl Parts {
    fn to_ms(&self) -> Option<i64> {
        if !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs =
            i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        Some(days * MS_PER_DAY + (secs - self.offset_s) * 1000 + i64::from(self.millis))
    }
}

struct Cursor<'s> {
    b: &'s [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
    /// Exactly `n` digits.
    fn digits(&mut self, n: usize) -> Option<u32> {
        self.digits_range(n, n)
    }
    /// Between `min` and `max` digits, greedily.
    fn digits_range(&mut self, min: usize, max: usize) -> Option<u32> {
        let mut v: u32 = 0;
        let mut n = 0;
        while n < max {
            match self.peek() {
                Some(c @ b'0'..=b'9') => {
                    v = v * 10 + u32::from(c - b'0');
                    self.i += 1;
                    n += 1;
                }
                _ => break,
            }
        }
        (n >= min).then_some(v)
    }
    /// A fraction of 1–9 digits, truncated to milliseconds.
    fn fraction_ms(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        self.digits_range(min, max)?;
        let digits = &self.b[start..self.i];
        let mut ms = 0;
        for k in 0..3 {
            ms = ms * 10 + digits.get(k).map_or(0, |c| u32::from(c - b'0'));
        }
        Some(ms)
    }
    /// `Z`, `±HH:MM`, `±HHMM` or `±HH`, as seconds east of UTC.
    fn offset(&mut self, z_ok: bool, colon: Colon) -> Option<i64> {
        if z_ok && self.eat(b'Z') {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let h = self.digits(2)?;
        let m = match colon {
            Colon::Required => {
                if !self.eat(b':') {
                    return None;
                }
                self.digits(2)?
            }
            Colon::Forbidden => self.digits(2)?,
            Colon::Any => {
                // `±HH:MM`, `±HHMM` or `±HH`.
                if self.eat(b':') || matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.digits(2)?
                } else {
                    0
                }
            }
        };
        if h > 18 || m > 59 {
            return None;
        }
        Some(sign * (i64::from(h) * 3600 + i64::from(m) * 60))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Colon {
    Required,
    Forbidden,
    Any,
}

/// `YYYY-MM-DD`, then optionally `T` or one space and `HH:MM[:SS[.fraction]]`, then optionally
/// `Z`, `±HH:MM`, `±HHMM` or `±HH`. Anything else is `None`.
pub fn iso_to_ms(text: &str) -> Option<i64> {
    let mut c = Cursor {
        b: text.as_bytes(),
        i: 0,
    };
    let mut p = Parts {
        year: i64::from(c.digits(4)?),
        ..Parts::default()
    };
    if !c.eat(b'-') {
        return None;
    }
    p.month = c.digits(2)?;
    if !c.eat(b'-') {
        return None;
    }
    p.day = c.digits(2)?;
    if c.done() {
        return p.to_ms();
    }
    if !(c.eat(b'T') || c.eat(b' ')) {
        return None;
    }
    p.hour = c.digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    p.minute = c.digits(2)?;
    if c.eat(b':') {
        p.second = c.digits(2)?;
        if c.eat(b'.') {
            p.millis = c.fraction_ms(1, 9)?;
        }
    }
    if !c.done() {
        p.offset_s = c.offset(true, Colon::Any)?;
    }
    if !c.done() {
        return None;
    }
    p.to_ms()
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ` (UTC); years outside 0000–9999 have no such form.
pub fn ms_to_iso(ms: i64) -> Option<String> {
    let days = ms.div_euclid(MS_PER_DAY);
    let rem = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let secs = rem / 1000;
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        rem % 1000
    ))
}

/// Base64 of a 12-byte Parquet INT96: nanoseconds of day (LE i64), then Julian day (LE i32).
pub fn int96_to_ms(b64: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let bytes: [u8; 12] = bytes.try_into().ok()?;
    let nanos = i64::from_le_bytes(bytes[0..8].try_into().ok()?);
    let julian = i64::from(i32::from_le_bytes(bytes[8..12].try_into().ok()?));
    Some((julian - 2_440_588) * MS_PER_DAY + nanos / 1_000_000)
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Lit(String),
    Year4,
    Year2,
    /// Digits of a numeric field: (field, minimum digits, maximum digits).
    Num(Field, usize, usize),
    MonthShort,
    MonthLong,
    WeekdayShort,
    WeekdayLong,
    AmPm,
    Fraction(usize),
    Offset(bool, Colon),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Field {
    Month,
    Day,
    Hour24,
    Hour12,
    Minute,
    Second,
}

/// A `parse_time_to_ms` pattern, compiled once at load.
#[derive(Clone, Debug)]
pub struct TimePattern {
    toks: Vec<Tok>,
}

impl TimePattern {
    /// Compiles a Java `DateTimeFormatter`-style pattern; unknown letters are an error.
    pub fn compile(pattern: &str) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        let push_lit = |toks: &mut Vec<Tok>, s: &str| match toks.last_mut() {
            Some(Tok::Lit(l)) => l.push_str(s),
            _ => toks.push(Tok::Lit(s.to_string())),
        };
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // 'quoted literal'; '' is one quote.
                if chars.get(i + 1) == Some(&'\'') {
                    push_lit(&mut toks, "'");
                    i += 2;
                    continue;
                }
                let mut j = i + 1;
                let mut lit = String::new();
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(format!("unterminated quote in time pattern {pattern:?}"))
                        }
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            lit.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(ch) => {
                            lit.push(*ch);
                            j += 1;
                        }
                    }
                }
                push_lit(&mut toks, &lit);
                i = j + 1;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                push_lit(&mut toks, &c.to_string());
                i += 1;
                continue;
            }
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            let num = |f, n: usize| Tok::Num(f, if n == 1 { 1 } else { n }, n.max(2));
            let tok = match (c, n) {
                ('y' | 'u', 2) => Tok::Year2,
                ('y' | 'u', _) => Tok::Year4,
                ('M', 1 | 2) => num(Field::Month, n),
                ('M', 3) => Tok::MonthShort,
                ('M', 4) => Tok::MonthLong,
                ('d', 1 | 2) => num(Field::Day, n),
                ('H', 1 | 2) => num(Field::Hour24, n),
                ('h', 1 | 2) => num(Field::Hour12, n),
                ('m', 1 | 2) => num(Field::Minute, n),
                ('s', 1 | 2) => num(Field::Second, n),
                ('S', 1..=9) => Tok::Fraction(n),
                ('a', 1) => Tok::AmPm,
                ('E', 1..=3) => Tok::WeekdayShort,
                ('E', 4) => Tok::WeekdayLong,
                ('X', 1) => Tok::Offset(true, Colon::Any),
                ('X', 2) => Tok::Offset(true, Colon::Forbidden),
                ('X', 3) => Tok::Offset(true, Colon::Required),
                ('Z', 1..=3) => Tok::Offset(false, Colon::Forbidden),
                _ => {
                    return Err(format!(
                        "unsupported time pattern letters {:?} in {pattern:?}",
                        c.to_string().repeat(n)
                    ))
                }
            };
            toks.push(tok);
            i += n;
        }
        Ok(TimePattern { toks })
    }

    /// Epoch ms of `text`, UTC unless the pattern carries an offset; `None` when it does not match.
    pub fn parse_ms(&self, text: &str) -> Option<i64> {
        let mut c = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        let mut p = Parts {
            year: 1970,
            month: 1,
            day: 1,
            ..Parts::default()
        };
        let mut hour12: Option<u32> = None;
        let mut pm: Option<bool> = None;
        for tok in &self.toks {
            match tok {
                Tok::Lit(l) => {
                    if !c.b[c.i..].starts_with(l.as_bytes()) {
                        return None;
                    }
                    c.i += l.len();
                }
                Tok::Year4 => p.year = i64::from(c.digits(4)?),
                Tok::Year2 => p.year = 2000 + i64::from(c.digits(2)?),
                Tok::Num(f, min, max) => {
                    let v = c.digits_range(*min, *max)?;
                    match f {
                        Field::Month => p.month = v,
                        Field::Day => p.day = v,
                        Field::Hour24 => p.hour = v,
                        Field::Hour12 => hour12 = Some(v),
                        Field::Minute => p.minute = v,
                        Field::Second => p.second = v,
                    }
                }
                Tok::MonthShort | Tok::MonthLong => {
                    let rest = &text[c.i..];
                    let (idx, len) = MONTHS.iter().enumerate().find_map(|(k, name)| {
                        let len = if *tok == Tok::MonthShort {
                            3
                        } else {
                            name.len()
                        };
                        rest.get(..len)
                            .filter(|s| s.eq_ignore_ascii_case(&name[..len]))
                            .map(|_| (k, len))
                    })?;
                    p.month = idx as u32 + 1;
                    c.i += len;
                }
                Tok::WeekdayShort | Tok::WeekdayLong => {
                    let rest = &text[c.i..];
                    let len = WEEKDAYS.iter().find_map(|name| {
                        let len = if *tok == Tok::WeekdayShort {
                            3
                        } else {
                            name.len()
                        };
                        rest.get(..len)
                            .filter(|s| s.eq_ignore_ascii_case(&name[..len]))
                            .map(|_| len)
                    })?;
                    c.i += len;
                }
                Tok::AmPm => {
                    let rest = text.get(c.i..c.i + 2)?;
                    pm = Some(if rest.eq_ignore_ascii_case("PM") {
                        true
                    } else if rest.eq_ignore_ascii_case("AM") {
                        false
                    } else {
                        return None;
                    });
                    c.i += 2;
                }
                Tok::Fraction(n) => p.millis = c.fraction_ms(*n, *n)?,
                Tok::Offset(z, colon) => p.offset_s = c.offset(*z, *colon)?,
            }
        }
        if !c.done() {
            return None;
        }
        if let Some(h) = hour12 {
            if !(1..=12).contains(&h) {
                return None;
            }
            p.hour = match pm {
                Some(true) => h % 12 + 12,
                _ => h % 12,
            };
        }
        p.to_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_forms() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01", Some(0)),
            ("2024-02-29", Some(1_709_164_800_000)),
            ("2023-05-01 00:00:07.123000", Some(1_682_899_207_123)),
            ("2023-05-01T00:00:07.1239Z", Some(1_682_899_207_123)),
            ("2023-05-01T02:00:07+02:00", Some(1_682_899_207_000)),
            ("2023-05-01T02:00:07+0200", Some(1_682_899_207_000)),
            ("2023-05-01T02:00:07+02", Some(1_682_899_207_000)),
            ("2023-04-30T22:00-02:00", Some(1_682_899_200_000)),
            ("2023-05-01T00:00", Some(1_682_899_200_000)),
            ("2023-02-29", None),
            ("2023-05-01T00", None),
            ("2023-05-01T00:00:07.", None),
            ("2023-05-01T00:00:07.1234567891", None),
            ("2023-05-01T00:00:07 Z", None),
            ("2023-5-01", None),
            ("1682899207123", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(iso_to_ms(text), *want, "{text}");
        }
    }

    #[test]
    fn iso_round_trip_and_bounds() {
        assert_eq!(
            ms_to_iso(1_682_899_207_123).unwrap(),
            "2023-05-01T00:00:07.123Z"
        );
        assert_eq!(ms_to_iso(-1).unwrap(), "1969-12-31T23:59:59.999Z");
        assert_eq!(ms_to_iso(i64::MAX), None);
        for ms in [0, 951_782_400_000, 4_102_444_800_000, -62_135_596_800_000] {
            assert_eq!(iso_to_ms(&ms_to_iso(ms).unwrap()), Some(ms));
        }
    }

    #[test]
    fn int96_test_vector() {
        assert_eq!(int96_to_ms("AP6qCz41AAAwhCUA"), Some(1_562_516_140_600));
        assert_eq!(int96_to_ms("AAAA"), None);
        assert_eq!(int96_to_ms("not base64!"), None);
    }

    #[test]
    fn java_patterns() {
        let p = |pat: &str, text: &str| TimePattern::compile(pat).unwrap().parse_ms(text);
        assert_eq!(
            p("M/d/yyyy H:mm:ss", "1/1/2021 5:06:07"),
            Some(1_609_477_567_000)
        );
        assert_eq!(
            p("dd MMM yyyy hh:mm a", "03 Feb 2021 01:30 PM"),
            Some(1_612_359_000_000)
        );
        assert_eq!(
            p("dd MMM yyyy hh:mm a", "03 Feb 2021 12:30 AM"),
            Some(1_612_312_200_000)
        );
        assert_eq!(
            p("EEEE, MMMM d, yy", "Wednesday, February 3, 21"),
            Some(1_612_310_400_000)
        );
        assert_eq!(
            p("yyyyMMddHHmmssSSS", "20210203133000250"),
            Some(1_612_359_000_250)
        );
        assert_eq!(
            p("yyyy-MM-dd'T'HH:mm:ssXXX", "2021-02-03T15:30:00+02:00"),
            Some(1_612_359_000_000)
        );
        assert_eq!(
            p("yyyy-MM-dd'T'HH:mm:ssXXX", "2021-02-03T13:30:00Z"),
            Some(1_612_359_000_000)
        );
        assert_eq!(
            p("yyyy-MM-dd HH:mm:ss Z", "2021-02-03 08:30:00 -0500"),
            Some(1_612_359_000_000)
        );
        assert_eq!(p("''yyyy''", "'2021'"), Some(1_609_459_200_000));
        assert_eq!(p("yyyy-MM-dd", "2021-02-30"), None);
        assert_eq!(p("yyyy-MM-dd", "2021-02-03 extra"), None);
        assert!(TimePattern::compile("yyyy-MM-dd QQ").is_err());
        assert!(TimePattern::compile("yyyy 'open").is_err());
    }
}
