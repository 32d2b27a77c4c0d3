//! Writing values and payloads as JSON text, fast: this runs once per output field.
//!
//! serde_json's serializer escapes byte by byte through a formatter; here strings are scanned
//! eight bytes at a time for the three things JSON must escape, and most are copied whole.

use crate::datalang::{find_special, special_in_string, Num, V};

/// Separators: compact (`,` `:`) for the wire, spaced (`, ` `: `) for the CLI contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Compact,
    Spaced,
}

impl Style {
    /// Fixed-length literals per arm, so each append is a store rather than a `memcpy` call.
    #[inline]
    fn comma(self, out: &mut Vec<u8>) {
        match self {
            Style::Compact => out.push(b','),
            Style::Spaced => out.extend_from_slice(b", "),
        }
    }
    #[inline]
    fn colon(self, out: &mut Vec<u8>) {
        match self {
            Style::Compact => out.push(b':'),
            Style::Spaced => out.extend_from_slice(b": "),
        }
    }
}

/// Whether a string needs no escaping, checked eight bytes at a time (the last word overlaps
/// the one before it). Most strings in analytics events are like this and are copied whole.
#[inline]
fn plain(bytes: &[u8]) -> bool {
    let n = bytes.len();
    if n < 8 {
        // One word made of the string's bytes (the middle ones read twice where they
        // overlap) and spaces: no branch per byte.
        let half = |w: &[u8]| u64::from(u32::from_le_bytes(w.try_into().unwrap_or([0; 4])));
        let word = match n {
            0 => return true,
            1..=3 => {
                let b = |i: usize| u64::from(bytes[i]);
                b(0) | b(n / 2) << 8 | b(n - 1) << 16 | 0x2020_2020_2000_0000
            }
            _ => half(&bytes[..4]) | half(&bytes[n - 4..]) << 32,
        };
        return !special_in_string(word);
    }
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
    let mut words = bytes.chunks_exact(8);
    if words.by_ref().any(|w| special_in_string(word(w))) {
        return false;
    }
    !special_in_string(word(&bytes[bytes.len() - 8..]))
}

/// Appends `s` as a JSON string.
#[inline(always)]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if plain(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        write_escaped(out, bytes);
    }
}

/// [`write_str`] for a string with something to escape.
#[inline(never)]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(i) = find_special(bytes, start) {
        out.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_num(out: &mut Vec<u8>, n: Num) {
    match n {
        Num::I(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Num::U(u) => out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
        // serde_json's float text, so output matches what serde would write.
        Num::F(f) if f.is_finite() => {
            let _ = serde_json::to_writer(&mut *out, &f);
        }
        Num::F(_) => out.extend_from_slice(b"null"),
        Num::D(d) => out.extend_from_slice(d.text().as_bytes()),
    }
}

/// Appends `v` as JSON.
pub fn write_value(out: &mut Vec<u8>, v: &V<'_>, style: Style) {
    match v {
        V::Null => out.extend_from_slice(b"null"),
        V::Bool(true) => out.extend_from_slice(b"true"),
        V::Bool(false) => out.extend_from_slice(b"false"),
        V::Num(n) => write_num(out, *n),
        V::Wide(text) => out.extend_from_slice(text.as_bytes()),
        V::Str(s) => write_str(out, s),
        V::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    style.comma(out);
                }
                write_value(out, item, style);
            }
            out.push(b']');
        }
        V::Obj(entries) => write_object(out, entries.iter().map(|(k, v)| (k.as_ref(), v)), style),
        V::Raw(text) => write_raw(out, text, style),
    }
}

