//! Integrity in the same pass as reading: inflated bytes are held back until the checksum of
//! their gzip member or zstd frame is confirmed, so a record of damaged data is never handed
//! on, and the object is inflated (and downloaded) once.
//!
//! What is held waits in memory, then, past [`MEMORY`], in a file of the temporary folder
//! (Lambda's ephemeral storage), at most [`Hold::max_bytes`]: a single-stream object is held
//! whole, an object of many members or frames one member at a time.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::time::Instant;

use super::compress::Counter;

/// How inflated data is held back until its checksum is confirmed.
#[derive(Clone, Copy, Debug)]
pub struct Hold {
    /// Bytes of one member or frame that may wait for their checksum; past it the reading
    /// fails with [`HoldError::Full`] (the caller checks such an object by a pass of its own).
    pub max_bytes: u64,
    /// While filling, the reading stops here ([`HoldError::Stopped`]) rather than run into
    /// the deadline: a large member can take long to inflate before anything comes out.
    pub stop: Option<Instant>,
}

/// Why held reading stopped.
#[derive(Debug)]
pub(crate) enum HoldError {
    Full { limit: u64 },
    Stopped { held: u64 },
}

impl std::fmt::Display for HoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            HoldError::Full { limit } => write!(f, "more than {limit} bytes held back"),
            HoldError::Stopped { held } => write!(f, "stopped with {held} bytes held back"),
        }
    }
}
impl std::error::Error for HoldError {}

/// Held bytes kept in memory before the rest goes to a file.
const MEMORY: usize = 8 << 20;
/// Bytes inflated per step (and between two looks at the clock).
const STEP: usize = 256 << 10;

/// A decompressed stream that hands out only bytes whose member or frame checked out.
pub(crate) struct Held<R> {
    inner: R,
    /// Decompressed offset up to which every member or frame has ended with its checksum
    /// checked (the codec moves it).
    confirmed: Counter,
    /// Bytes read from `inner`, and handed out.
    pulled: u64,
    released: u64,
    /// `inner` ended: every byte pulled is confirmed.
    ended: bool,
    hold: Hold,
    spool: Spool,
}

impl<R: Read> Held<R> {
    pub(crate) fn new(inner: R, confirmed: Counter, hold: Hold) -> Self {
        Self::with_memory(inner, confirmed, hold, MEMORY)
    }

    fn with_memory(inner: R, confirmed: Counter, hold: Hold, memory: usize) -> Self {
        Held {
            inner,
            confirmed,
            pulled: 0,
            released: 0,
            ended: false,
            hold,
            spool: Spool::new(memory),
        }
    }

    fn ready(&self) -> u64 {
        let upto = if self.ended {
            self.pulled
        } else {
            self.confirmed.get().min(self.pulled)
        };
        upto.saturating_sub(self.released)
    }
}

impl<R: Read> Read for Held<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let ready = self.ready();
            if ready > 0 || buf.is_empty() {
                let want = buf.len().min(usize::try_from(ready).unwrap_or(usize::MAX));
                let n = self.spool.take(&mut buf[..want])?;
                self.released += n as u64;
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            let held = self.pulled - self.released;
            if held >= self.hold.max_bytes {
                return Err(io::Error::other(HoldError::Full {
                    limit: self.hold.max_bytes,
                }));
            }
            if self.hold.stop.is_some_and(|t| Instant::now() >= t) {
                return Err(io::Error::other(HoldError::Stopped { held }));
            }
            let n = self.spool.fill(&mut self.inner)?;
            self.pulled += n as u64;
            self.ended = n == 0;
        }
    }
}

/// A queue of bytes: a window of memory, and a file once more is held than fits there.
struct Spool {
    mem: Vec<u8>,
    start: usize,
    end: usize,
    /// In use while it holds bytes: everything new is appended to it until it is drained.
    file: Option<File>,
    file_read: u64,
    file_len: u64,
    /// The file, kept (emptied) for the next member that needs it.
    spare: Option<File>,
}

