//! Every event shape that can name an object → object references.
//!
//! S3 notifications (direct, inside SQS messages, inside SNS envelopes in SQS), EventBridge
//! "Object Created" events, and the scan mode's own messages. Keys in S3 notifications and in
//! EventBridge events are form-URL-encoded (`+` is a space, then percent-decoding as UTF-8; AWS
//! Powertools decodes EventBridge keys the same way, and LocalStack's S3 sends them encoded). Parsing is deliberately tolerant: emulators leave fields out and AWS keeps
//! adding some (`eventVersion` 2.1 … 2.x), so only what the importer needs is required.
//! Test events, deletions and other non-create events, "folder" keys ending in `/` and
//! zero-byte objects are acknowledged as ignored, with the reason, never processed.

use serde_json::{json, Value};

/// An object to import, as the notice named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub size: Option<u64>,
    pub etag: Option<String>,
    /// Orders events of the same key (S3 notifications and EventBridge).
    pub sequencer: Option<String>,
}

/// Why a notice names nothing to import. Each is acknowledged and counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// `s3:TestEvent`, sent when a notification configuration is saved.
    TestEvent,
    /// A deletion, restore, tagging or any other event that is not a creation.
    NotCreated(String),
    /// A key ending in `/`: a console "folder".
    Folder(String),
    /// A zero-byte object: nothing to read.
    Empty(String),
}

/// What one notice (one S3 record, one EventBridge event, one of our queue messages) asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Import(ObjectRef),
    Ignore(Ignored),
    /// List a prefix and import (or queue) what has no final claim.
    Scan(ScanRequest),
}

/// A scan asked for by a message: a schedule's event, or a scan going on after its time budget.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanRequest {
    pub bucket: String,
    /// `None`: the importer's own prefix (`S3I_PREFIX`).
    pub prefix: Option<String>,
    /// Go on after this key.
    pub start_after: Option<String>,
    /// The pass a continued scan carries (`None`: a new scan plans its own).
    pub pass: Option<ScanPass>,
}

/// A scan under way, carried from invocation to invocation by its continuation messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanPass {
    /// When the scan began (epoch seconds).
    pub started: i64,
    /// Claims are read only for objects last modified at or after this (epoch seconds);
    /// `None`: every claim (a full pass).
    pub since: Option<i64>,
    /// When the last full pass began (this one's start, for a full pass).
    pub full_at: i64,
    /// The oldest last-modified time of the objects found not final so far.
    pub open_from: Option<i64>,
    /// Whether the scan began at the listing's first key; only such a scan leaves a mark.
    pub marks: bool,
}

/// What the importer puts on its queue. Only the queue adapters write it out ([`Self::body`]),
/// and [`messages`] reads it back as a [`Notice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueMessage {
    /// Import this object, or go on with it: a continuation, or what a scan found
    /// (`{"s3import": {"bucket", "key", "version_id"?, "size"?, "etag"?}}`).
    Import(ObjectRef),
    /// Go on with a scan (`{"s3import-scan": {"bucket", "prefix", "start_after"}}`).
    Scan(ScanRequest),
}

impl QueueMessage {
    /// The message's body on the queue.
    pub fn body(&self) -> String {
        match self {
            QueueMessage::Import(obj) => json!({"s3import": {
                "bucket": obj.bucket, "key": obj.key, "version_id": obj.version_id,
                "size": obj.size, "etag": obj.etag, "reason": "continue"
            }}),
            QueueMessage::Scan(scan) => {
                let mut doc = json!({"s3import-scan": {
                    "bucket": scan.bucket, "prefix": scan.prefix, "start_after": scan.start_after
                }});
                if let Some(pass) = &scan.pass {
                    doc["s3import-scan"]["pass"] = json!(pass);
                }
                doc
            }
        }
        .to_string()
    }
}

/// One message's notices, with the message id for SQS partial-batch responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The SQS `messageId`, when the notices came in an SQS message.
    pub message_id: Option<String>,
    /// How to hand an SQS message back to its queue for later (its queue and receipt handle).
    pub receipt: Option<Receipt>,
    /// The notices, or why the message could not be read (it then goes back to the queue,
    /// and after `maxReceiveCount` to the dead-letter queue).
    pub notices: Result<Vec<Notice>, Unreadable>,
}

/// An SQS message's queue (`eventSourceARN`: an ARN from Lambda, the URL from our worker) and
/// receipt handle, with which its visibility can be changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub queue: String,
    pub handle: String,
}

