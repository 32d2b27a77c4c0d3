//! The sender against the emulator over real HTTP on loopback: every response rule, faults,
//! the deadline and throttling, and the accounting (every payload ends in one fate).

use crate::common;

use std::time::Duration;

use s3_import::convert::Kind;
use s3_import::emulator::EmulatorConfig;
use s3_import::sink::{deliver, Fate, Item, SinkSettings};
use serde_json::{json, Value};
use tokio::time::Instant;

use common::{soon, stats};

async fn emulator(
    name: &str,
    tweak: impl FnOnce(&mut EmulatorConfig),
) -> (String, std::path::PathBuf) {
    common::emulator(&format!("s3-import-sink-{name}"), tweak).await
}

fn event(n: u64, device: &str, extra: Value) -> Item {
    let mut e = json!({"event_type": "Played", "device_id": device, "insert_id": format!("obj:{n}"), "time": 1_700_000_000_000u64 + n});
    if let (Value::Object(e), Value::Object(x)) = (&mut e, extra) {
        e.extend(x);
    }
    Item {
        n,
        kind: Kind::Event,
        mutation: None,
        throttle_id: Some(device.to_string()),
        json: e.to_string(),
    }
}

fn events(count: u64) -> Vec<Item> {
    (0..count)
        .map(|n| event(n, &format!("device-{}", n % 97), json!({})))
        .collect()
}

fn settings(base: &str) -> SinkSettings {
    let mut s = SinkSettings::new("test-key", base);
    s.backoff_base = Duration::from_millis(5);
    s.backoff_max = Duration::from_millis(50);
    s
}

fn assert_accounted(d: &s3_import::sink::Delivery, items: usize) {
    assert_eq!(d.fates.len(), items, "every payload has exactly one fate");
    assert_eq!(d.sent() + d.rejected() + d.not_sent(), items);
    let mut ns: Vec<u64> = d.fates.iter().map(|f| f.0).collect();
    ns.dedup();
    assert_eq!(ns.len(), items, "no payload has two fates");
}

#[tokio::test]
async fn events_go_in_batches_of_at_most_2000() {
    let (base, _) = emulator("batches", |_| {}).await;
    let d = deliver(
        &reqwest::Client::new(),
        &settings(&base),
        events(4500),
        soon(30),
    )
    .await;
    assert_accounted(&d, 4500);
    assert_eq!(d.sent(), 4500);
    assert_eq!(d.requests, 3, "2000 + 2000 + 500");
    assert_eq!(stats(&base).await["events"], 4500);
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let (base, _) = emulator("gzip", |_| {}).await;
    let mut s = settings(&base);
    s.gzip = true;
    let d = deliver(&reqwest::Client::new(), &s, events(300), soon(30)).await;
    assert_eq!(d.sent(), 300);
    let st = stats(&base).await;
    assert_eq!(st["events"], 300);
    assert_eq!(
        st["gzip_requests"], d.requests,
        "every request went gzipped: {st}"
    );
}

#[tokio::test]
async fn a_400_rejects_only_the_listed_events_and_resends_the_rest() {
    let (base, _) = emulator("partial", |_| {}).await;
    let mut items = events(10);
    items[3] = event(3, "device-3", json!({"time": "2024-01-01"}));
    items[7] = event(7, "device-7", json!({"event_type": ""}));
    let d = deliver(&reqwest::Client::new(), &settings(&base), items, soon(30)).await;
    assert_accounted(&d, 10);
    assert_eq!(d.sent(), 8);
    assert_eq!(
        d.fates[3].2,
        Fate::Rejected("time: invalid value (400 events_with_invalid_fields)".into())
    );
    assert_eq!(
        d.fates[7].2,
        Fate::Rejected("event_type: missing (400 events_with_missing_fields)".into())
    );
    assert_eq!(stats(&base).await["events"], 8);
}

#[tokio::test]
async fn an_invalid_api_key_stops_the_delivery_and_sends_nothing() {
    let (base, _) = emulator("badkey", |c| c.api_key = Some("the-right-key".into())).await;
    let d = deliver(
        &reqwest::Client::new(),
        &settings(&base),
        events(5000),
        soon(30),
    )
    .await;
    assert_accounted(&d, 5000);
    assert_eq!(
        d.not_sent(),
        5000,
        "a configuration error loses nothing: all come back as not sent"
    );
    assert!(d.fatal.as_deref().unwrap().contains("API key is invalid"));
    assert!(
        d.requests <= 8,
        "stops instead of hammering: {} requests",
        d.requests
    );
    assert!(
        !format!("{:?}", settings(&base)).contains("test-key"),
        "the key is never printed"
    );
}

#[tokio::test]
async fn a_413_splits_the_batch_until_it_fits() {
    let (base, _) = emulator("split", |c| c.max_events = 300).await;
    let d = deliver(
        &reqwest::Client::new(),
        &settings(&base),
        events(2000),
        soon(30),
    )
    .await;
    assert_accounted(&d, 2000);
    assert_eq!(d.sent(), 2000);
    assert!(
        d.requests >= 8,
        "2000 → 1000 → 500 → 250: {} requests",
        d.requests
    );
    assert_eq!(stats(&base).await["events"], 2000);
}

