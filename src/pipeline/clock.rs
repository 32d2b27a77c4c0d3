//! The importer's clock: every timestamp it writes (leases, owner tokens, report times, file
//! names) comes from here, so that tests can move time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Epoch milliseconds: the system's, or a hand-moved one in tests.
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that stands at `epoch_ms` until moved with [`Clock::advance`].
    pub fn manual(epoch_ms: i64) -> Clock {
        Clock(Source::Manual(Arc::new(AtomicI64::new(epoch_ms))))
    }

    /// Moves a manual clock forward (a system clock cannot be moved: no effect).
    pub fn advance(&self, by: std::time::Duration) {
        if let Source::Manual(t) = &self.0 {
            t.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            Source::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Epoch seconds, the unit of leases and TTLs.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = Clock::manual(1_700_000_000_500);
        assert_eq!(c.now_secs(), 1_700_000_000);
        c.advance(std::time::Duration::from_millis(600));
        assert_eq!(c.now_ms(), 1_700_000_001_100);
        assert_eq!(c.clone().now_secs(), 1_700_000_001, "clones share the time");
        assert!(Clock::system().now_secs() > 1_700_000_000);
    }
}