/// A key that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("bad percent escape at byte {0} of the key")]
    BadEscape(usize),
    #[error("the decoded key is not valid UTF-8")]
    NotUtf8,
}

/// Why a message names nothing the importer can read (it goes back to the queue, and after
/// `maxReceiveCount` to the dead-letter queue).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// A field the shape needs is missing (what, in the shape's own terms).
    #[error("{0}")]
    Missing(&'static str),
    /// The body, or an SNS envelope's `Message`, is not JSON.
    #[error("{what} is not JSON: {error}")]
    NotJson { what: &'static str, error: String },
    /// A key that cannot be decoded.
    #[error("{what} {raw:?}: {error}")]
    Key {
        what: &'static str,
        raw: String,
        error: KeyError,
    },
    #[error("not an S3 notification, EventBridge event or scan message")]
    UnknownShape,
}

/// Decodes a key from an S3 notification: `+` → space first, then percent-decoding as UTF-8.
/// (`%2B` is a literal `+`; `a+b.json` in a notification is the key `a b.json`.)
pub fn decode_key(raw: &str) -> Result<String, KeyError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => return Err(KeyError::BadEscape(i)),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| KeyError::NotUtf8)
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_u64()
        .or_else(|| cur.as_str().and_then(|s| s.parse().ok()))
}

/// Classifies an object that a notice names.
fn object_notice(object: ObjectRef) -> Notice {
    if object.key.ends_with('/') {
        return Notice::Ignore(Ignored::Folder(object.key));
    }
    if object.size == Some(0) {
        return Notice::Ignore(Ignored::Empty(object.key));
    }
    Notice::Import(object)
}

/// One record of an S3 notification (`{"Records": [...]}`).
fn s3_record(r: &Value) -> Result<Notice, Unreadable> {
    let event = text(r, &["eventName"]).unwrap_or_default();
    if !event.starts_with("ObjectCreated:") {
        return Ok(Notice::Ignore(Ignored::NotCreated(event)));
    }
    let bucket = text(r, &["s3", "bucket", "name"])
        .ok_or(Unreadable::Missing("S3 record without s3.bucket.name"))?;
    let raw_key = text(r, &["s3", "object", "key"])
        .ok_or(Unreadable::Missing("S3 record without s3.object.key"))?;
    let key = decode_key(&raw_key).map_err(|error| Unreadable::Key {
        what: "S3 record key",
        raw: raw_key.clone(),
        error,
    })?;
    Ok(object_notice(ObjectRef {
        bucket,
        key,
        version_id: text(r, &["s3", "object", "versionId"])
            .filter(|v| !v.is_empty() && v != "null"),
        size: number(r, &["s3", "object", "size"]),
        etag: text(r, &["s3", "object", "eTag"]),
        sequencer: text(r, &["s3", "object", "sequencer"]),
    }))
}

/// An S3 notification document: its records, or a test event.
fn s3_notification(doc: &Value) -> Result<Vec<Notice>, Unreadable> {
    if text(doc, &["Event"]).as_deref() == Some("s3:TestEvent") {
        return Ok(vec![Notice::Ignore(Ignored::TestEvent)]);
    }
    let records = doc
        .get("Records")
        .and_then(Value::as_array)
        .ok_or(Unreadable::Missing("no Records in the S3 notification"))?;
    records.iter().map(s3_record).collect()
}

/// An EventBridge event from S3.
fn eventbridge(doc: &Value) -> Result<Vec<Notice>, Unreadable> {
    let kind = text(doc, &["detail-type"]).unwrap_or_default();
    if kind != "Object Created" {
        return Ok(vec![Notice::Ignore(Ignored::NotCreated(kind))]);
    }
    let detail = doc
        .get("detail")
        .ok_or(Unreadable::Missing("EventBridge event without detail"))?;
    let raw_key = text(detail, &["object", "key"]).ok_or(Unreadable::Missing(
        "EventBridge event without detail.object.key",
    ))?;
    let key = decode_key(&raw_key).map_err(|error| Unreadable::Key {
        what: "EventBridge object key",
        raw: raw_key.clone(),
        error,
    })?;
    Ok(vec![object_notice(ObjectRef {
        bucket: text(detail, &["bucket", "name"]).ok_or(Unreadable::Missing(
            "EventBridge event without detail.bucket.name",
        ))?,
        key,
        version_id: text(detail, &["object", "version-id"]),
        size: number(detail, &["object", "size"]),
        etag: text(detail, &["object", "etag"]),
        sequencer: text(detail, &["object", "sequencer"]),
    })])
}

