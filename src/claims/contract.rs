//! The behaviour every claims adapter must have: memory here, DynamoDB on LocalStack
//! (`tests/it/pipeline.rs`).

use super::*;

/// A progress told apart by its invocation count.
fn p(invocations: u32) -> Progress {
    Progress {
        invocations,
        ..Progress::default()
    }
}

/// A progress that carries an id tag (what `retry` seeds after a change of content).
fn tagged(tag: &str) -> Progress {
    Progress {
        id_tag: Some(tag.into()),
        ..Progress::default()
    }
}

/// A completed claim's summary with `records` counted.
fn summary(records: u64) -> Summary {
    let mut s = Summary::default();
    s.counts.records = records;
    s
}

fn key(name: &str) -> ClaimKey {
    ClaimKey {
        source: "contract".into(),
        bucket: "bucket".into(),
        key: name.into(),
    }
}

/// Runs every check; `unique` makes keys unique per run for shared stores.
// Long: the contract as one story, each check relying on the state the ones before it left.
pub async fn run<S: ClaimStore>(store: &S, unique: &str) {
    let now = 1_800_000_000;
    let k = key(&format!("{unique}/a b+c.json"));

    // First claim wins; a second owner loses while the lease lives.
    assert_eq!(
        store.claim(&k, "owner-1", now + 60, now).await.unwrap(),
        ClaimOutcome::Acquired {
            checkpoint: 0,
            takeover: false,
            progress: Progress::default()
        }
    );
    assert_eq!(
        store.claim(&k, "owner-2", now + 60, now + 1).await.unwrap(),
        ClaimOutcome::HeldByOther {
            lease_until: now + 60
        }
    );
    // Progress is written only by the owner.
    assert_eq!(
        store
            .checkpoint(&k, "owner-1", 500, &p(500), now + 120)
            .await
            .unwrap(),
        Held::Yes
    );
    assert_eq!(
        store
            .checkpoint(&k, "owner-2", 900, &p(900), now + 120)
            .await
            .unwrap(),
        Held::Lost
    );
    // The lease expires: a takeover resumes from the checkpoint, and the old owner is locked out.
    assert_eq!(
        store
            .claim(&k, "owner-3", now + 300, now + 121)
            .await
            .unwrap(),
        ClaimOutcome::Acquired {
            checkpoint: 500,
            takeover: true,
            progress: p(500)
        }
    );
    assert_eq!(
        store
            .checkpoint(&k, "owner-1", 600, &p(600), now + 400)
            .await
            .unwrap(),
        Held::Lost
    );
    assert_eq!(
        store.complete(&k, "owner-1", &summary(1)).await.unwrap(),
        Held::Lost
    );
    // Completed is final, whoever asks and however late.
    assert_eq!(
        store.complete(&k, "owner-3", &summary(1000)).await.unwrap(),
        Held::Yes
    );
    assert_eq!(
        store
            .claim(&k, "owner-4", now + 10_000, now + 9_000)
            .await
            .unwrap(),
        ClaimOutcome::AlreadyCompleted
    );
    assert_eq!(
        store.get(&k).await.unwrap(),
        Some(ClaimState::Completed {
            summary: summary(1000)
        })
    );

    // Release leaves the claim resumable at once, with its checkpoint.
    let r = key(&format!("{unique}/released.json"));
    store.claim(&r, "owner-1", now + 60, now).await.unwrap();
    store
        .checkpoint(&r, "owner-1", 42, &p(42), now + 60)
        .await
        .unwrap();
    assert_eq!(
        store.release(&r, "owner-1", now + 1).await.unwrap(),
        Held::Yes
    );
    assert_eq!(
        store.claim(&r, "owner-2", now + 60, now + 1).await.unwrap(),
        ClaimOutcome::Acquired {
            checkpoint: 42,
            takeover: true,
            progress: p(42)
        }
    );

    // Failed keeps its reason until reset on purpose.
    let f = key(&format!("{unique}/corrupt.json.gz"));
    store.claim(&f, "owner-1", now + 60, now).await.unwrap();
    assert_eq!(
        store
            .fail(&f, "owner-1", "corrupt gzip data")
            .await
            .unwrap(),
        Held::Yes
    );
    assert_eq!(
        store.claim(&f, "owner-2", now + 60, now + 1).await.unwrap(),
        ClaimOutcome::AlreadyFailed {
            reason: "corrupt gzip data".into()
        }
    );
    assert!(store.reset_failed(&f, &tagged("t")).await.unwrap());
    assert!(!store.reset_failed(&f, &Progress::default()).await.unwrap());
    assert_eq!(
        store.claim(&f, "owner-2", now + 60, now + 1).await.unwrap(),
        ClaimOutcome::Acquired {
            checkpoint: 0,
            takeover: true,
            progress: tagged("t")
        }
    );

    // The stored state reads back whole, and listing finds the source's claims.
    match store.get(&r).await.unwrap() {
        Some(ClaimState::InProgress {
            owner,
            lease_until,
            checkpoint,
            progress,
        }) => assert_eq!(
            (owner.as_str(), lease_until, checkpoint, progress),
            ("owner-2", now + 60, 42, p(42))
        ),
        other => panic!("unexpected {other:?}"),
    }
    let listed = store.list("contract").await.unwrap();
    for want in [&k, &r, &f] {
        assert!(
            listed.iter().any(|(key, _)| key == want),
            "{want:?} not listed"
        );
    }
    assert_eq!(
        store.get(&key(&format!("{unique}/never"))).await.unwrap(),
        None
    );

    // Many at once, in order, with the missing ones.
    let never = key(&format!("{unique}/never"));
    let got = store
        .get_many(&[f.clone(), never.clone(), k.clone()])
        .await
        .unwrap();
    assert!(matches!(got[0], Some(ClaimState::InProgress { .. })));
    assert_eq!(got[1], None);
    assert!(matches!(got[2], Some(ClaimState::Completed { .. })));
    let many: Vec<ClaimKey> = (0..150)
        .map(|i| key(&format!("{unique}/many/{i:03}")))
        .collect();
    assert_eq!(store.get_many(&many).await.unwrap(), vec![None; 150]);
    assert_eq!(store.get_many(&[]).await.unwrap(), Vec::new());

    queue_marks(store, unique, now).await;

    // Claims are scoped by source.
    let other = ClaimKey {
        source: format!("other-source-{unique}"),
        ..k.clone()
    };
    assert_eq!(
        store.claim(&other, "owner-9", now + 60, now).await.unwrap(),
        ClaimOutcome::Acquired {
            checkpoint: 0,
            takeover: false,
            progress: Progress::default()
        }
    );
}

