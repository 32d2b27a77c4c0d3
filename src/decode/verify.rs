//! Integrity before anything is sent: a compressed object is inflated once to its end, every
//! gzip member's and zstd frame's checksum checked, before its first record is converted.

use std::io::{BufReader, Cursor, Read};

use super::compress::{decompress, detect, read_magic};
use super::{classify, DecodeError, Limits};
use crate::config::Compression;

/// What a verification pass found.
pub enum Verified {
    /// Not compressed: nothing to check; the reader, unread but for the bytes it hands back.
    Plain(Box<dyn Read + Send>),
    /// Compressed, and every checksum matched; the decompressed size.
    Intact(u64),
}

/// Reads `raw` as the converter's `compression` says and checks its integrity. A corrupt or
/// truncated stream, or one past the limits, is the same error the import would meet later.
pub fn verify<R: Read + Send + 'static>(
    raw: R,
    compression: Compression,
    limits: Limits,
) -> Result<Verified, DecodeError> {
    let mut raw = BufReader::new(raw);
    let prefix = read_magic(&mut raw)?;
    let plain = match compression {
        Compression::None => true,
        Compression::Auto => detect(&prefix) == Compression::None,
        _ => false,
    };
    if plain {
        return Ok(Verified::Plain(Box::new(Cursor::new(prefix).chain(raw))));
    }
    let mut inflated = decompress(Cursor::new(prefix).chain(raw), compression, limits)?;
    let counter = inflated.counter();
    std::io::copy(&mut inflated, &mut std::io::sink()).map_err(|e| classify(e, counter.get()))?;
    Ok(Verified::Intact(counter.get()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// The decompressed size, "plain", or the error's text.
    fn check(data: &[u8], c: Compression) -> Result<u64, String> {
        match verify(Cursor::new(data.to_vec()), c, Limits::default()) {
            Ok(Verified::Intact(n)) => Ok(n),
            Ok(Verified::Plain(mut r)) => {
                let mut back = Vec::new();
                r.read_to_end(&mut back).unwrap();
                assert_eq!(back, data, "a plain object is handed back whole");
                Err("plain".into())
            }
            Err(e) => {
                assert!(!e.is_retryable(), "corrupt data is permanent: {e}");
                Err(e.to_string())
            }
        }
    }

    #[test]
    fn flipped_bytes_in_the_middle_of_a_gzip_fail_before_any_record() {
        let lines: String = (0..20_000)
            .map(|i| format!("{{\"id\":\"e-{i}\",\"type\":\"t\"}}\n"))
            .collect();
        let good = gzip(lines.as_bytes());
        assert_eq!(check(&good, Compression::Auto), Ok(lines.len() as u64));
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 64] {
            *b ^= 0x5a;
        }
        let err = check(&bad, Compression::Auto).unwrap_err();
        assert!(err.contains("gzip"), "{err}");
        assert!(
            check(&good[..good.len() - 10], Compression::Gzip).is_err(),
            "truncated"
        );
        let zstd = zstd::encode_all(lines.as_bytes(), 1).unwrap();
        assert_eq!(check(&zstd, Compression::Auto), Ok(lines.len() as u64));
        assert!(
            check(&zstd[..zstd.len() - 10], Compression::Zstd).is_err(),
            "truncated"
        );
        assert_eq!(
            check(lines.as_bytes(), Compression::Auto),
            Err("plain".into())
        );
        assert_eq!(check(b"{}", Compression::None), Err("plain".into()));
    }
}