/// The scan mode's own message: `{"s3import": {"bucket", "key", "version_id"?, "size"?, "etag"?}}`,
/// keys as they are.
fn scan_message(doc: &Value) -> Result<Vec<Notice>, Unreadable> {
    let m = doc
        .get("s3import")
        .ok_or(Unreadable::Missing("not a scan message"))?;
    Ok(vec![object_notice(ObjectRef {
        bucket: text(m, &["bucket"]).ok_or(Unreadable::Missing("scan message without bucket"))?,
        key: text(m, &["key"]).ok_or(Unreadable::Missing("scan message without key"))?,
        version_id: text(m, &["version_id"]),
        size: number(m, &["size"]),
        etag: text(m, &["etag"]),
        sequencer: None,
    })])
}

/// What a document (an SQS body, or a whole invocation event) holds.
fn document(doc: &Value) -> Result<Vec<Notice>, Unreadable> {
    if doc.get("s3import").is_some() {
        return scan_message(doc);
    }
    if let Some(scan) = doc.get("s3import-scan") {
        return Ok(vec![Notice::Scan(ScanRequest {
            bucket: text(scan, &["bucket"])
                .ok_or(Unreadable::Missing("s3import-scan without bucket"))?,
            prefix: text(scan, &["prefix"]),
            start_after: text(scan, &["start_after"]).filter(|a| !a.is_empty()),
            // Messages of older versions carry no pass; one that does not read starts afresh.
            pass: scan
                .get("pass")
                .and_then(|p| serde_json::from_value(p.clone()).ok()),
        })]);
    }
    if text(doc, &["source"]).as_deref() == Some("aws.s3") && doc.get("detail-type").is_some() {
        return eventbridge(doc);
    }
    // SNS envelope: the S3 notification is the JSON text in `Message`.
    if text(doc, &["Type"]).as_deref() == Some("Notification") {
        let inner =
            text(doc, &["Message"]).ok_or(Unreadable::Missing("SNS envelope without Message"))?;
        let inner: Value = serde_json::from_str(&inner).map_err(|e| Unreadable::NotJson {
            what: "SNS Message",
            error: e.to_string(),
        })?;
        return document(&inner);
    }
    if doc.get("Records").is_some() || doc.get("Event").is_some() {
        return s3_notification(doc);
    }
    Err(Unreadable::UnknownShape)
}

/// What an SQS message's body holds.
pub fn body_notices(body: &str) -> Result<Vec<Notice>, Unreadable> {
    serde_json::from_str::<Value>(body)
        .map_err(|e| Unreadable::NotJson {
            what: "SQS body",
            error: e.to_string(),
        })
        .and_then(|doc| document(&doc))
}

