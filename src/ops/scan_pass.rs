//! Scans that do not re-read what is done: which claims a scan reads, and the mark a complete
//! scan leaves for the next one.
//!
//! A complete scan records when it began, or the last-modified time of the oldest object it
//! found not final (queued, being imported), whichever is earlier ([`ScanMark::final_before`]):
//! every object it listed that is older was final, and final claims do not change. The next
//! scan reads the claims only of objects last modified since then, less `S3I_SCAN_MARGIN_SECS`
//! (S3 dates an object by the start of its upload: a multipart upload begun before that scan
//! may have been listed only after it). Every `S3I_SCAN_FULL_EVERY_SECS` a scan reads every
//! claim, the safety net for what the margin does not cover. A scan continued over several
//! invocations carries its pass in its continuation messages and marks only at its end.

use crate::claims::{ClaimStore, ScanMark};
use crate::settings::Settings;

pub use crate::notify::ScanPass;

impl ScanPass {
    /// The pass of a scan starting now: incremental after a recent full pass, else full.
    /// `from_start`: the scan lists from the first key (a continuation of a scan begun before
    /// passes were carried lists from the middle: a full pass that leaves no mark).
    pub fn plan(mark: Option<ScanMark>, now: i64, settings: &Settings, from_start: bool) -> Self {
        let full_every = settings.scan_full_every.as_secs() as i64;
        let margin = settings.scan_margin.as_secs() as i64;
        match mark {
            Some(m) if from_start && full_every > 0 && now - m.full_at < full_every => ScanPass {
                started: now,
                since: Some(m.final_before - margin),
                full_at: m.full_at,
                open_from: None,
                marks: true,
            },
            _ => ScanPass {
                started: now,
                since: None,
                full_at: now,
                open_from: None,
                marks: from_start,
            },
        }
    }

    /// Whether the claim of an object last modified at `last_modified` needs reading.
    pub fn reads(&self, last_modified: Option<i64>) -> bool {
        match (self.since, last_modified) {
            (Some(since), Some(t)) => t >= since,
            _ => true,
        }
    }

    /// Notes an object that was not final when read (queued, being imported, not finished).
    pub fn open(&mut self, last_modified: Option<i64>) {
        // An object without a date holds the mark at the start of time: every claim is read.
        let t = last_modified.unwrap_or(0);
        self.open_from = Some(self.open_from.map_or(t, |o| o.min(t)));
    }

    /// The mark this pass leaves when complete.
    pub fn mark(&self) -> ScanMark {
        ScanMark {
            final_before: self.open_from.map_or(self.started, |o| o.min(self.started)),
            full_at: self.full_at,
        }
    }

    /// Reads the mark of `bucket`/`prefix` and plans the pass; a mark that cannot be read
    /// makes a full pass (every claim read, as without marks).
    pub async fn start<C: ClaimStore>(
        claims: &C,
        settings: &Settings,
        bucket: &str,
        prefix: &str,
        now: i64,
        from_start: bool,
    ) -> ScanPass {
        let mark = if from_start && settings.scan_full_every.as_secs() > 0 {
            match claims.scan_mark(&settings.source, bucket, prefix).await {
                Ok(mark) => mark,
                Err(e) => {
                    tracing::warn!(error = %e, "scan mark not read: every claim is read");
                    None
                }
            }
        } else {
            None
        };
        ScanPass::plan(mark, now, settings, from_start)
    }

    /// Leaves the mark of a complete pass (a mark not written only makes the next scan read
    /// more).
    pub async fn finish<C: ClaimStore>(
        &self,
        claims: &C,
        settings: &Settings,
        bucket: &str,
        prefix: &str,
    ) {
        if !self.marks {
            return;
        }
        if let Err(e) = claims
            .set_scan_mark(&settings.source, bucket, prefix, self.mark())
            .await
        {
            tracing::warn!(error = %e, "scan mark not written: the next scan reads more claims");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(margin: u64, full_every: u64) -> Settings {
        let vars = [
            ("S3I_CONVERTER", "s3://b/c.json".to_string()),
            ("S3I_REPORTS", "s3://b/reports/".to_string()),
            ("AMPLITUDE_API_KEY", "k".to_string()),
            ("S3I_SCAN_MARGIN_SECS", margin.to_string()),
            ("S3I_SCAN_FULL_EVERY_SECS", full_every.to_string()),
        ];
        Settings::from_lookup(&|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap()
    }

    #[test]
    fn a_scan_reads_what_changed_since_the_last_complete_one_and_a_full_pass_daily() {
        let s = settings(600, 86_400);
        let mark = ScanMark {
            final_before: 10_000,
            full_at: 5_000,
        };
        // (case, mark, now, from_start) → (since, full_at, marks)
        let cases = [
            ("no mark yet: full", None, 20_000, true, None, 20_000, true),
            (
                "recent full pass: incremental",
                Some(mark),
                20_000,
                true,
                Some(9_400),
                5_000,
                true,
            ),
            (
                "full pass a day old: full",
                Some(mark),
                91_400,
                true,
                None,
                91_400,
                true,
            ),
            (
                "an old continuation: full, no mark",
                Some(mark),
                20_000,
                false,
                None,
                20_000,
                false,
            ),
        ];
        for (case, mark, now, from_start, since, full_at, marks) in cases {
            let p = ScanPass::plan(mark, now, &s, from_start);
            assert_eq!(
                (p.since, p.full_at, p.marks),
                (since, full_at, marks),
                "{case}"
            );
        }
        let every = ScanPass::plan(Some(mark), 20_000, &settings(600, 0), true);
        assert_eq!(
            every.since, None,
            "S3I_SCAN_FULL_EVERY_SECS=0: every scan is full"
        );
    }

    #[test]
    fn the_mark_stops_at_the_oldest_object_not_final() {
        let mut p = ScanPass::plan(None, 20_000, &settings(600, 86_400), true);
        assert!(p.reads(Some(1)) && p.reads(None));
        assert_eq!(p.mark().final_before, 20_000);
        p.open(Some(15_000));
        p.open(Some(17_000));
        assert_eq!(p.mark().final_before, 15_000);
        let q = ScanPass {
            since: Some(100),
            ..p
        };
        assert!(!q.reads(Some(99)) && q.reads(Some(100)) && q.reads(None));
    }
}
