//! Parquet objects imported from the local AWS stack (LocalStack) by ranged reads: a
//! multi-row-group object over several short invocations, each resuming at its checkpoint's
//! row group without fetching the earlier ones again; and broken files failing with their
//! reason. Run alone with `AWS_ENDPOINT_URL` set to a running stack (`make test` starts one).
//!
//! The object is tests/parquet/events.parquet, written by pyarrow (tests/parquet/gen.py):
//! 4,000 events in 40 row groups of 100 rows.

use crate::common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use s3_import::aws::{AwsPipeline, Clients};
use s3_import::claims::dynamo::DynamoClaims;
use s3_import::claims::{ClaimKey, ClaimState, ClaimStore};
use s3_import::decode::parquet::ParquetFile;
use s3_import::emulator::EmulatorConfig;
use s3_import::notify::ObjectRef;
use s3_import::pipeline::ObjectOutcome;
use s3_import::report::Report;
use s3_import::settings::Settings;

use common::{soon, unique};

use common::{CLAIMS, DEDUPE};

/// Reads the pyarrow-written events: insert_id, event type, device, time, and a note.
const CONVERTER: &str = r#"{"converterConfig": {"fileType": "parquet", "compressionType": "auto",
  "convertToAmplitudeFunc": {"insert_id": "id", "event_type": "type", "device_id": "device",
    "time": "ts", "event_properties": {"note": "note"}}}}"#;

/// The fixture's path.
fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parquet/events.parquet")
}

/// The local stack's clients, with the test tables.
async fn clients() -> Clients {
    common::stack_with_tables().await
}

/// One test's world: a bucket with the converter, an emulator, and settings for both.
struct World {
    c: Clients,
    bucket: String,
    received: PathBuf,
    vars: HashMap<String, String>,
}