/// Every message in an invocation event. An SQS event yields one message per SQS record
/// (each with its `messageId`); any other shape yields one message without an id.
pub fn messages(event: &Value) -> Vec<Message> {
    let records = event.get("Records").and_then(Value::as_array);
    let is_sqs = records.is_some_and(|r| {
        r.iter()
            .any(|x| text(x, &["eventSource"]).as_deref() == Some("aws:sqs"))
    });
    if !is_sqs {
        return vec![Message {
            message_id: None,
            receipt: None,
            notices: document(event),
        }];
    }
    records
        .into_iter()
        .flatten()
        .map(|r| Message {
            message_id: text(r, &["messageId"]),
            receipt: text(r, &["eventSourceARN"])
                .zip(text(r, &["receiptHandle"]))
                .map(|(queue, handle)| Receipt { queue, handle }),
            notices: match text(r, &["body"]) {
                None => Err(Unreadable::Missing("SQS record without body")),
                Some(body) => body_notices(&body),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An S3 notification record as AWS writes it (eventVersion 2.1 and later).
    fn s3_record_json(version: &str, event: &str, key: &str, size: u64) -> Value {
        json!({
            "eventVersion": version, "eventSource": "aws:s3", "awsRegion": "eu-west-1",
            "eventTime": "2026-11-28T10:00:00.000Z", "eventName": event,
            "userIdentity": {"principalId": "AWS:EXAMPLE"}, "requestParameters": {"sourceIPAddress": "203.0.113.1"},
            "responseElements": {"x-amz-request-id": "R", "x-amz-id-2": "I"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "import",
                   "bucket": {"name": "events-bucket", "ownerIdentity": {"principalId": "O"}, "arn": "arn:aws:s3:::events-bucket"},
                   "object": {"key": key, "size": size, "eTag": "0123abcd", "versionId": "v1", "sequencer": "0065A1B2C3D4E5F601"}}
        })
    }

    fn sqs(bodies: &[(&str, Value)]) -> Value {
        json!({"Records": bodies.iter().map(|(id, body)| json!({
            "messageId": id, "receiptHandle": "h", "body": body.to_string(),
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "md5OfBody": "x", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q", "awsRegion": "eu-west-1"
        })).collect::<Vec<_>>()})
    }

    fn keys(m: &Message) -> Vec<String> {
        m.notices
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| match n {
                Notice::Import(o) => o.key.clone(),
                Notice::Ignore(i) => format!("{i:?}"),
                Notice::Scan(s) => format!("{s:?}"),
            })
            .collect()
    }

    #[test]
    fn keys_are_form_decoded_as_aws_encodes_them() {
        let cases = [
            ("a+b.json", "a b.json"),
            ("a%2Bb.json", "a+b.json"),
            ("dt%3D2024-01-01/x.json", "dt=2024-01-01/x.json"),
            ("logs/10%3A47%3A07.log", "logs/10:47:07.log"),
            ("%C3%A9.json", "é.json"),
            ("%281%29+copy.csv", "(1) copy.csv"),
            ("in/my%20file%2B1%20%C3%A9.txt", "in/my file+1 é.txt"), // LocalStack's spelling
            ("in%2Fmy+file%2B1+%C3%A9.txt", "in/my file+1 é.txt"),   // moto's spelling
            ("plain/key.json", "plain/key.json"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_key(raw).as_deref(), Ok(want), "{raw}");
        }
        assert_eq!(decode_key("bad%2"), Err(KeyError::BadEscape(3)));
        assert_eq!(decode_key("bad%zz"), Err(KeyError::BadEscape(3)));
        assert_eq!(decode_key("%ff%fe"), Err(KeyError::NotUtf8));
    }

    #[test]
    fn direct_s3_notifications_of_any_event_version() {
        for version in ["2.1", "2.2", "2.3", "2.6"] {
            let event = json!({"Records": [s3_record_json(version, "ObjectCreated:Put", "events/a+b.json.gz", 10)]});
            let m = messages(&event);
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].message_id, None);
            assert_eq!(
                m[0].notices,
                Ok(vec![Notice::Import(ObjectRef {
                    bucket: "events-bucket".into(),
                    key: "events/a b.json.gz".into(),
                    version_id: Some("v1".into()),
                    size: Some(10),
                    etag: Some("0123abcd".into()),
                    sequencer: Some("0065A1B2C3D4E5F601".into()),
                })]),
                "eventVersion {version}"
            );
        }
    }

    #[test]
    fn sqs_messages_with_several_records_sns_envelopes_and_test_events() {
        let two = json!({"Records": [
            s3_record_json("2.1", "ObjectCreated:Put", "a.json", 5),
            s3_record_json("2.1", "ObjectCreated:CompleteMultipartUpload", "b%3Ac.json", 9),
        ]});
        let sns = json!({"Type": "Notification", "MessageId": "sns-1", "TopicArn": "arn:aws:sns:eu-west-1:1:t",
            "Message": json!({"Records": [s3_record_json("2.1", "ObjectCreated:Copy", "via+sns.json", 3)]}).to_string()});
        let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-28T10:00:00.000Z", "Bucket": "events-bucket"});
        let mixed = json!({"Records": [
            s3_record_json("2.1", "ObjectRemoved:Delete", "gone.json", 0),
            s3_record_json("2.1", "ObjectCreated:Put", "folder/", 0),
            s3_record_json("2.1", "ObjectCreated:Put", "empty.json", 0),
        ]});
        let event = sqs(&[
            ("m1", two),
            ("m2", sns),
            ("m3", test),
            ("m4", mixed),
            ("m5", json!({"hello": 1})),
        ]);
        let m = messages(&event);
        assert_eq!(
            m.iter()
                .map(|m| m.message_id.clone().unwrap())
                .collect::<Vec<_>>(),
            ["m1", "m2", "m3", "m4", "m5"]
        );
        assert_eq!(keys(&m[0]), ["a.json", "b:c.json"]);
        assert_eq!(keys(&m[1]), ["via sns.json"]);
        assert_eq!(m[2].notices, Ok(vec![Notice::Ignore(Ignored::TestEvent)]));
        assert_eq!(
            m[3].notices,
            Ok(vec![
                Notice::Ignore(Ignored::NotCreated("ObjectRemoved:Delete".into())),
                Notice::Ignore(Ignored::Folder("folder/".into())),
                Notice::Ignore(Ignored::Empty("empty.json".into())),
            ])
        );
        assert_eq!(m[4].notices, Err(Unreadable::UnknownShape));
    }

    #[test]
    fn eventbridge_keys_are_form_decoded_as_s3_sends_them() {
        let event = json!({"version": "0", "id": "e", "detail-type": "Object Created", "source": "aws.s3",
            "account": "1", "time": "2026-11-28T10:00:00Z", "region": "eu-west-1", "resources": ["arn:aws:s3:::b"],
            "detail": {"version": "0", "bucket": {"name": "b"},
                       "object": {"key": "raw/2023-08-08T14%3A03%3A40+a%2Bb.json", "size": 198, "etag": "e1", "version-id": "v9", "sequencer": "s"},
                       "request-id": "r", "requester": "1", "reason": "PutObject"}});
        let m = messages(&event);
        assert_eq!(keys(&m[0]), ["raw/2023-08-08T14:03:40 a+b.json"]);
        let deleted = json!({"detail-type": "Object Deleted", "source": "aws.s3", "detail": {}});
        assert_eq!(
            messages(&deleted)[0].notices,
            Ok(vec![Notice::Ignore(Ignored::NotCreated(
                "Object Deleted".into()
            ))])
        );
    }

    #[test]
    fn emulator_notifications_without_optional_fields_still_parse() {
        // moto leaves out userIdentity, requestParameters, sequencer, …
        let sparse = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "k%2Fx", "size": 4}}}]});
        assert_eq!(keys(&messages(&sparse)[0]), ["k/x"]);
        let broken = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "bad%zz"}}}]});
        assert!(messages(&broken)[0]
            .notices
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("bad percent escape"));
    }

    #[test]
    fn scan_messages_name_keys_as_they_are() {
        let scan = json!({"s3import": {"bucket": "b", "key": "events/a+b.json", "size": 12, "etag": "\"e\""}});
        assert_eq!(keys(&messages(&scan)[0]), ["events/a+b.json"]);
    }

    #[test]
    fn queue_messages_read_back_as_the_notices_they_were_written_from() {
        let obj = ObjectRef {
            bucket: "b".into(),
            key: "in/a b+c.json".into(),
            version_id: Some("v1".into()),
            size: Some(12),
            etag: Some("e".into()),
            sequencer: None,
        };
        let scan = ScanRequest {
            bucket: "b".into(),
            prefix: Some("in/".into()),
            start_after: Some("in/k9".into()),
            pass: Some(ScanPass {
                started: 1_800_000_000,
                since: Some(1_799_990_000),
                full_at: 1_799_900_000,
                open_from: None,
                marks: true,
            }),
        };
        let bodies = [
            QueueMessage::Import(obj.clone()).body(),
            QueueMessage::Scan(scan.clone()).body(),
            QueueMessage::Scan(ScanRequest {
                bucket: "b".into(),
                ..ScanRequest::default()
            })
            .body(),
        ];
        let event = sqs(&[
            ("1", serde_json::from_str(&bodies[0]).unwrap()),
            ("2", serde_json::from_str(&bodies[1]).unwrap()),
            ("3", serde_json::from_str(&bodies[2]).unwrap()),
        ]);
        let m = messages(&event);
        assert_eq!(m[0].notices, Ok(vec![Notice::Import(obj)]));
        assert_eq!(m[1].notices, Ok(vec![Notice::Scan(scan)]));
        assert_eq!(
            m[2].notices,
            Ok(vec![Notice::Scan(ScanRequest {
                bucket: "b".into(),
                prefix: None,
                start_after: None,
                pass: None
            })])
        );
        let no_bucket = sqs(&[("4", json!({"s3import-scan": {"prefix": "in/"}}))]);
        assert_eq!(
            messages(&no_bucket)[0].notices,
            Err(Unreadable::Missing("s3import-scan without bucket"))
        );
    }
}