/// Copies validated JSON text, dropping white space outside strings and writing the style's
/// separators; strings (escapes included) are copied as they are. Bytes go out in runs that
/// end only where the output differs from the text (white space dropped, a separator spaced),
/// so compact text, as exports have it, is copied whole in [`Style::Compact`].
fn write_raw(out: &mut Vec<u8>, text: &str, style: Style) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + bytes.len() / 8);
    // The first byte not copied yet.
    let mut run = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i = past_string(bytes, i + 1);
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                append_run(out, bytes, run, i);
                run = i + 1;
            }
            b',' | b':' if style == Style::Spaced => {
                append_run(out, bytes, run, i + 1);
                out.push(b' ');
                run = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

/// Appends `bytes[start..end]`. Runs between separators are short (`"price":`), and a copy of
/// a length known only at run time is a `memcpy` call: one of up to 16 bytes is instead copied
/// as 16 fixed bytes (two moves) when the text has them, and the excess cut off again.
#[inline(always)]
fn append_run(out: &mut Vec<u8>, bytes: &[u8], start: usize, end: usize) {
    match bytes[start..].first_chunk::<16>() {
        Some(word) if end - start <= 16 => {
            out.extend_from_slice(word);
            out.truncate(out.len() - (16 - (end - start)));
        }
        _ => out.extend_from_slice(&bytes[start..end]),
    }
}

/// Past the closing quote of a string of validated text whose contents start at `i`: the
/// closing quote is the first `"` that no backslash escapes, and there are no control
/// characters, so every special byte is a quote or a backslash.
#[inline]
fn past_string(bytes: &[u8], mut i: usize) -> usize {
    loop {
        match find_special(bytes, i) {
            Some(j) if bytes[j] == b'\\' => i = j + 2,
            Some(j) => return j + 1,
            None => return bytes.len(),
        }
    }
}

/// Appends an object of `(key, value)` pairs.
pub fn write_object<'v, 'a: 'v>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'v str, &'v V<'a>)>,
    style: Style,
) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            style.comma(out);
        }
        write_str(out, k);
        style.colon(out);
        write_value(out, v, style);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datalang::value::parse_value;

    #[test]
    fn strings_match_serde_json_escaping() {
        let samples = [
            "",
            "plain",
            "quote\"inside",
            "back\\slash",
            "tab\there",
            "nl\nand\rcr",
            "\u{1}\u{1f}\u{7f}",
            "unicode é→🚀",
            "long string without anything to escape at all, really",
            "12345678\"",
            "\u{8}\u{c}",
            "1234567\\",
            "ascii then é then \"",
        ];
        // Short strings (checked as one word) with something to escape at every place.
        let short: Vec<String> = (1..8)
            .flat_map(|n| {
                ["\"", "\\", "\n", "\u{1f}", "é"]
                    .into_iter()
                    .flat_map(move |c| {
                        (0..n).map(move |i| {
                            let mut s = "abcdefg"[..n - 1].to_string();
                            s.insert_str(i.min(s.len()), c);
                            s
                        })
                    })
            })
            .collect();
        for s in samples
            .iter()
            .copied()
            .chain(short.iter().map(String::as_str))
        {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn raw_text_is_normalised_like_a_tree() {
        let text = "{ \"a\" : [1, 2.5 ,\"x, y: \\\"z\\\\\"],\n\t\"b\":{}, \"c\" : \"\\u00e9\" }";
        for style in [Style::Compact, Style::Spaced] {
            let mut raw = Vec::new();
            write_value(&mut raw, &V::Raw(text), style);
            let mut tree = Vec::new();
            write_value(&mut tree, &parse_value(text).unwrap(), style);
            let raw = String::from_utf8(raw).unwrap();
            // Identical but for the escape of "é", which raw text keeps as it was written.
            assert_eq!(
                raw.replace("\\u00e9", "é"),
                String::from_utf8(tree).unwrap(),
                "{raw}"
            );
        }
    }

    #[test]
    fn values_match_serde_json() {
        let text = r#"{"a":[1,-2,2.5,1e+300,true,false,null],"b":{"c":"d\n","e":{}},"f":[],"g":18446744073709551615}"#;
        let v = parse_value(text).unwrap();
        let mut out = Vec::new();
        write_value(&mut out, &v, Style::Compact);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
        let mut spaced = Vec::new();
        write_value(
            &mut spaced,
            &parse_value(r#"{"a":[1,{"b":2}]}"#).unwrap(),
            Style::Spaced,
        );
        assert_eq!(
            String::from_utf8(spaced).unwrap(),
            r#"{"a": [1, {"b": 2}]}"#
        );
    }
}
