//! The fast path of record parsing: a strict JSON reader over text already checked as UTF-8.
//!
//! serde_json's deserializer drives a visitor per token and re-checks every string; on the
//! hot path (valid analytics events, a handful of wanted keys) that machinery is most of the
//! cost of reading a record. This reader walks the bytes itself: strings are found eight bytes
//! at a time, unwanted values are skipped with full validation, wanted ones are built as
//! borrowing [`V`]s.
//!
//! It never has to explain a failure: on anything it does not accept (a syntax error, a lone
//! surrogate, nesting deeper than [`MAX_DEPTH`]) it gives up with `None` and the caller
//! parses the text again with serde_json, which produces the verdict and the message. So the
//! only rule it must keep is: accept nothing serde_json rejects, and build the same value
//! serde_json would (`tests` compares both on mutated inputs).

use std::borrow::Cow;

use super::record::{dedupe_keys, KeyIds, Num, Record, Spare, NO_SLOT, V};

/// Deeper nesting is left to serde_json (whose own limit is 128).
const MAX_DEPTH: usize = 100;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in each of the 8 bytes that ends or escapes a JSON string or
/// may not appear in one (`"`, `\`, a control character). The lowest set bit is exact (the
/// borrow tricks can only add false bits above a true one), so it locates the first such byte.
#[inline]
fn special_mask(word: u64) -> u64 {
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let control = word.wrapping_sub(LO * 0x20) & !word & HI;
    control | has_zero(word ^ (LO * b'"' as u64)) | has_zero(word ^ (LO * b'\\' as u64))
}

/// Whether any of the 8 bytes is `"`, `\` or a control character.
#[inline]
pub fn special_in_string(word: u64) -> bool {
    special_mask(word) != 0
}