#[tokio::test]
async fn with_500s_503s_and_cut_connections_every_event_arrives_exactly_once() {
    let (base, dir) = emulator("faults", |c| {
        c.fail_rate = 0.3;
        c.drop_rate = 0.05;
    })
    .await;
    let mut s = settings(&base);
    s.max_attempts = 40;
    s.batch_events = 100;
    let d = deliver(&reqwest::Client::new(), &s, events(3000), soon(60)).await;
    assert_accounted(&d, 3000);
    assert_eq!(d.sent(), 3000);
    assert!(d.retries > 0, "faults were injected");
    let st = stats(&base).await;
    assert_eq!(
        st["events"], 3000,
        "after the endpoint's insert_id dedupe, each event once: {st}"
    );
    let lines = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let mut ids: Vec<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["insert_id"].to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3000);
}

#[tokio::test]
async fn a_slow_endpoint_returns_unconfirmed_payloads_as_not_sent_by_the_deadline() {
    let (base, _) = emulator("slow", |c| c.latency = Duration::from_millis(800)).await;
    let started = Instant::now();
    let d = deliver(
        &reqwest::Client::new(),
        &settings(&base),
        events(500),
        Instant::now() + Duration::from_millis(300),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "respects the deadline: {:?}",
        started.elapsed()
    );
    assert_accounted(&d, 500);
    assert_eq!(d.not_sent(), 500);
    assert!(
        matches!(&d.fates[0].2, Fate::NotSent(why) if why.contains("deadline")),
        "{:?}",
        d.fates[0].2
    );
}

#[tokio::test]
async fn a_hot_device_is_held_back_without_stalling_the_others() {
    let (base, _) = emulator("throttle", |c| c.eps_limit = Some(20)).await;
    let mut items: Vec<Item> = (0..200)
        .map(|n| event(n, "hot-device", json!({})))
        .collect();
    items.extend((200..800).map(|n| event(n, &format!("cool-{}", n % 60), json!({}))));
    let mut s = settings(&base);
    s.throttle_pause = Duration::from_millis(300);
    s.batch_events = 50;
    let d = deliver(
        &reqwest::Client::new(),
        &s,
        items,
        Instant::now() + Duration::from_millis(2500),
    )
    .await;
    assert_accounted(&d, 800);
    assert!(d.throttled > 0);
    // Held-back ids wait `throttle_pause` between tries instead of hammering the endpoint.
    assert!(
        d.throttled <= 60,
        "{} throttled answers in 2.5 s with a 300 ms pause",
        d.throttled
    );
    let cool_sent = d
        .fates
        .iter()
        .filter(|f| f.0 >= 200 && f.2 == Fate::Sent)
        .count();
    assert_eq!(
        cool_sent, 600,
        "every event of the other devices got through"
    );
    let hot_sent = d
        .fates
        .iter()
        .filter(|f| f.0 < 200 && f.2 == Fate::Sent)
        .count();
    assert!(
        (20..200).contains(&hot_sent),
        "the hot device got its share and the rest waits: {hot_sent}"
    );
    assert!(
        d.fates
            .iter()
            .filter(|f| f.0 < 200)
            .all(|f| !matches!(f.2, Fate::Rejected(_))),
        "throttling holds events back, it never rejects them"
    );
    let why = d
        .fates
        .iter()
        .find(|f| f.0 < 200 && f.2 != Fate::Sent)
        .map(|f| f.2.clone());
    assert!(
        matches!(&why, Some(Fate::NotSent(_))),
        "unconfirmed at the deadline: {why:?}"
    );
}

#[tokio::test]
async fn identifies_group_identifies_and_mutations_go_to_their_apis() {
    let (base, dir) = emulator("routes", |_| {}).await;
    let items = vec![
        event(0, "device-0", json!({})),
        Item { n: 1, kind: Kind::Identify, mutation: None, throttle_id: None, json: r#"{"user_id":"user-1","user_properties":{"$set":{"plan":"pro & co"}}}"#.into() },
        Item { n: 2, kind: Kind::GroupIdentify, mutation: None, throttle_id: None, json: r#"{"group_type":"org","group_value":"acme","group_properties":{"$set":{"tier":"gold"}}}"#.into() },
        Item { n: 3, kind: Kind::Event, mutation: Some("DELETE".into()), throttle_id: None, json: r#"{"event_type":"x","user_id":"user-1","insert_id":"i3","mutation_type":"DELETE"}"#.into() },
        Item { n: 4, kind: Kind::Profile, mutation: Some("UPDATE".into()), throttle_id: None, json: r#"{"user_id":"user-1","mutation_type":"UPDATE","user_properties":{"a":1}}"#.into() },
    ];
    let d = deliver(&reqwest::Client::new(), &settings(&base), items, soon(30)).await;
    assert_accounted(&d, 5);
    assert_eq!(d.sent(), 5, "{:?}", d.fates);
    let st = stats(&base).await;
    assert_eq!(
        (
            st["events"].as_u64(),
            st["identifies"].as_u64(),
            st["group_identifies"].as_u64(),
            st["mutations"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(2))
    );
    let identify = std::fs::read_to_string(dir.join("identify.jsonl")).unwrap();
    assert!(
        identify.contains("pro & co"),
        "form encoding round-trips: {identify}"
    );
}

#[tokio::test]
async fn a_stream_of_payloads_is_delivered_as_it_arrives() {
    let (base, _) = emulator("stream", |c| c.latency = Duration::from_millis(20)).await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let producer = tokio::spawn(async move {
        for item in events(6000) {
            tx.send(item).await.unwrap();
        }
    });
    let mut s = settings(&base);
    s.batch_events = 500;
    let d = s3_import::sink::deliver_stream(&reqwest::Client::new(), &s, rx, soon(30)).await;
    producer.await.unwrap();
    assert_accounted(&d, 6000);
    assert_eq!(d.sent(), 6000);
    assert_eq!(d.requests, 12);
    assert_eq!(stats(&base).await["events"], 6000);
}