impl Spool {
    fn new(memory: usize) -> Spool {
        Spool {
            mem: vec![0; memory.max(STEP)],
            start: 0,
            end: 0,
            file: None,
            file_read: 0,
            file_len: 0,
            spare: None,
        }
    }

    /// Reads one step from `from`; the bytes read (0 at its end).
    fn fill(&mut self, from: &mut impl Read) -> io::Result<usize> {
        if self.file.is_none() && self.mem.len() - self.end < STEP {
            self.mem.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.mem.len() - self.end < STEP {
                // The memory is full of bytes not yet confirmed: they and all that follows
                // go to the file, in order.
                let mut file = match self.spare.take() {
                    Some(f) => f,
                    None => temp_file()?,
                };
                file.seek(SeekFrom::Start(0))?;
                file.write_all(&self.mem[..self.end])?;
                self.file_len = self.end as u64;
                self.file_read = 0;
                self.file = Some(file);
                self.end = 0;
            }
        }
        let Some(file) = &mut self.file else {
            let n = read_some(from, &mut self.mem[self.end..self.end + STEP])?;
            self.end += n;
            return Ok(n);
        };
        let n = read_some(from, &mut self.mem[..STEP])?;
        file.seek(SeekFrom::Start(self.file_len))?;
        file.write_all(&self.mem[..n])?;
        self.file_len += n as u64;
        Ok(n)
    }

    /// Hands out up to `buf.len()` held bytes, in order (the caller asks only for held ones).
    fn take(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(file) = &mut self.file else {
            let n = buf.len().min(self.end - self.start);
            buf[..n].copy_from_slice(&self.mem[self.start..self.start + n]);
            self.start += n;
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            }
            return Ok(n);
        };
        file.seek(SeekFrom::Start(self.file_read))?;
        let want = buf.len().min((self.file_len - self.file_read) as usize);
        file.read_exact(&mut buf[..want])?;
        self.file_read += want as u64;
        if self.file_read == self.file_len {
            // Drained: back to memory; the file's pages are given back.
            file.set_len(0)?;
            self.spare = self.file.take();
        }
        Ok(want)
    }
}

