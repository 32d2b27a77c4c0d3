//! Confirmation: a record is confirmed when every payload it made has a fate, and the
//! checkpoint is the confirmed prefix. The heart of "every record counted once".

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::convert::Kind;
use crate::decode::Restart;
use crate::dedupe::DedupeKey;
use crate::report::{Counts, RejectsFile, FIRST_ERRORS};
use crate::sink::Fate;

/// One record between reading and confirmation: its payloads still without a fate, what it
/// counts for, and the lines it adds to the rejects file.
#[derive(Debug, Default)]
pub struct OpenRecord {
    pub pending: u32,
    pub counts: Counts,
    /// A payload was not sent: the record cannot be confirmed in this run.
    pub blocked: bool,
    pub reject_lines: Vec<String>,
    pub errors: Vec<String>,
    /// The dedupe key its event was checked with (marked as this record's, unless found a
    /// duplicate), until the event is sent: a mark to take back if it never is.
    pub dedupe: Option<DedupeKey>,
}

impl OpenRecord {
    /// A record whose converter made `payloads` payloads.
    pub fn converted(payloads: usize) -> OpenRecord {
        let mut r = OpenRecord {
            pending: payloads as u32,
            ..OpenRecord::default()
        };
        r.counts.records = 1;
        r.counts.converted = 1;
        r.counts.payloads = payloads as u64;
        r
    }

    pub fn skipped() -> OpenRecord {
        let mut r = OpenRecord::default();
        r.counts.records = 1;
        r.counts.skipped = 1;
        r
    }

    /// A record that could not be read or converted; `raw` is its text.
    pub fn invalid(n: u64, reason: &str, raw: &str) -> OpenRecord {
        let mut r = OpenRecord::default();
        r.counts.records = 1;
        r.counts.invalid = 1;
        r.reject_lines.push(RejectsFile::line(
            n,
            "invalid",
            reason,
            Some(raw.as_bytes()),
            None,
        ));
        r.errors.push(format!("record {n}: invalid: {reason}"));
        r
    }
}

/// Confirms records in order (see the module's first line).
pub struct Tracker {
    /// Records before `base` are confirmed and counted in `counts`.
    pub base: u64,
    open: VecDeque<OpenRecord>,
    pub counts: Counts,
    /// The first errors of the confirmed records.
    pub errors: Vec<String>,
    /// The rejects of the confirmed records since `rejects_start`.
    pub rejects: RejectsFile,
    pub rejects_start: u64,
    pub write_error: Option<String>,
    /// The first reason a record stays unconfirmed (a payload not sent).
    pub blocker: Option<String>,
    /// The restart points the reading passed (from the conversion thread).
    pub restarts: Restarts,
    /// Dedupe marks of events that will not be delivered (rejected by the endpoint; read by an
    /// object that fails), by record: to be released so that a corrected upload is not taken
    /// for their duplicate.
    pub release: Vec<(u64, DedupeKey)>,
}

/// Restart points in reading order, shared between the conversion thread that passes them and
/// the checkpoints that keep the last one at or before the confirmed record.
#[derive(Clone, Default)]
pub struct Restarts(Arc<Mutex<VecDeque<Restart>>>);

impl Restarts {
    pub fn push(&self, r: Restart) {
        if let Ok(mut q) = self.0.lock() {
            q.push_back(r);
        }
    }

    /// The last restart point at or before record `base`; the ones before it are dropped.
    pub fn at_or_before(&self, base: u64) -> Option<Restart> {
        let mut q = self.0.lock().ok()?;
        while q.len() >= 2 && q[1].n <= base {
            q.pop_front();
        }
        q.front().filter(|r| r.n <= base).cloned()
    }
}

impl Tracker {
    /// Starts at the checkpoint `base`, whose records counted `counts`.
    pub fn new(base: u64, counts: Counts, rejects: RejectsFile) -> Tracker {
        Tracker {
            base,
            open: VecDeque::new(),
            counts,
            errors: Vec::new(),
            rejects,
            rejects_start: base,
            write_error: None,
            blocker: None,
            restarts: Restarts::default(),
            release: Vec::new(),
        }
    }

    /// Starts a new rejects part at the checkpoint (the last one was saved).
    pub fn next_rejects(&mut self, rejects: RejectsFile) {
        self.rejects = rejects;
        self.rejects_start = self.base;
    }

    /// Whether records were read that are not confirmed.
    pub fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    fn record(&mut self, n: u64) -> Option<&mut OpenRecord> {
        let i = n.checked_sub(self.base)?;
        self.open.get_mut(i as usize)
    }

    /// The next record read (records arrive in order, from `base` on).
    pub fn open(&mut self, n: u64, record: OpenRecord) {
        debug_assert_eq!(n, self.base + self.open.len() as u64);
        self.open.push_back(record);
    }

