//! What the DynamoDB adapters cost, on the local AWS stack: the dedupe's write units per event
//! (new, duplicate and own events; expired marks taken over by exactly one of several racers)
//! and the release of a mark. Run with `AWS_ENDPOINT_URL` set to the stack (`make test`).

mod common;

use std::sync::Arc;

use s3_import::dedupe::dynamo::DynamoDedupe;
use s3_import::dedupe::{DedupeKey, DedupeStore, RecordRef, Verdict, WINDOW_SECS};

use common::{unique, DEDUPE};

fn batch(source: &str, object: &str, ids: std::ops::Range<u64>) -> Vec<(DedupeKey, RecordRef)> {
    ids.map(|i| {
        (
            DedupeKey::for_event(source, Some(&format!("d{}", i % 7)), None, &format!("id-{i}"))
                .unwrap(),
            RecordRef {
                object: object.into(),
                n: i,
            },
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dedupe_writes_one_unit_per_event_new_duplicate_or_own() {
    let c = common::stack_with_tables().await;
    let dedupe = DynamoDedupe::new(c.dynamodb.clone(), DEDUPE);
    let source = unique("wcu");
    let now = 1_800_000_000;
    let first = batch(&source, "b/one.json", 0..300);

    let before = dedupe.capacity();
    let v = dedupe.check_and_mark(&first, now).await.unwrap();
    assert!(v.iter().all(|v| *v == Verdict::New));
    let new = dedupe.capacity().since(before);
    assert_eq!((new.write_units, new.read_units), (300, 0), "{new:?}");

    // The same events from another object: every one a duplicate, one write and one read each.
    let second = batch(&source, "b/two.json", 0..300);
    let before = dedupe.capacity();
    let v = dedupe.check_and_mark(&second, now + 5).await.unwrap();
    assert!(v.iter().all(|v| matches!(v, Verdict::Duplicate { first } if first.object == "b/one.json")));
    let dup = dedupe.capacity().since(before);
    assert!(dup.write_units <= 300, "{dup:?}");
    assert!(dup.read_units <= 300, "{dup:?}");

    // The first object resumed: its own events, sent again.
    let before = dedupe.capacity();
    let v = dedupe.check_and_mark(&first, now + 10).await.unwrap();
    assert!(v.iter().all(|v| *v == Verdict::Own));
    let own = dedupe.capacity().since(before);
    assert!(own.write_units <= 300, "{own:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_mark_goes_to_exactly_one_of_several_racers() {
    let c = common::stack_with_tables().await;
    let dedupe = Arc::new(DynamoDedupe::new(c.dynamodb.clone(), DEDUPE));
    let source = unique("expired-race");
    let now = 1_800_000_000;
    // Marks made 8 days ago: expired, still stored (TTL deletes lazily, and not on the stack).
    let old = batch(&source, "b/old.json", 0..40);
    dedupe.check_and_mark(&old, now - WINDOW_SECS - 86_400).await.unwrap();
    let mut tasks = Vec::new();
    for obj in 0..5 {
        let (dedupe, source) = (dedupe.clone(), source.clone());
        tasks.push(tokio::spawn(async move {
            let events = batch(&source, &format!("b/new-{obj}.json"), 0..40);
            dedupe.check_and_mark(&events, now).await.unwrap()
        }));
    }
    let mut new = [0u32; 40];
    for t in tasks {
        for (i, v) in t.await.unwrap().into_iter().enumerate() {
            match v {
                Verdict::New => new[i] += 1,
                Verdict::Duplicate { first } => assert_ne!(first.object, "b/old.json"),
                Verdict::Own => panic!("no racer owned these before"),
            }
        }
    }
    assert!(new.iter().all(|&n| n == 1), "each key new exactly once: {new:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_mark_frees_its_key_and_only_its_holder_releases_it() {
    let c = common::stack_with_tables().await;
    let dedupe = DynamoDedupe::new(c.dynamodb.clone(), DEDUPE);
    let source = unique("release");
    let now = 1_800_000_000;
    let a = batch(&source, "b/a.json", 0..30);
    dedupe.check_and_mark(&a, now).await.unwrap();
    let b = batch(&source, "b/b.json", 0..30);
    assert_eq!(dedupe.release(&b).await.unwrap(), 0);
    let before = dedupe.capacity();
    assert_eq!(dedupe.release(&a[..10]).await.unwrap(), 10);
    assert_eq!(dedupe.capacity().since(before).write_units, 10);
    let v = dedupe.check_and_mark(&b, now + 60).await.unwrap();
    assert!(v[..10].iter().all(|v| *v == Verdict::New), "{v:?}");
    assert!(v[10..].iter().all(|v| matches!(v, Verdict::Duplicate { .. })), "{v:?}");
}
