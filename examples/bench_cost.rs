//! The bill, measured on the local AWS stack (`make bench-cost`): objects imported through the
//! DynamoDB, S3 and SQS adapters and the endpoint emulator, with every request counted: the
//! dedupe's and the claims' capacity units by the on-demand rules (see `store::Capacity`), S3
//! requests by price class (an interceptor on the importer's clients), then the scan's read
//! units per kept object (a full pass, then a repeat scan), and $ per million events.
//!
//! Settings (environment): BENCH_QUICK=1 (20 objects of 100 events a case, for CI),
//! BENCH_OBJECTS, BENCH_EVENTS (events per object). Needs AWS_ENDPOINT_URL (the stack).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use futures_util::StreamExt;
use s3_import::aws::Clients;
use s3_import::claims::ClaimStore;
use s3_import::dedupe::DedupeStore;
use s3_import::emulator::{serve, EmulatorConfig};
use s3_import::notify::ObjectRef;
use s3_import::pipeline::ObjectOutcome;
use s3_import::settings::Settings;
use s3_import::store::Capacity;

/// us-east-1 on-demand prices, as published on 2026-12-01 (DynamoDB since the November 2024
/// cut): $ per million request units / requests.
const WRITE_UNIT: f64 = s3_import::store::WRITE_UNIT_DOLLARS;
const READ_UNIT: f64 = s3_import::store::READ_UNIT_DOLLARS;
const S3_PUT_CLASS: f64 = 5.0; // PUT, COPY, POST, LIST: $0.005 per 1,000
const S3_GET_CLASS: f64 = 0.4; // GET, HEAD: $0.0004 per 1,000
const SQS_REQUEST: f64 = 0.40; // standard queue, per million requests (64 KiB chunks)

/// Requests an SDK client sent (every attempt), by price class.
#[derive(Debug, Default)]
struct Requests {
    put_class: AtomicU64,
    get_class: AtomicU64,
}

#[derive(Debug, Clone)]
struct Counter(Arc<Requests>);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "bench-cost request counter"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let request = ctx.request();
        let list = request.uri().contains("list-type=");
        let class = match request.method() {
            "GET" | "HEAD" if !list => &self.0.get_class,
            _ => &self.0.put_class,
        };
        class.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn events(tag: &str, n: u64) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..n {
        out.push_str(
            &serde_json::json!({"id": format!("{tag}-{i}"), "type": "Played",
                "device": format!("device-{}", i % 50), "ts": 1_790_000_000_000u64 + i})
            .to_string(),
        );
        out.push('\n');
    }
    out.into_bytes()
}

const CUSTOM: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "auto",
  "convertToAmplitudeFunc": {"insert_id": "id", "event_type": "type", "device_id": "device", "time": "ts"}}}"#;
const DEFAULT: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "auto",
  "convertToAmplitudeFunc": {"event_type": "type", "device_id": "device", "time": "ts"}}}"#;

/// What one case cost.
#[derive(Debug, Default, serde::Serialize)]
struct Case {
    name: String,
    objects: u64,
    events: u64,
    sent: u64,
    duplicates: u64,
    dedupe: Capacity,
    claims: Capacity,
    s3_put_class: u64,
    s3_get_class: u64,
    sqs_requests: u64,
}

impl Case {
    fn per_1000(&self, units: u64) -> f64 {
        units as f64 * 1000.0 / self.events as f64
    }
    /// $ per million events at the prices above.
    fn dollars_per_million(&self) -> f64 {
        let per_event = |n: u64| n as f64 / self.events as f64;
        let units = (per_event(self.dedupe.write_units) + per_event(self.claims.write_units))
            * WRITE_UNIT
            + (per_event(self.dedupe.read_units) + per_event(self.claims.read_units)) * READ_UNIT;
        let requests = per_event(self.s3_put_class) * S3_PUT_CLASS
            + per_event(self.s3_get_class) * S3_GET_CLASS
            + per_event(self.sqs_requests) * SQS_REQUEST;
        units + requests
    }
}

struct Bench {
    plain: Clients,
    counted: Clients,
    s3_requests: Arc<Requests>,
    sqs_requests: Arc<Requests>,
    bucket: String,
    endpoint: String,
    run: String,
}

