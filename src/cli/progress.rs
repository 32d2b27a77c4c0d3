//! The progress line on standard error (`convert`, `send`, `import`, `scan`): bytes read of
//! the total, records, events sent and the rates, redrawn a few times a second while standard
//! error is a terminal, and nothing at all when it is not (pipes, files, CI logs).
//!
//! The counters are atomics that the work updates as it goes: a reader that counts the bytes
//! it hands on, and for the importer the pipeline's observer calls (`Observer for Meter`).

use std::io::{self, IsTerminal, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// What the line shows, updated by the work from any thread.
#[derive(Default)]
pub struct Meter {
    pub bytes: AtomicU64,
    /// Bytes to read in all (0: unknown).
    pub total: AtomicU64,
    pub records: AtomicU64,
    pub sent: AtomicU64,
    /// Objects finished (scan).
    pub objects: AtomicU64,
    /// Whether the counts of events sent mean anything for this command.
    pub sends: AtomicBool,
    /// Whether the line is drawn (standard error is a terminal): extra requests that only
    /// serve the line (a HEAD for the size) are made only then.
    pub visible: AtomicBool,
    /// Records and events of the objects finished before the current one (scan).
    done_records: AtomicU64,
    done_sent: AtomicU64,
    /// The object being read and the byte count when it was first opened: reading it again
    /// (the integrity check, then the import; a resume) does not count its bytes twice.
    current: Mutex<(String, u64)>,
}

impl Meter {
    fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(0.001);
        let bytes = self.bytes.load(Relaxed);
        let total = self.total.load(Relaxed);
        let mut out = if total > 0 {
            format!(
                "read {} of {} ({:.0}%)",
                HumanBytes(bytes),
                HumanBytes(total),
                (bytes as f64 * 100.0 / total as f64).min(100.0)
            )
        } else {
            format!("read {}", HumanBytes(bytes))
        };
        let objects = self.objects.load(Relaxed);
        if objects > 0 {
            out.push_str(&format!(" · objects {objects}"));
        }
        let records = self.records.load(Relaxed);
        if records > 0 {
            out.push_str(&format!(
                " · records {records} ({:.0}/s)",
                records as f64 / secs
            ));
        }
        if self.sends.load(Relaxed) {
            let sent = self.sent.load(Relaxed);
            out.push_str(&format!(
                " · events sent {sent} ({:.0}/s)",
                sent as f64 / secs
            ));
        }
        out.push_str(&format!(
            " · {}/s",
            HumanBytes((bytes as f64 / secs) as u64)
        ));
        out
    }

    /// An object's confirmed counts (from its claim's progress).
    fn object_counts(&self, records: u64, sent: u64) {
        self.records
            .store(self.done_records.load(Relaxed) + records, Relaxed);
        self.sent
            .store(self.done_sent.load(Relaxed) + sent, Relaxed);
    }

    /// An object ended with these counts: they become part of the totals.
    fn object_done(&self, records: u64, sent: u64) {
        self.done_records.fetch_add(records, Relaxed);
        self.done_sent.fetch_add(sent, Relaxed);
        self.object_counts(0, 0);
        self.objects.fetch_add(1, Relaxed);
    }

    /// Starts (or starts again) reading `key`.
    fn opening(&self, key: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 == key {
            self.bytes.store(current.1, Relaxed);
        } else {
            *current = (key.to_string(), self.bytes.load(Relaxed));
        }
    }
}

/// The line itself: drawn on standard error when it is a terminal, hidden otherwise.
pub struct ProgressLine {
    pub meter: Arc<Meter>,
    bar: ProgressBar,
}

impl ProgressLine {
    /// A line for a command; `sends`: whether it sends events.
    pub fn start(sends: bool) -> ProgressLine {
        let meter = Arc::new(Meter::default());
        meter.sends.store(sends, Relaxed);
        let visible = io::stderr().is_terminal();
        meter.visible.store(visible, Relaxed);
        let bar = if visible {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
        } else {
            ProgressBar::hidden()
        };
        let m = meter.clone();
        let style = ProgressStyle::with_template("{spinner} {line}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key(
                "line",
                move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&m.line(state.elapsed()));
                },
            );
        bar.set_style(style);
        if visible {
            bar.enable_steady_tick(Duration::from_millis(250));
        }
        ProgressLine { meter, bar }
    }

    /// Wraps a reader so that its bytes are counted.
    pub fn reader<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader {
            inner,
            meter: self.meter.clone(),
        }
    }

    /// Prints `text` (made only when needed) to standard output without tearing the line.
    pub fn bar_println(&self, text: impl FnOnce() -> String) {
        let text = text();
        if self.bar.is_hidden() {
            print!("{text}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else {
            self.bar.suspend(|| {
                print!("{text}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            });
        }
    }

    /// Removes the line (before the command prints its result).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A reader that counts the bytes it hands on.
pub struct CountingReader<R> {
    inner: R,
    meter: Arc<Meter>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.bytes.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

/// A local file read by ranges (Parquet in place), its bytes counted as they are read.
impl crate::decode::parquet::ReadAt for CountingReader<std::fs::File> {
    fn len(&self) -> u64 {
        crate::decode::parquet::ReadAt::len(&self.inner)
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<bytes::Bytes> {
        let b = crate::decode::parquet::ReadAt::read_at(&self.inner, offset, len)?;
        self.meter.bytes.fetch_add(b.len() as u64, Relaxed);
        Ok(b)
    }
}

/// The importer's progress, counted for the line.
impl crate::pipeline::Observer for Meter {
    fn opened(&self, object: &str) {
        self.opening(object);
    }

    fn read(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Relaxed);
    }

    fn listed(&self, bytes: u64) {
        self.total.fetch_add(bytes, Relaxed);
    }

    fn confirmed(&self, records: u64, sent: u64) {
        self.object_counts(records, sent);
    }

    fn finished(&self, records: u64, sent: u64) {
        self.object_done(records, sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_bytes_of_the_total_records_events_and_rates() {
        let m = Meter::default();
        m.sends.store(true, Relaxed);
        m.total.store(4 << 20, Relaxed);
        m.opening("b/k");
        m.bytes.store(1 << 20, Relaxed);
        m.object_counts(1000, 900);
        let line = m.line(Duration::from_secs(2));
        assert_eq!(
            line,
            "read 1.00 MiB of 4.00 MiB (25%) · records 1000 (500/s) · events sent 900 (450/s) · 512.00 KiB/s"
        );
        // Reading the same object again (check, then import) does not count it twice.
        m.opening("b/k");
        assert_eq!(m.bytes.load(Relaxed), 0);
        m.object_done(1000, 900);
        m.object_counts(10, 5);
        assert!(m
            .line(Duration::from_secs(1))
            .contains("objects 1 · records 1010"));
    }
}