fn read_some(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match from.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A new file in the temporary folder that no other process finds: removed from its folder
/// at once where the system allows (it lives on while open).
fn temp_file() -> io::Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("s3-import-held-{}-{n}", std::process::id()));
        match File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                let _ = std::fs::remove_file(&path);
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Compression;
    use crate::decode::{classify, decompress, DecodeError, Limits};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// 4,000 lines per member: member `m` holds lines `m-0` … `m-3999`.
    fn member_text(m: usize) -> Vec<u8> {
        (0..4000)
            .map(|i| {
                format!(
                    "{{\"line\":\"{m}-{i}\",\"pad\":\"{}\"}}\n",
                    i * 7919 % 10007
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    fn limits(max_bytes: u64) -> Limits {
        Limits {
            hold: Some(Hold {
                max_bytes,
                stop: None,
            }),
            ..Limits::default()
        }
    }

    /// What came out before the end or the error, and the error.
    fn read_held(data: &[u8], c: Compression, limits: Limits) -> (Vec<u8>, Option<DecodeError>) {
        let mut input = decompress(data, c, limits).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 10_000];
        loop {
            match input.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(classify(e, 0))),
            }
        }
    }

    #[test]
    fn nothing_of_a_damaged_member_comes_out_and_the_members_before_it_do() {
        let members: Vec<Vec<u8>> = (0..5).map(member_text).collect();
        let mut packed: Vec<Vec<u8>> = members.iter().map(|m| gzip(m)).collect();
        let whole = packed.concat();
        let (out, err) = read_held(&whole, Compression::Auto, limits(64 << 20));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out, members.concat(), "intact: everything, in order");

        // A flipped byte in the CRC of member 3: its data inflates fine, only the checksum
        // tells. Without holding, its records would come out before the error.
        let m3 = &mut packed[3];
        let crc = m3.len() - 8;
        m3[crc] ^= 0x01;
        let damaged = packed.concat();
        let (out, err) = read_held(&damaged, Compression::Gzip, limits(64 << 20));
        assert!(matches!(err, Some(DecodeError::Corrupt { .. })), "{err:?}");
        assert_eq!(out, members[..3].concat(), "members 0–2 and nothing of 3");
        let (out, err) = read_held(&damaged, Compression::Gzip, Limits::default());
        assert!(err.is_some());
        assert!(
            out.len() > members[..4].concat().len() - 100,
            "unheld: member 3 came out"
        );

        // One stream: nothing at all comes out of a damaged one.
        let mut single = gzip(&members.concat());
        let crc = single.len() - 8;
        single[crc] ^= 0x01;
        let (out, err) = read_held(&single, Compression::Gzip, limits(64 << 20));
        assert!(
            err.is_some() && out.is_empty(),
            "{} bytes came out",
            out.len()
        );
        // Truncated: the last member never ends, so it never comes out.
        let (out, err) = read_held(
            &whole[..whole.len() - 3],
            Compression::Gzip,
            limits(64 << 20),
        );
        assert!(err.is_some());
        assert_eq!(out, members[..4].concat());
    }

    #[test]
    fn zstd_frames_come_out_when_their_checksum_is_checked() {
        let members: Vec<Vec<u8>> = (0..4).map(member_text).collect();
        let mut frames: Vec<Vec<u8>> = members
            .iter()
            .map(|m| {
                let mut e = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
                e.include_checksum(true).unwrap();
                e.write_all(m).unwrap();
                e.finish().unwrap()
            })
            .collect();
        let (out, err) = read_held(&frames.concat(), Compression::Zstd, limits(64 << 20));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out, members.concat());
        // The frame's content checksum is its last 4 bytes.
        let f2 = &mut frames[2];
        let last = f2.len() - 1;
        f2[last] ^= 0x40;
        let (out, err) = read_held(&frames.concat(), Compression::Zstd, limits(64 << 20));
        assert!(err.is_some());
        assert_eq!(out, members[..2].concat());
    }

    #[test]
    fn what_does_not_fit_in_memory_waits_in_a_file_up_to_the_limit() {
        let text: Vec<u8> = (0..6).flat_map(member_text).collect();
        let packed = gzip(&text);
        let confirmed = Counter::default();
        // A small memory window, so that the one stream goes through the file.
        let input = decompress(&packed[..], Compression::Gzip, Limits::default()).unwrap();
        let hold = Hold {
            max_bytes: 64 << 20,
            stop: None,
        };
        let mut held = Held::with_memory(input, confirmed.clone(), hold, STEP);
        // Its own count of confirmed bytes never moves: everything comes out at the end.
        let mut out = Vec::new();
        held.read_to_end(&mut out).unwrap();
        assert_eq!(out, text);
        assert!(held.spool.spare.is_some(), "went through a file");

        // Past the limit: the reading says so, with nothing handed out.
        let (out, err) = read_held(&packed, Compression::Gzip, limits(300_000));
        assert!(matches!(err, Some(DecodeError::HoldFull { .. })), "{err:?}");
        assert!(out.is_empty());
        assert!(err.unwrap().is_retryable());
    }

    #[test]
    fn filling_stops_at_the_stop() {
        let packed = gzip(&member_text(0).repeat(20));
        let l = Limits {
            hold: Some(Hold {
                max_bytes: 64 << 20,
                stop: Some(Instant::now()),
            }),
            ..Limits::default()
        };
        let (out, err) = read_held(&packed, Compression::Gzip, l);
        assert!(
            matches!(err, Some(DecodeError::HoldStopped { .. })),
            "{err:?}"
        );
        assert!(out.is_empty());
    }
}
