//! CloudWatch Embedded Metric Format: one JSON log line per invocation that CloudWatch turns
//! into metrics (namespace `s3-import`, dimension `Source`), with no API call and no agent.
//! `ConverterUnusable` counts the objects that wait for the converter file to be fixed (the
//! template's `ConverterUnusableAlarm` watches it). `DynamoDBReadUnits`/`DynamoDBWriteUnits`
//! are the capacity units of the objects that ended (all their invocations'), per source.

use serde_json::{json, Map, Value};

use crate::pipeline::{EventResult, ObjectOutcome, RetryReason};

/// The EMF line for one invocation's result (`now_ms`: the timestamp to record).
pub fn emf_line(source: &str, result: &EventResult, now_ms: i64) -> String {
    let mut m: Vec<(&str, f64)> = vec![
        ("ObjectsCompleted", 0.0),
        ("ObjectsFailed", 0.0),
        ("ObjectsUnfinished", 0.0),
        ("ConverterUnusable", 0.0),
        ("ObjectsSkipped", 0.0),
        ("NoticesIgnored", 0.0),
        ("MessagesUnreadable", 0.0),
        ("Records", 0.0),
        ("RecordsSkipped", 0.0),
        ("RecordsInvalid", 0.0),
        ("EventsSent", 0.0),
        ("EventsDuplicate", 0.0),
        ("EventsRejected", 0.0),
        ("HttpRetries", 0.0),
        ("Throttled", 0.0),
        ("HttpRequests", 0.0),
        ("DedupeRequests", 0.0),
        ("DynamoDBReadUnits", 0.0),
        ("DynamoDBWriteUnits", 0.0),
    ];
    let mut add = |name: &str, v: u64| {
        if let Some(slot) = m.iter_mut().find(|(n, _)| *n == name) {
            slot.1 += v as f64;
        }
    };
    for msg in &result.messages {
        add("NoticesIgnored", msg.ignored.len() as u64);
        add("MessagesUnreadable", msg.error.is_some() as u64);
        for (_, outcome) in &msg.objects {
            match outcome {
                ObjectOutcome::Completed(r) | ObjectOutcome::Failed(r) => {
                    let failed = matches!(outcome, ObjectOutcome::Failed(_));
                    add(
                        if failed {
                            "ObjectsFailed"
                        } else {
                            "ObjectsCompleted"
                        },
                        1,
                    );
                    let c = &r.counts;
                    add("Records", c.records);
                    add("RecordsSkipped", c.skipped);
                    add("RecordsInvalid", c.invalid);
                    add("EventsSent", c.sent);
                    add("EventsDuplicate", c.duplicates);
                    add("EventsRejected", c.rejected);
                    add("HttpRetries", r.http_retries);
                    add("Throttled", r.throttled);
                    // Requests of the object's last invocation; units of all its invocations.
                    add("HttpRequests", r.http_requests);
                    add("DedupeRequests", r.dedupe_requests);
                    add("DynamoDBReadUnits", r.dynamodb.read_units);
                    add("DynamoDBWriteUnits", r.dynamodb.write_units);
                }
                ObjectOutcome::Retry(RetryReason::ConverterUnusable(_)) => {
                    add("ObjectsUnfinished", 1);
                    add("ConverterUnusable", 1);
                }
                o if o.unfinished() => add("ObjectsUnfinished", 1),
                _ => add("ObjectsSkipped", 1),
            }
        }
    }
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({"Timestamp": now_ms, "CloudWatchMetrics": [{
            "Namespace": "s3-import",
            "Dimensions": [["Source"]],
            "Metrics": m.iter().map(|(n, _)| json!({"Name": n, "Unit": "Count"})).collect::<Vec<_>>(),
        }]}),
    );
    doc.insert("Source".into(), Value::String(source.to_string()));
    for (n, v) in &m {
        doc.insert((*n).to_string(), json!(v));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::MessageResult;
    use crate::report::{Counts, Report};

    #[test]
    fn one_line_carries_every_metric_with_its_definition() {
        let report = Report {
            counts: Counts {
                records: 10,
                converted: 8,
                skipped: 1,
                invalid: 1,
                payloads: 8,
                sent: 6,
                duplicates: 2,
                ..Counts::default()
            },
            http_retries: 3,
            dynamodb: crate::store::Capacity {
                read_units: 1,
                write_units: 7,
            },
            ..Report::default()
        };
        let obj = crate::ops::object_ref("s3://b/k").unwrap();
        let result = EventResult {
            messages: vec![MessageResult {
                message_id: Some("m".into()),
                objects: vec![
                    (obj.clone(), ObjectOutcome::Completed(Box::new(report))),
                    (
                        obj.clone(),
                        ObjectOutcome::Retry(RetryReason::other("endpoint down")),
                    ),
                    (
                        obj,
                        ObjectOutcome::Retry(RetryReason::ConverterUnusable(
                            "bad converter file s3://c/k: nosuchop".into(),
                        )),
                    ),
                ],
                ignored: vec![crate::notify::Ignored::TestEvent],
                error: None,
                retry: true,
                retry_after: None,
                receipt: None,
            }],
        };
        let v: Value =
            serde_json::from_str(&emf_line("events", &result, 1_700_000_000_000)).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "s3-import");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Source"]])
        );
        let defined = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        for d in defined {
            assert!(v[d["Name"].as_str().unwrap()].is_number(), "{d}");
        }
        assert_eq!(v["Source"], "events");
        assert_eq!(v["ObjectsCompleted"], 1.0);
        assert_eq!(v["ObjectsUnfinished"], 2.0);
        assert_eq!(
            v["ConverterUnusable"], 1.0,
            "a broken converter is counted apart"
        );
        assert_eq!(v["EventsSent"], 6.0);
        assert_eq!(v["EventsDuplicate"], 2.0);
        assert_eq!(v["NoticesIgnored"], 1.0);
        assert_eq!(v["HttpRetries"], 3.0);
        assert_eq!(v["DynamoDBReadUnits"], 1.0);
        assert_eq!(v["DynamoDBWriteUnits"], 7.0);
    }
}