    /// One payload of record `n` met its fate (`payload`: its JSON, for a rejected one).
    pub fn record_fate(&mut self, n: u64, fate: &Fate, payload: Option<&str>) {
        let Some(r) = self.record(n) else { return };
        r.pending = r.pending.saturating_sub(1);
        match fate {
            Fate::Sent => r.counts.sent += 1,
            Fate::Rejected(why) => {
                r.counts.rejected += 1;
                r.reject_lines
                    .push(RejectsFile::line(n, "rejected", why, None, payload));
                r.errors
                    .push(format!("record {n}: rejected by the endpoint: {why}"));
            }
            Fate::NotSent(why) => {
                r.counts.not_sent += 1;
                r.blocked = true;
                let error = format!("record {n}: not sent: {why}");
                r.errors.push(error.clone());
                self.blocker.get_or_insert(error);
            }
        }
    }

    /// One payload of record `n` was a duplicate (dropped, counted).
    pub fn record_duplicate(&mut self, n: u64) {
        if let Some(r) = self.record(n) {
            r.pending = r.pending.saturating_sub(1);
            r.counts.duplicates += 1;
            // Another record holds the mark.
            r.dedupe = None;
        }
    }

    /// Record `n`'s event (the one payload of a record that can carry a dedupe key) met
    /// `fate`: sent, its mark stays; rejected, its mark is to be released; not sent, the record
    /// stays unconfirmed (a resume sends it again under its own mark, a failure releases it).
    fn event_fate(&mut self, n: u64, fate: &Fate) {
        if matches!(fate, Fate::NotSent(_)) {
            return;
        }
        let key = self.record(n).and_then(|r| r.dedupe.take());
        if let (Some(key), Fate::Rejected(_)) = (key, fate) {
            self.release.push((n, key));
        }
    }

    /// The fates a delivery reported, with the JSON of the rejected payloads.
    pub fn record_fates(&mut self, fates: Vec<(u64, Kind, Fate)>, rejected: Vec<(u64, String)>) {
        let mut payloads: HashMap<u64, Vec<String>> = HashMap::new();
        for (n, json) in rejected {
            payloads.entry(n).or_default().push(json);
        }
        for (n, kind, fate) in fates {
            let json = match fate {
                Fate::Rejected(_) => payloads.get_mut(&n).and_then(|v| v.pop()),
                _ => None,
            };
            self.record_fate(n, &fate, json.as_deref());
            if kind == Kind::Event {
                self.event_fate(n, &fate);
            }
        }
    }

    fn confirm(&mut self, r: OpenRecord) {
        self.counts.add(&r.counts);
        for line in &r.reject_lines {
            if let Err(err) = self.rejects.write(line) {
                self.write_error.get_or_insert(err.to_string());
            }
        }
        for err in r.errors {
            if self.errors.len() < FIRST_ERRORS {
                self.errors.push(err);
            }
        }
        self.base += 1;
    }

    /// Confirms the settled records at the front; the checkpoint moves to the first open one.
    pub fn confirm_settled(&mut self) {
        while self
            .open
            .front()
            .is_some_and(|r| r.pending == 0 && !r.blocked)
        {
            if let Some(r) = self.open.pop_front() {
                self.confirm(r);
            }
        }
    }