impl Bench {
    fn settings(&self, source: &str, converter: &str, extra: &[(&str, &str)]) -> Settings {
        let mut vars: std::collections::HashMap<String, String> = [
            ("S3I_SOURCE", format!("{}-{source}", self.run)),
            (
                "S3I_CONVERTER",
                format!("s3://{}/config/{converter}", self.bucket),
            ),
            ("S3I_REPORTS", format!("s3://{}/reports/", self.bucket)),
            ("S3I_PREFIX", "in/".to_string()),
            ("S3I_CLAIMS_TABLE", "s3i-bench-claims".to_string()),
            ("S3I_DEDUPE_TABLE", "s3i-bench-dedupe".to_string()),
            ("AMPLITUDE_API_KEY", "bench-key".to_string()),
            ("S3I_ENDPOINT", self.endpoint.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        Settings::from_lookup(&|k| vars.get(k).cloned()).expect("settings")
    }

    async fn put(&self, key: &str, body: Vec<u8>) {
        let put = self.plain.s3.put_object().bucket(&self.bucket).key(key);
        put.body(body.into()).send().await.expect("put");
    }

    fn counts(&self) -> (u64, u64, u64) {
        let s3 = &self.s3_requests;
        let sqs = &self.sqs_requests;
        let sqs_total =
            sqs.put_class.load(Ordering::Relaxed) + sqs.get_class.load(Ordering::Relaxed);
        (
            s3.put_class.load(Ordering::Relaxed),
            s3.get_class.load(Ordering::Relaxed),
            sqs_total,
        )
    }

    /// Imports `keys` (already put) with the importer, four at a time, counting.
    async fn import(&self, name: &str, source: &str, converter: &str, keys: &[String]) -> Case {
        let p = s3_import::aws::pipeline(&self.counted, self.settings(source, converter, &[]));
        let dedupe0 = p.dedupe().map(|d| d.capacity()).unwrap_or_default();
        let claims0 = p.claims().capacity();
        let (put0, get0, sqs0) = self.counts();
        let outcomes: Vec<ObjectOutcome> = futures_util::stream::iter(keys)
            .map(|key| {
                let obj = ObjectRef {
                    bucket: self.bucket.clone(),
                    key: key.clone(),
                    version_id: None,
                    size: None,
                    etag: None,
                    sequencer: None,
                };
                let p = &p;
                async move { p.import_to_end(&obj, "bench").await }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let (put1, get1, sqs1) = self.counts();
        let mut case = Case {
            name: name.into(),
            objects: keys.len() as u64,
            dedupe: p
                .dedupe()
                .map(|d| d.capacity())
                .unwrap_or_default()
                .since(dedupe0),
            claims: p.claims().capacity().since(claims0),
            s3_put_class: put1 - put0,
            s3_get_class: get1 - get0,
            sqs_requests: sqs1 - sqs0,
            ..Case::default()
        };
        for o in outcomes {
            let ObjectOutcome::Completed(r) = o else {
                panic!("{name}: an object did not complete: {o:?}");
            };
            case.events += r.counts.converted;
            case.sent += r.counts.sent;
            case.duplicates += r.counts.duplicates;
        }
        case
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let objects = env_num("BENCH_OBJECTS", if quick { 20 } else { 100 });
    let per_object = env_num("BENCH_EVENTS", if quick { 100 } else { 1000 });
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        eprintln!("bench_cost needs the local stack: AWS_ENDPOINT_URL=http://127.0.0.1:4566 (make bench-cost)");
        std::process::exit(2);
    }
    let plain = Clients::from_env().await;
    for (table, ttl) in [
        ("s3i-bench-claims", None),
        ("s3i-bench-dedupe", Some("expires_at")),
    ] {
        s3_import::aws::ensure_table(&plain.dynamodb, table, ttl)
            .await
            .expect("table");
    }
    let s3_requests = Arc::new(Requests::default());
    let sqs_requests = Arc::new(Requests::default());
    let s3 = aws_sdk_s3::Client::from_conf(
        plain
            .s3
            .config()
            .to_builder()
            .interceptor(Counter(s3_requests.clone()))
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        plain
            .sqs
            .config()
            .to_builder()
            .interceptor(Counter(sqs_requests.clone()))
            .build(),
    );
    let counted = Clients {
        config: plain.config.clone(),
        s3: s3.clone(),
        source_s3: s3,
        dynamodb: plain.dynamodb.clone(),
        sqs,
    };
    let dir = std::env::temp_dir().join(format!("s3i-bench-cost-{}", std::process::id()));
    let (tx, rx) = tokio::sync::oneshot::channel::<std::net::SocketAddr>();
    let mut config = EmulatorConfig::new(dir);
    config.api_key = Some("bench-key".into());
    tokio::spawn(async move {
        let _ = serve("127.0.0.1:0".parse().unwrap(), config, move |a| {
            let _ = tx.send(a);
        })
        .await;
    });
    let endpoint = format!("http://{}", rx.await.expect("emulator"));
    let run = format!("bench-cost-{}-{}", std::process::id(), chrono_free_secs());
    let bucket = run.clone();
    plain
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let b = Bench {
        plain,
        counted,
        s3_requests,
        sqs_requests,
        bucket,
        endpoint,
        run,
    };
    b.put("config/custom.json", CUSTOM.as_bytes().to_vec())
        .await;
    b.put("config/default.json", DEFAULT.as_bytes().to_vec())
        .await;
    let keys = |case: &str| -> Vec<String> {
        (0..objects)
            .map(|i| format!("in/{case}/o{i:04}.json"))
            .collect()
    };
    for (case, i) in ["default", "custom", "dup"].iter().zip(0..) {
        for (n, key) in keys(case).iter().enumerate() {
            // The duplicates repeat the custom case's events, object for object.
            let tag = if *case == "dup" {
                format!("custom-{n}")
            } else {
                format!("{case}-{n}")
            };
            b.put(key, events(&tag, per_object)).await;
        }
        let _ = i;
    }
    eprintln!("{objects} objects of {per_object} events a case; importing…");
    let cases = vec![
        b.import(
            "default insert_ids (S3I_DEDUPE=auto)",
            "default",
            "default.json",
            &keys("default"),
        )
        .await,
        b.import(
            "custom insert_ids",
            "custom",
            "custom.json",
            &keys("custom"),
        )
        .await,
        b.import(
            "all duplicates (custom ids seen)",
            "custom",
            "custom.json",
            &keys("dup"),
        )
        .await,
    ];
    assert_eq!(
        cases[2].sent, 0,
        "the duplicate file sent events: {:?}",
        cases[2]
    );

    // The scan over kept objects: a full pass, then a repeat (S3 dates to the second: objects
    // written more than a second before; margin 0 here, the default is an hour).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let settings = b.settings("custom", "custom.json", &[("S3I_SCAN_MARGIN_SECS", "0")]);
    let p = s3_import::aws::pipeline(&b.counted, settings);
    let (put0, get0, _) = b.counts();
    let first = p
        .scan(&b.bucket, "in/custom/", false, "bench", |_| {})
        .await
        .expect("scan");
    let second = p
        .scan(&b.bucket, "in/custom/", false, "bench", |_| {})
        .await
        .expect("scan");
    let (put1, get1, _) = b.counts();
    let kept = first.completed_before.max(1) as f64;
    let rcu_first = first.claims_capacity.read_units as f64 / kept;
    let rcu_repeat = second.claims_capacity.read_units as f64 / kept;
    let list_requests = (put1 - put0) as f64 / 2.0;
    let _ = get1 - get0;

    println!("bench-cost: {objects} objects of {per_object} events a case, on the local stack; prices us-east-1 on-demand, 2026-12-01:");
    println!("  DynamoDB ${WRITE_UNIT}/M write units, ${READ_UNIT}/M read units; S3 $0.005/1,000 PUT-class, $0.0004/1,000 GET-class; SQS ${SQS_REQUEST}/M requests");
    println!();
    println!("| case | dedupe WCU / 1k ev | dedupe RCU / 1k ev | claims WCU / 1k ev | claims RCU / 1k ev | S3 PUT-class / obj | S3 GET-class / obj | SQS / obj | $ / M events |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for c in &cases {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.3} |",
            c.name,
            c.per_1000(c.dedupe.write_units),
            c.per_1000(c.dedupe.read_units),
            c.per_1000(c.claims.write_units),
            c.per_1000(c.claims.read_units),
            c.s3_put_class as f64 / c.objects as f64,
            c.s3_get_class as f64 / c.objects as f64,
            c.sqs_requests as f64 / c.objects as f64,
            c.dollars_per_million()
        );
    }
    println!();
    println!(
        "scan over {} kept objects: {:.3} read units per object on a full pass, {:.3} on a repeat scan ({} unchanged, not read); {:.1} LIST requests per scan",
        kept, rcu_first, rcu_repeat, second.unchanged, list_requests
    );
    // Hourly scans, a full pass daily (the defaults), per million kept objects and month: a
    // repeat scan's reads do not grow with the kept objects (the mark, and what changed).
    let repeat_reads = second.claims_capacity.read_units as f64;
    let mark_writes = 720.0 * second.claims_capacity.write_units as f64;
    let month_reads = 30.0 * 1e6 * rcu_first + 690.0 * repeat_reads;
    let month_lists = 720.0 * (1e6 / 1000.0);
    let dynamo = month_reads / 1e6 * READ_UNIT + mark_writes / 1e6 * WRITE_UNIT;
    let lists = month_lists / 1e6 * S3_PUT_CLASS;
    println!(
        "monthly scan cost per million kept objects (hourly scans, a full pass daily): ${dynamo:.2} DynamoDB + ${lists:.2} S3 LIST = ${:.2} (every scan a full pass: ${:.2} + ${lists:.2})",
        dynamo + lists,
        720.0 * 1e6 * rcu_first / 1e6 * READ_UNIT,
    );
    println!(
        "{}",
        serde_json::json!({"cases": cases, "scan": {"kept": kept, "rcu_first": rcu_first,
            "rcu_repeat": rcu_repeat, "unchanged": second.unchanged}})
    );
}

/// Seconds since the epoch (for unique names).
fn chrono_free_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
