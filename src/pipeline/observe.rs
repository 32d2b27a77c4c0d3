//! What the importer tells whoever watches it: the command line's progress line counts bytes,
//! records and events from these calls, so that no port needs a counting wrapper. Every method
//! does nothing by default; the Lambda runs without an observer.

use std::io::{self, Read};
use std::sync::Arc;

use crate::source::ObjectReader;

/// Told of an import's progress, from any thread.
pub trait Observer: Send + Sync {
    /// An object's body is opened for reading: `object` is `bucket/key`. The same object may be
    /// opened again (the integrity pass, then the import): its bytes are then read again.
    fn opened(&self, _object: &str) {}
    /// Bytes read from the object opened last.
    fn read(&self, _bytes: u64) {}
    /// A listing page of this many bytes in all (a scan's total grows with it).
    fn listed(&self, _bytes: u64) {}
    /// The counts confirmed so far for the object being imported (a checkpoint or a resume).
    fn confirmed(&self, _records: u64, _sent: u64) {}
    /// The object ended: completed with these counts, or failed (zero).
    fn finished(&self, _records: u64, _sent: u64) {}
}

/// A reader that tells its observer how many bytes it hands on.
pub(crate) struct ObservedReader {
    inner: ObjectReader,
    observer: Arc<dyn Observer>,
}

impl ObservedReader {
    pub(crate) fn wrap(inner: ObjectReader, observer: Option<&Arc<dyn Observer>>) -> ObjectReader {
        match observer {
            Some(observer) => Box::new(ObservedReader {
                inner,
                observer: observer.clone(),
            }),
            None => inner,
        }
    }
}

impl Read for ObservedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observer.read(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    #[derive(Default)]
    struct Bytes(AtomicU64);
    impl Observer for Bytes {
        fn read(&self, bytes: u64) {
            self.0.fetch_add(bytes, Relaxed);
        }
    }

    #[test]
    fn an_observed_reader_tells_every_byte_it_hands_on() {
        let seen = Arc::new(Bytes::default());
        let observer: Arc<dyn Observer> = seen.clone();
        let mut reader = ObservedReader::wrap(Box::new(&b"0123456789"[..]), Some(&observer));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"0123456789");
        assert_eq!(seen.0.load(Relaxed), 10);
    }
}
