//! The sample events shipped under `infra/events/` (for `cargo lambda invoke --data-file`)
//! are read the way the function reads them.

use s3_import::notify::{messages, Ignored, Notice};
use serde_json::Value;

fn sample(name: &str) -> Value {
    let path = format!("{}/infra/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn keys(event: &Value) -> Vec<(Option<String>, String)> {
    messages(event)
        .into_iter()
        .flat_map(|m| {
            let id = m.message_id.clone();
            m.notices.unwrap().into_iter().map(move |n| match n {
                Notice::Import(o) => (id.clone(), format!("{}/{}", o.bucket, o.key)),
                Notice::Ignore(i) => (id.clone(), format!("{i:?}")),
                Notice::Scan(s) => (id.clone(), format!("scan {}/{:?}", s.bucket, s.prefix)),
            })
        })
        .collect()
}

#[test]
fn every_sample_event_names_the_object_it_means() {
    let want = "my-events-bucket/events/2024/03/01/export part 1.json.gz".to_string();
    assert_eq!(keys(&sample("s3-put.json")), vec![(None, want.clone())]);
    assert_eq!(
        keys(&sample("sqs-s3-put.json")),
        vec![(
            Some("0a1b2c3d-0000-4000-8000-000000000001".into()),
            want.clone()
        )]
    );
    assert_eq!(
        keys(&sample("eventbridge-object-created.json")),
        vec![(None, want)]
    );
    assert_eq!(
        keys(&sample("s3-test-event.json")),
        vec![(None, format!("{:?}", Ignored::TestEvent))]
    );
    assert_eq!(
        keys(&sample("scheduled-scan.json")),
        vec![(None, "scan my-events-bucket/Some(\"events/\")".to_string())]
    );
}