/// A scan's queue marks: taken only where nothing holds the object, at most once while
/// they last, turned into an import by the first claim, given back on purpose.
// Long: one object's marks through their life, in order.
async fn queue_marks<S: ClaimStore>(store: &S, unique: &str, now: i64) {
    let fresh: Vec<ClaimKey> = (0..130)
        .map(|i| key(&format!("{unique}/queued/{i:03}")))
        .collect();
    // A held object and a completed one are not marked; a released one is, with its
    // checkpoint.
    let held = key(&format!("{unique}/queued/held"));
    store.claim(&held, "o", now + 60, now).await.unwrap();
    let done = key(&format!("{unique}/queued/done"));
    store.claim(&done, "o", now + 60, now).await.unwrap();
    store.complete(&done, "o", &summary(0)).await.unwrap();
    let ended = key(&format!("{unique}/queued/ended"));
    store.claim(&ended, "o", now + 60, now).await.unwrap();
    store
        .checkpoint(&ended, "o", 7, &p(7), now + 60)
        .await
        .unwrap();
    store.release(&ended, "o", now).await.unwrap();
    let mut keys = fresh.clone();
    keys.extend([held.clone(), done.clone(), ended.clone()]);
    let until = now + 3600;
    let marked = store.mark_queued(&keys, until, now).await.unwrap();
    assert_eq!(marked.iter().filter(|m| **m).count(), 131, "{marked:?}");
    assert!(!marked[130] && !marked[131] && marked[132]);
    assert_eq!(
        store.get(&fresh[0]).await.unwrap(),
        Some(ClaimState::Queued {
            queued_until: until,
            checkpoint: 0,
            progress: Progress::default()
        })
    );
    // While the mark lasts, no second mark; after it, one.
    let again = store.mark_queued(&keys, until + 10, now + 5).await.unwrap();
    assert!(again.iter().all(|m| !m), "{again:?}");
    let later = store
        .mark_queued(&fresh[..2], until + 7200, until + 1)
        .await
        .unwrap();
    assert_eq!(later, [true, true]);
    // A queued object is claimed at once (its mark is no lease); an ended import resumes.
    assert_eq!(
        store
            .claim(&fresh[5], "w", now + 60, now + 6)
            .await
            .unwrap(),
        ClaimOutcome::Acquired {
            checkpoint: 0,
            takeover: false,
            progress: Progress::default()
        }
    );
    assert_eq!(
        store.claim(&ended, "w", now + 60, now + 6).await.unwrap(),
        ClaimOutcome::Acquired {
            checkpoint: 7,
            takeover: true,
            progress: p(7)
        }
    );
    // Given back: the next scan marks it again; a mark that moved on is left alone.
    store.unmark_queued(&fresh[9], until).await.unwrap();
    store.unmark_queued(&fresh[5], until).await.unwrap();
    assert!(matches!(
        store.get(&fresh[5]).await.unwrap(),
        Some(ClaimState::InProgress { .. })
    ));
    assert_eq!(
        store
            .mark_queued(&fresh[9..11], until, now + 7)
            .await
            .unwrap(),
        [true, false]
    );

    // A short mark, extended once its message is sent: only where it is still this mark.
    let short: Vec<ClaimKey> = (0..3)
        .map(|i| key(&format!("{unique}/pending/{i}")))
        .collect();
    let (pending, long) = (now + 60, now + 86_400);
    assert_eq!(
        store.mark_queued(&short, pending, now).await.unwrap(),
        [true, true, true]
    );
    store
        .claim(&short[1], "w", now + 60, now + 1)
        .await
        .unwrap();
    store.unmark_queued(&short[2], pending).await.unwrap();
    store.confirm_queued(&short, pending, long).await.unwrap();
    let queued_until = |s: Option<ClaimState>| match s {
        Some(ClaimState::Queued { queued_until, .. }) => Some(queued_until),
        _ => None,
    };
    assert_eq!(
        queued_until(store.get(&short[0]).await.unwrap()),
        Some(long)
    );
    assert!(matches!(
        store.get(&short[1]).await.unwrap(),
        Some(ClaimState::InProgress { .. })
    ));
    assert_eq!(queued_until(store.get(&short[2]).await.unwrap()), Some(0));
    // A mark that was never confirmed runs out soon: the next scan marks it again.
    let unconfirmed = key(&format!("{unique}/pending/unconfirmed"));
    store
        .mark_queued(std::slice::from_ref(&unconfirmed), pending, now)
        .await
        .unwrap();
    assert_eq!(
        store
            .mark_queued(std::slice::from_ref(&unconfirmed), long, pending + 1)
            .await
            .unwrap(),
        [true]
    );

    // A stale mark on an excluded key is cleared: a bare one goes, one that kept an ended
    // import's checkpoint becomes that import again; other states are left alone.
    assert!(store.clear_queued(&short[0]).await.unwrap());
    assert_eq!(store.get(&short[0]).await.unwrap(), None);
    let kept = key(&format!("{unique}/pending/kept"));
    store.claim(&kept, "o", now + 60, now).await.unwrap();
    store
        .checkpoint(&kept, "o", 3, &p(3), now + 60)
        .await
        .unwrap();
    store.release(&kept, "o", now).await.unwrap();
    store
        .mark_queued(std::slice::from_ref(&kept), long, now + 2)
        .await
        .unwrap();
    assert!(store.clear_queued(&kept).await.unwrap());
    match store.get(&kept).await.unwrap() {
        Some(ClaimState::InProgress {
            lease_until,
            checkpoint,
            progress,
            ..
        }) => assert_eq!((lease_until < now, checkpoint, progress), (true, 3, p(3))),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!store.clear_queued(&kept).await.unwrap());
    assert!(!store.clear_queued(&short[1]).await.unwrap());
    assert!(!store
        .clear_queued(&key(&format!("{unique}/pending/none")))
        .await
        .unwrap());

    // Scan marks: none at first; the last one written is read back, per bucket and prefix,
    // and a mark is no claim (`list` does not show it).
    let source = format!("contract-{unique}");
    assert_eq!(store.scan_mark(&source, "b", "in/").await.unwrap(), None);
    let mark = ScanMark {
        final_before: now - 5,
        full_at: now - 3600,
    };
    store
        .set_scan_mark(&source, "b", "in/", mark)
        .await
        .unwrap();
    let later = ScanMark {
        final_before: now,
        ..mark
    };
    store
        .set_scan_mark(&source, "b", "in/", later)
        .await
        .unwrap();
    assert_eq!(
        store.scan_mark(&source, "b", "in/").await.unwrap(),
        Some(later)
    );
    assert_eq!(store.scan_mark(&source, "b", "in/x/").await.unwrap(), None);
    assert!(store.list(&source).await.unwrap().is_empty());
}
