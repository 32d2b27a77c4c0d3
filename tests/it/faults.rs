//! Faults the emulator injects, as a client on loopback sees them.

use std::net::SocketAddr;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use s3_import::emulator::{serve, EmulatorConfig};
use serde_json::Value;

async fn emulator(
    name: &str,
    tweak: impl FnOnce(&mut EmulatorConfig),
) -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("s3-import-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = EmulatorConfig::new(dir.clone());
    tweak(&mut config);
    let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    tokio::spawn(async move {
        let _ = serve("127.0.0.1:0".parse().unwrap(), config, move |a| {
            let _ = tx.send(a);
        })
        .await;
    });
    (format!("http://{}", rx.await.unwrap()), dir)
}

/// Panics so far, by thread name. A `#[tokio::test]` runs the emulator's connection tasks on
/// the test's own thread, and a panic in one of them also closes its connection (hyper's debug
/// builds panic on a response whose content-length contradicts its body): a test of cut
/// connections must see that none happened.
fn panics_on_this_thread() -> Vec<String> {
    static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            let mut panics = PANICS.lock().unwrap_or_else(|p| p.into_inner());
            panics.push((thread, info.to_string()));
            drop(panics);
            previous(info);
        }));
    });
    let here = std::thread::current().name().unwrap_or("").to_string();
    let panics = PANICS.lock().unwrap_or_else(|p| p.into_inner());
    panics
        .iter()
        .filter(|(t, _)| *t == here)
        .map(|(_, p)| p.clone())
        .collect()
}

async fn stats(base: &str) -> Value {
    let text = reqwest::get(format!("{base}/stats"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_dropped_connection_closes_at_once_after_the_events_landed() {
    assert!(panics_on_this_thread().is_empty());
    let (base, dir) = emulator("drop", |c| c.drop_rate = 1.0).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let body = r#"{"api_key":"k","events":[
        {"event_type":"Played","device_id":"device-1","insert_id":"a","time":1700000000000},
        {"event_type":"Played","device_id":"device-2","insert_id":"b","time":1700000000001}]}"#;
    let started = Instant::now();
    let sent = client
        .post(format!("{base}/2/httpapi"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let e = match sent {
        Ok(r) => r
            .bytes()
            .await
            .expect_err("the response must not arrive whole"),
        Err(e) => e,
    };
    let took = started.elapsed();
    assert!(!e.is_timeout(), "a timeout, not a closed connection: {e:?}");
    assert!(e.is_request() || e.is_connect() || e.is_body(), "{e:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {e:?}");
    let panics = panics_on_this_thread();
    assert!(panics.is_empty(), "the emulator panicked: {panics:?}");

    // The events were ingested before the connection was cut.
    let st = stats(&base).await;
    assert_eq!(st["events"], 2, "{st}");
    assert_eq!(st["dropped_connections"], 1, "{st}");
    let lines = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
}

#[tokio::test]
async fn identify_connections_are_cut_too() {
    assert!(panics_on_this_thread().is_empty());
    let (base, dir) = emulator("drop-identify", |c| c.drop_rate = 1.0).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let form = "api_key=k&identification=%7B%22user_id%22%3A%22user-0001%22%7D";
    let sent = client
        .post(format!("{base}/identify"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await;
    let e = match sent {
        Ok(r) => r
            .bytes()
            .await
            .expect_err("the response must not arrive whole"),
        Err(e) => e,
    };
    assert!(!e.is_timeout(), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(panics_on_this_thread().is_empty());
    assert_eq!(stats(&base).await["identifies"], 1);
    assert!(std::fs::read_to_string(dir.join("identify.jsonl"))
        .unwrap()
        .contains("user-0001"));
}