impl World {
    async fn new(name: &str, emulator: impl FnOnce(&mut EmulatorConfig)) -> World {
        let c = clients().await;
        let bucket = unique(&format!("t-{name}"));
        c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let (endpoint, dir) = common::emulator(&format!("s3i-parquet-{name}"), |config| {
            config.api_key = Some("test-key".into());
            emulator(config);
        })
        .await;
        let w = World {
            c,
            vars: [
                ("S3I_SOURCE", unique(name)),
                (
                    "S3I_CONVERTER",
                    format!("s3://{bucket}/config/converter.json"),
                ),
                ("S3I_REPORTS", format!("s3://{bucket}/reports/")),
                ("S3I_PREFIX", "in/".to_string()),
                ("S3I_CLAIMS_TABLE", CLAIMS.to_string()),
                ("S3I_DEDUPE_TABLE", DEDUPE.to_string()),
                ("AMPLITUDE_API_KEY", "test-key".to_string()),
                ("S3I_ENDPOINT", endpoint),
                ("S3I_STOP_MARGIN_SECS", "1".to_string()),
                ("S3I_MAX_RUN_SECS", "60".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            bucket,
            received: dir,
        };
        w.put("config/converter.json", CONVERTER.as_bytes()).await;
        w
    }

    fn settings(&self) -> Settings {
        let vars = self.vars.clone();
        Settings::from_lookup(&|k| vars.get(k).cloned()).unwrap()
    }

    fn pipeline(&self) -> AwsPipeline {
        s3_import::aws::pipeline(&self.c, self.settings())
    }

    async fn put(&self, key: &str, body: &[u8]) {
        self.c
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
    }

    fn obj(&self, key: &str) -> ObjectRef {
        ObjectRef {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            version_id: None,
            size: None,
            etag: None,
            sequencer: None,
        }
    }

    async fn claim(&self, key: &str) -> Option<ClaimState> {
        let key = ClaimKey {
            source: self.vars["S3I_SOURCE"].clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
        };
        DynamoClaims::new(self.c.dynamodb.clone(), CLAIMS)
            .get(&key)
            .await
            .unwrap()
    }

    /// insert_id → how many times the endpoint accepted it.
    fn received(&self) -> std::collections::BTreeMap<String, u32> {
        common::received(&self.received)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_row_group_object_resumes_by_row_group_without_fetching_earlier_ones() {
    let w = World::new("pq-resume", |c| c.latency = Duration::from_millis(150)).await;
    let mut w = w;
    w.vars.insert("S3I_MAX_IN_FLIGHT".into(), "1".into());
    w.vars.insert("S3I_BATCH_EVENTS".into(), "100".into());
    let data = std::fs::read(fixture()).unwrap();
    let file = ParquetFile::open(std::fs::File::open(fixture()).unwrap()).unwrap();
    let groups = file.row_groups().to_vec();
    assert_eq!((groups.len(), file.rows()), (40, 4000));
    let size = data.len() as u64;
    w.put("in/events.parquet", &data).await;
    let p = w.pipeline();

    // Each invocation has 4 s; 40 requests of 150 ms one at a time need about 6 s.
    let mut checkpoints = Vec::new();
    let mut invocations = 0;
    let report = loop {
        invocations += 1;
        assert!(invocations <= 30, "not finished after 30 invocations");
        let checkpoint = match w.claim("in/events.parquet").await {
            Some(ClaimState::InProgress { checkpoint, .. }) => checkpoint,
            None => 0,
            other => panic!("{other:?}"),
        };
        let outcome = p
            .import(
                &w.obj("in/events.parquet"),
                soon(4),
                &format!("inv-{invocations}"),
            )
            .await;
        eprintln!(
            "invocation {invocations} from record {checkpoint}: {}",
            outcome.label()
        );
        checkpoints.push(checkpoint);
        match outcome {
            ObjectOutcome::Completed(report) => break *report,
            ObjectOutcome::Paused { checkpoint: c } => assert!(c > checkpoint),
            // No record confirmed in time (a slow, shared machine): tried again.
            ObjectOutcome::Retry(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(invocations >= 2, "the object needed several invocations");
    assert_eq!(report.invocations, invocations);
    assert_eq!((report.counts.records, report.counts.sent), (4000, 4000));
    assert!(report.counts.add_up(), "{:?}", report.counts);
    let got = w.received();
    assert_eq!(got.len(), 4000, "every event arrived");
    assert!(got.values().all(|&n| n == 1), "and only once");

    // Bytes read per invocation: the footer (within the last 64 KiB, read with the HEAD), the
    // magic at the start, then the row groups from the one holding the checkpoint on, each at
    // most once. (Reading runs ahead of sending, so an invocation reads past the checkpoint it
    // saves.) A resume that fetched earlier row groups again would read more than that.
    eprintln!(
        "object {size} bytes; bytes read per invocation: {:?}",
        report.bytes_read
    );
    assert_eq!(report.bytes_read.len(), checkpoints.len());
    let tail = size.min(64 << 10);
    for (k, (&read, &checkpoint)) in report.bytes_read.iter().zip(&checkpoints).enumerate() {
        let from = file.position_of(checkpoint).row_group;
        let rest = size - groups[from].bytes.start;
        assert!(
            read <= tail + 4 + rest,
            "invocation {} from record {checkpoint} (row group {from}) read {read} bytes, more \
             than the footer and the row groups from {from} on ({} bytes)",
            k + 1,
            tail + 4 + rest
        );
    }
    let resumed_late = checkpoints
        .iter()
        .any(|&c| c > 0 && groups[file.position_of(c).row_group].bytes.start > tail + 4);
    assert!(
        resumed_late,
        "some invocation resumed past the first {} bytes, so the bound above says something: {checkpoints:?}",
        tail + 4
    );
}

/// `data` with the second half of one column chunk of row group `group` overwritten (as
/// tests/parquet/gen.py's corrupt_page does).
fn corrupt_page(data: &[u8], group: usize, column: usize) -> Vec<u8> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(data)).unwrap();
    let c = reader.metadata().row_group(group).column(column);
    let (start, len) = c.byte_range();
    let mut out = data.to_vec();
    for b in &mut out[(start + len / 2) as usize..(start + len) as usize] {
        *b = 0xFF;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_parquet_objects_fail_with_their_reason_and_count_the_records_before_the_break() {
    let w = World::new("pq-broken", |_| {}).await;
    let data = std::fs::read(fixture()).unwrap();
    w.put("in/not.parquet", b"{\"id\": \"x\", \"type\": \"open\"}\n")
        .await;
    w.put("in/cut.parquet", &data[..data.len() - 100]).await;
    // Row group 20's `note` column (the last): rows 0–1999 read before the break.
    w.put("in/corrupt.parquet", &corrupt_page(&data, 20, 4))
        .await;
    let p = w.pipeline();
    let failed = |o: ObjectOutcome| -> Report {
        match o {
            ObjectOutcome::Failed(r) => *r,
            other => panic!("expected failed, got {other:?}"),
        }
    };

    let not = failed(p.import(&w.obj("in/not.parquet"), soon(60), "t1").await);
    let reason = not.reason.clone().unwrap();
    assert!(reason.contains("not a Parquet file"), "{reason}");
    assert_eq!(not.counts.records, 0);

    let cut = failed(p.import(&w.obj("in/cut.parquet"), soon(60), "t2").await);
    let reason = cut.reason.clone().unwrap();
    assert!(reason.contains("truncated"), "{reason}");
    assert_eq!(cut.counts.records, 0);
    assert!(
        w.received().is_empty(),
        "nothing sent from the unreadable files"
    );

    let bad = failed(p.import(&w.obj("in/corrupt.parquet"), soon(60), "t3").await);
    let reason = bad.reason.clone().unwrap();
    eprintln!("corrupt page: {reason}");
    assert!(
        reason.starts_with("unreadable object: Parquet:")
            && reason.contains("column `note`")
            && reason.contains("row group 20"),
        "{reason}"
    );
    assert_eq!(
        (bad.counts.records, bad.counts.sent),
        (2000, 2000),
        "{:?}",
        bad.counts
    );
    assert!(bad.counts.add_up(), "{:?}", bad.counts);
    assert_eq!(
        w.received().len(),
        2000,
        "the records before the break were sent"
    );
    match w.claim("in/corrupt.parquet").await {
        Some(ClaimState::Failed { reason, .. }) => assert!(reason.contains("row group 20")),
        other => panic!("{other:?}"),
    }
    // Fetched: the footer and magic, then row groups 0–20 (and 21, read ahead), not the rest.
    let read = bad.bytes_read.iter().sum::<u64>();
    assert!(read < data.len() as u64, "{read} of {} bytes", data.len());
}