/// The index of the first `"`, `\` or control character in `bytes` at or after `from`.
#[inline]
pub fn find_special(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(word) = bytes.get(i..i + 8) {
        let mask = special_mask(u64::from_le_bytes(word.try_into().ok()?));
        if mask != 0 {
            return Some(i + (mask.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A position in the text of one JSON document.
struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    i: usize,
}

/// `None`: not accepted here; serde_json decides.
type Got<T> = Option<T>;

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Self {
        Scan {
            text,
            bytes: text.as_bytes(),
            i: 0,
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, b: u8) -> Got<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// Moves to the first `"`, `\` or control character at or after `i`.
    #[inline]
    fn seek_special(&mut self) -> Got<u8> {
        self.i = find_special(self.bytes, self.i)?;
        Some(self.bytes[self.i])
    }

    /// A string; `i` is at its opening quote.
    #[inline(always)]
    fn string(&mut self) -> Got<Cow<'a, str>> {
        self.i += 1;
        let start = self.i;
        match self.seek_special()? {
            b'"' => {
                // Both ends are next to ASCII quotes, so on character boundaries.
                let s = &self.text[start..self.i];
                self.i += 1;
                Some(Cow::Borrowed(s))
            }
            b'\\' => {
                let mut owned = String::with_capacity(self.i - start + 16);
                owned.push_str(self.text.get(start..self.i)?);
                self.unescape_rest(&mut owned)?;
                Some(Cow::Owned(owned))
            }
            _ => None,
        }
    }

    /// Continues a string at a backslash, appending to `out` up to and past the closing quote.
    #[cold]
    fn unescape_rest(&mut self, out: &mut String) -> Got<()> {
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    let c = match *self.bytes.get(self.i + 1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            self.i += 2;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => return None,
                    };
                    out.push(c);
                    self.i += 2;
                }
                b if b < 0x20 => return None,
                _ => {
                    let start = self.i;
                    self.seek_special()?;
                    out.push_str(self.text.get(start..self.i)?);
                }
            }
        }
    }

    fn hex4(&mut self) -> Got<u32> {
        let digits = self.bytes.get(self.i..self.i + 4)?;
        let mut n = 0u32;
        for &d in digits {
            n = n * 16 + char::from(d).to_digit(16)?;
        }
        self.i += 4;
        Some(n)
    }

    /// After `\u`: a BMP character or a surrogate pair; lone surrogates go to serde_json.
    fn unicode_escape(&mut self) -> Got<char> {
        let first = self.hex4()?;
        if (0xDC00..0xE000).contains(&first) {
            return None;
        }
        if !(0xD800..0xDC00).contains(&first) {
            return char::from_u32(first);
        }
        if self.bytes.get(self.i..self.i + 2)? != b"\\u" {
            return None;
        }
        self.i += 2;
        let second = self.hex4()?;
        if !(0xDC00..0xE000).contains(&second) {
            return None;
        }
        char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
    }

    #[inline(always)]
    fn skip_string(&mut self) -> Got<()> {
        self.i += 1;
        loop {
            match self.seek_special()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    match *self.bytes.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            self.i += 2;
                            self.unicode_escape()?;
                        }
                        _ => return None,
                    };
                }
                _ => return None,
            }
        }
    }

    /// The extent of a number per the JSON grammar; whether it is a plain integer.
    fn number_extent(&mut self) -> Got<bool> {
        let digits = |s: &mut Self| {
            let start = s.i;
            while let Some(b'0'..=b'9') = s.peek() {
                s.i += 1;
            }
            s.i > start
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            integer = false;
            if !digits(self) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(integer)
    }

    fn number(&mut self) -> Got<Num> {
        let start = self.i;
        let integer = self.number_extent()?;
        number_value(self.text.get(start..self.i)?, integer)
    }

    fn literal(&mut self, word: &[u8]) -> Got<()> {
        (self.bytes.get(self.i..self.i + word.len())? == word).then(|| self.i += word.len())
    }

    fn value(&mut self, depth: usize) -> Got<V<'a>> {
        match self.peek()? {
            b'"' => self.string().map(V::Str),
            b'{' => {
                let depth = depth.checked_sub(1)?;
                self.i += 1;
                let mut entries = Vec::new();
                self.ws();
                if self.eat(b'}').is_none() {
                    loop {
                        if self.peek()? != b'"' {
                            return None;
                        }
                        let k = self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                        let v = self.value(depth)?;
                        entries.push((k, v));
                        self.ws();
                        match self.peek()? {
                            b',' => {
                                self.i += 1;
                                self.ws();
                            }
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                dedupe_keys(&mut entries);
                Some(V::Obj(entries))
            }
            b'[' => {
                let depth = depth.checked_sub(1)?;
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat(b']').is_none() {
                    loop {
                        items.push(self.value(depth)?);
                        self.ws();
                        match self.peek()? {
                            b',' => {
                                self.i += 1;
                                self.ws();
                            }
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Some(V::Arr(items))
            }
            b't' => self.literal(b"true").map(|()| V::Bool(true)),
            b'f' => self.literal(b"false").map(|()| V::Bool(false)),
            b'n' => self.literal(b"null").map(|()| V::Null),
            _ => self.number().map(V::Num),
        }
    }

    /// Validates a value without building it.
    fn skip(&mut self, depth: usize) -> Got<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            open @ (b'{' | b'[') => {
                let depth = depth.checked_sub(1)?;
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                self.ws();
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        if self.peek()? != b'"' {
                            return None;
                        }
                        self.skip_string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip(depth)?;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            self.ws();
                        }
                        b if b == close => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number_extent().map(drop),
        }
    }

    /// Only white space may follow the document.
    fn end(&mut self) -> Got<()> {
        self.ws();
        (self.i == self.bytes.len()).then_some(())
    }
}

/// A whole JSON document as a value.
/// The value of a number token (`integer`: no fraction and no exponent), as converter.md §1
/// says: an integer that fits 64 bits (signed or unsigned) stays that integer; any other number
/// is the double nearest its text, correctly rounded (the standard library's parser is exact).
/// `None` for a number beyond the double range (`1e400`), which serde_json then rejects.
pub(super) fn number_value(text: &str, integer: bool) -> Option<Num> {
    if integer && text != "-0" {
        let digits = text.strip_prefix('-').unwrap_or(text);
        // Up to 18 digits always fit an i64.
        if digits.len() <= 18 {
            return text.parse::<i64>().ok().map(Num::I);
        }
        if let Ok(i) = text.parse::<i64>() {
            return Some(Num::I(i));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Some(Num::U(u));
        }
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Num::F)
}

pub(super) fn value(text: &str) -> Option<V<'_>> {
    let mut s = Scan::new(text);
    s.ws();
    let v = s.value(MAX_DEPTH)?;
    s.end()?;
    Some(v)
}

/// A record (a JSON object) keeping only the keys in `ids`; a slot marked in `raw` keeps an
/// object or array value as its text. Its entries and slot table are built in `spare`'s
/// memory (emptied first).
pub(super) fn record<'a>(
    text: &'a str,
    ids: &KeyIds,
    raw: &[bool],
    spare: Spare<'a>,
) -> Option<Record<'a>> {
    let mut s = Scan::new(text);
    s.ws();
    s.eat(b'{')?;
    let Spare {
        mut entries,
        mut slots,
    } = spare;
    entries.clear();
    entries.reserve(ids.len());
    slots.clear();
    slots.resize(ids.len(), NO_SLOT);
    s.ws();
    if s.eat(b'}').is_none() {
        loop {
            if s.peek()? != b'"' {
                return None;
            }
            let k = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            match ids.get(k.as_ref()) {
                Some(id) => {
                    let v = if raw[id as usize] && matches!(s.peek()?, b'{' | b'[') {
                        let start = s.i;
                        s.skip(MAX_DEPTH)?;
                        V::Raw(text.get(start..s.i)?)
                    } else {
                        s.value(MAX_DEPTH)?
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
                None => s.skip(MAX_DEPTH)?,
            }
            s.ws();
            match s.peek()? {
                b',' => {
                    s.i += 1;
                    s.ws();
                }
                b'}' => {
                    s.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    s.end()?;
    Some(Record::with_slots(V::Obj(entries), slots))
}

/// The text of one member of a JSON object or array kept as text (`V::Raw`): the last value
/// of `key` in an object (as parsing it whole would keep), element `key` of an array. `text`
/// was validated when it was read, so only what is needed is looked at, and nothing is built.
pub(super) fn member<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut s = Scan::new(text);
    s.ws();
    match s.peek()? {
        b'{' => {
            s.i += 1;
            s.ws();
            let mut found = None;
            while s.peek()? == b'"' {
                let k = s.string()?;
                s.ws();
                s.eat(b':')?;
                s.ws();
                let start = s.i;
                s.skip(MAX_DEPTH)?;
                if k == key {
                    found = Some(text.get(start..s.i)?);
                }
                s.ws();
                if s.eat(b',').is_none() {
                    break;
                }
                s.ws();
            }
            found
        }
        b'[' => {
            let index: usize = key.parse().ok()?;
            s.i += 1;
            for _ in 0..index {
                s.ws();
                s.skip(MAX_DEPTH)?;
                s.ws();
                s.eat(b',')?;
            }
            s.ws();
            let start = s.i;
            s.skip(MAX_DEPTH)?;
            text.get(start..s.i)
        }
        _ => None,
    }
}

/// A record keeping every key.
pub(super) fn whole_record(text: &str) -> Option<Record<'_>> {
    let first = text.bytes().find(|b| !b.is_ascii_whitespace())?;
    if first != b'{' {
        return None;
    }
    value(text).map(Record::new)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod numbers;
