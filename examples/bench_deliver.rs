//! Bench: deliver N realistic events to an endpoint (the emulator) with K requests in flight.
//! Usage: bench_deliver BASE_URL EVENTS IN_FLIGHT [BATCH] → prints {"events", "sent", "seconds", "cpu_seconds"}.

use std::time::{Duration, Instant};

use s3_import::convert::Kind;
use s3_import::sink::{deliver, Item, SinkSettings};

/// CPU time of this process's threads, from /proc: each thread's `schedstat` counts its time
/// on a CPU in nanoseconds (the process's `stat` counts in 10 ms ticks, too coarse for a send
/// of 0.1 s). The runtime's threads live until after the second reading.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .expect("usage: bench_deliver BASE_URL EVENTS IN_FLIGHT")
        .clone();
    let events: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let in_flight: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let batch: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2000);
    // Ids unique to this run: the endpoint's dedupe must not make a later run cheaper.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let items: Vec<Item> = (0..events)
        .map(|n| {
            let device = format!("{:08x}-device", n % 10_000);
            let json = format!(
                r#"{{"event_type":"Product Viewed","user_id":"user_{}","device_id":"{device}","time":{},"insert_id":"bench/{run}/{n}","platform":"iOS","os_name":"iOS","country":"Deutschland","city":"München","event_properties":{{"product_id":"SKU-{}","price":19.99,"category":{{"name":"Küche & Haushalt","path":["home","kitchen"]}},"query":"\"quoted\" search"}},"user_properties":{{"plan":"pro","cohort":"2023-Q4"}},"$skip_user_properties_sync":true}}"#,
                n % 100_000,
                1_709_600_000_000 + n,
                n % 10_000
            );
            Item { n, kind: Kind::Event, mutation: None, throttle_id: Some(device), json }
        })
        .collect();
    let mut settings = SinkSettings::new("bench-key", base);
    settings.max_in_flight = in_flight;
    settings.batch_events = batch;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let delivery = runtime.block_on(async {
        let client = reqwest::Client::new();
        deliver(
            &client,
            &settings,
            items,
            tokio::time::Instant::now() + Duration::from_secs(600),
        )
        .await
    });
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{{\"events\": {events}, \"sent\": {}, \"seconds\": {seconds}, \"cpu_seconds\": {cpu}}}",
        delivery.sent()
    );
}
