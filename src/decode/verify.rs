//! Integrity before anything is sent: a compressed object is inflated once to its end, every
//! gzip member's and zstd frame's checksum checked, before its first record is converted. The
//! pass watches the invocation's deadline: it stops in time rather than run into it.

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
    /// Compressed, and `stop` came before the end: nothing is known yet; the bytes inflated.
    Stopped(u64),
}

/// Bytes inflated between two looks at the clock.
const CHUNK: usize = 256 << 10;

/// Reads `raw` as the converter's `compression` says and checks its integrity, until `stop`
/// if given (`Stopped` then). A corrupt or truncated stream, or one past the limits, is the
/// same error the import would meet later.
pub fn verify<R: Read + Send + 'static>(
    raw: R,
    compression: Compression,
    limits: Limits,
    stop: Option<std::time::Instant>,
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
    let mut buf = vec![0u8; CHUNK];
    loop {
        if stop.is_some_and(|t| std::time::Instant::now() >= t) {
            return Ok(Verified::Stopped(counter.get()));
        }
        match inflated.read(&mut buf) {
            Ok(0) => return Ok(Verified::Intact(counter.get())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(classify(e, counter.get())),
        }
    }
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
        match verify(Cursor::new(data.to_vec()), c, Limits::default(), None) {
            Ok(Verified::Intact(n)) => Ok(n),
            Ok(Verified::Stopped(n)) => panic!("stopped after {n} bytes without a stop"),
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

    /// A slow reader: `chunk` bytes a read, `pause` before each.
    struct Slow {
        data: Cursor<Vec<u8>>,
        chunk: usize,
        pause: std::time::Duration,
    }

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.pause);
            let n = buf.len().min(self.chunk);
            self.data.read(&mut buf[..n])
        }
    }

    #[test]
    fn the_pass_stops_at_its_deadline_instead_of_running_into_it() {
        let lines: String = (0..50_000)
            .map(|i| format!("{{\"id\":\"e-{i}\",\"n\":{}}}\n", i * 7919 % 100_003))
            .collect();
        let data = gzip(lines.as_bytes());
        let slow = Slow {
            data: Cursor::new(data.clone()),
            chunk: 4096,
            pause: std::time::Duration::from_millis(5),
        };
        // About 5 ms per 4 KiB: the whole object takes far longer than the 150 ms allowed.
        let started = std::time::Instant::now();
        let stop = started + std::time::Duration::from_millis(150);
        match verify(slow, Compression::Auto, Limits::default(), Some(stop)) {
            Ok(Verified::Stopped(n)) => assert!(n < lines.len() as u64, "{n}"),
            Ok(Verified::Intact(_)) => panic!("finished: the reader is not slow enough"),
            Ok(Verified::Plain(_)) => panic!("plain"),
            Err(e) => panic!("{e}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_millis(400));
        // With time enough, the same object checks whole.
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        assert!(matches!(
            verify(Cursor::new(data), Compression::Auto, Limits::default(), Some(later)),
            Ok(Verified::Intact(n)) if n == lines.len() as u64
        ));
    }
}