    /// Counts every record read, settled or not, its unsettled payloads as not sent (an
    /// object that ends FAILED: nothing is resumed, everything read is accounted for).
    pub fn close_all(&mut self) {
        while let Some(mut r) = self.open.pop_front() {
            r.counts.not_sent += u64::from(r.pending);
            if let Some(key) = r.dedupe.take() {
                self.release.push((self.base, key));
            }
            self.confirm(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(base: u64) -> Tracker {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("tracker-test-{}-{n}", std::process::id());
        Tracker::new(base, Counts::default(), RejectsFile::new(&tag))
    }

    /// A step of a table test.
    enum Step {
        Converted(u64, usize),
        Skipped(u64),
        Invalid(u64),
        Got(u64, Fate),
        Duplicate(u64),
        Confirm,
        CloseAll,
    }
    use Step::*;

    fn run(base: u64, steps: Vec<Step>) -> Tracker {
        let mut t = tracker(base);
        for s in steps {
            match s {
                Converted(n, p) => t.open(n, OpenRecord::converted(p)),
                Skipped(n) => t.open(n, OpenRecord::skipped()),
                Invalid(n) => t.open(n, OpenRecord::invalid(n, "bad", "{")),
                Got(n, f) => t.record_fate(n, &f, Some("{}")),
                Duplicate(n) => t.record_duplicate(n),
                Confirm => t.confirm_settled(),
                CloseAll => t.close_all(),
            }
        }
        t
    }

    fn sent() -> Fate {
        Fate::Sent
    }

    #[test]
    fn the_checkpoint_is_the_confirmed_prefix() {
        // (name, base, steps, expected base, records counted, sent, open left)
        type Case = (&'static str, u64, Vec<Step>, u64, u64, u64, bool);
        let cases: Vec<Case> = vec![
            ("nothing read", 7, vec![Confirm], 7, 0, 0, false),
            (
                "all settled in order",
                0,
                vec![
                    Converted(0, 1),
                    Converted(1, 2),
                    Got(0, sent()),
                    Got(1, sent()),
                    Got(1, sent()),
                    Confirm,
                ],
                2,
                2,
                3,
                false,
            ),
            (
                "a later record settled first waits for the earlier one",
                0,
                vec![Converted(0, 1), Converted(1, 1), Got(1, sent()), Confirm],
                0,
                0,
                0,
                true,
            ),
            (
                "a record with one payload still pending holds the checkpoint",
                10,
                vec![Converted(10, 2), Got(10, sent()), Confirm],
                10,
                0,
                0,
                true,
            ),
            (
                "skipped and invalid records confirm at once",
                3,
                vec![Skipped(3), Invalid(4), Converted(5, 0), Confirm],
                6,
                3,
                0,
                false,
            ),
            (
                "a duplicate is a fate",
                0,
                vec![Converted(0, 2), Duplicate(0), Got(0, sent()), Confirm],
                1,
                1,
                1,
                false,
            ),
            (
                "a rejected payload confirms its record",
                0,
                vec![
                    Converted(0, 1),
                    Got(0, Fate::Rejected("bad time".into())),
                    Confirm,
                ],
                1,
                1,
                0,
                false,
            ),
            (
                "a payload not sent blocks its record and every later one",
                0,
                vec![
                    Converted(0, 1),
                    Converted(1, 1),
                    Got(0, Fate::NotSent("503".into())),
                    Got(1, sent()),
                    Confirm,
                ],
                0,
                0,
                0,
                true,
            ),
            (
                "close_all counts what was read, the unsettled as not sent",
                0,
                vec![Converted(0, 2), Converted(1, 1), Got(0, sent()), CloseAll],
                2,
                2,
                1,
                false,
            ),
            (
                "fates for records before the checkpoint are ignored",
                5,
                vec![Got(2, sent()), Converted(5, 1), Got(5, sent()), Confirm],
                6,
                1,
                1,
                false,
            ),
        ];
        for (name, base, steps, want_base, records, sent, open) in cases {
            let t = run(base, steps);
            assert_eq!(t.base, want_base, "{name}: checkpoint");
            assert_eq!(t.counts.records, records, "{name}: records");
            assert_eq!(t.counts.sent, sent, "{name}: sent");
            assert_eq!(t.has_open(), open, "{name}: open records");
        }
    }

    #[test]
    fn counts_add_up_and_errors_name_their_record() {
        let mut t = run(
            0,
            vec![
                Converted(0, 3),
                Invalid(1),
                Got(0, Fate::Rejected("bad".into())),
                Duplicate(0),
                Got(0, sent()),
                Confirm,
            ],
        );
        assert!(t.counts.add_up(), "{:?}", t.counts);
        assert_eq!(
            (t.counts.rejected, t.counts.duplicates, t.counts.invalid),
            (1, 1, 1)
        );
        assert_eq!(
            t.errors,
            vec![
                "record 0: rejected by the endpoint: bad".to_string(),
                "record 1: invalid: bad".to_string()
            ]
        );
        assert_eq!(
            t.rejects.lines, 2,
            "one rejected payload, one invalid record"
        );
        let not_sent = run(
            0,
            vec![Converted(0, 1), Got(0, Fate::NotSent("timeout".into()))],
        );
        assert_eq!(
            not_sent.blocker.as_deref(),
            Some("record 0: not sent: timeout")
        );
        t.close_all();
        assert!(!t.has_open());
    }

    #[test]
    fn delivery_fates_carry_the_rejected_payloads_json() {
        let mut t = tracker(0);
        t.open(0, OpenRecord::converted(2));
        t.record_fates(
            vec![
                (0, Kind::Event, Fate::Sent),
                (0, Kind::Event, Fate::Rejected("too long".into())),
            ],
            vec![(0, r#"{"event_type":"x"}"#.into())],
        );
        t.confirm_settled();
        assert_eq!(t.base, 1);
        let path = t.rejects.finish().unwrap().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.contains("too long") && text.contains("event_type"),
            "{text}"
        );
    }

    #[test]
    fn marks_of_events_not_delivered_are_to_be_released_and_only_those() {
        let key = |i: u64| DedupeKey {
            source: "s".into(),
            id: "d".into(),
            insert_id: format!("id-{i}"),
        };
        let mut t = tracker(0);
        for n in 0..5 {
            let mut r = OpenRecord::converted(1);
            r.dedupe = Some(key(n));
            t.open(n, r);
        }
        let ev = |n: u64, fate: Fate| (n, Kind::Event, fate);
        t.record_fates(
            vec![
                ev(0, Fate::Sent),
                ev(1, Fate::Rejected("time: invalid value".into())),
                ev(3, Fate::NotSent("503".into())),
            ],
            vec![(1, "{}".into())],
        );
        t.record_duplicate(2);
        assert_eq!(t.release, vec![(1, key(1))], "only the rejected one so far");
        t.confirm_settled();
        // An object that fails: records 3 (not sent) and 4 (no fate yet) never will be.
        t.close_all();
        assert_eq!(t.release, vec![(1, key(1)), (3, key(3)), (4, key(4))]);
        assert!(t.counts.add_up(), "{:?}", t.counts);
    }
}
