//! The converter's tests: payloads, fields, ids, outcomes.

use super::*;
use crate::datalang::value::parse_value;

fn conv(func: &str, extra: &str, record: &str) -> (String, Vec<String>) {
    let c = Converter::load(&format!(
        r#"{{"converterConfig":{{"fileType":"json","compressionType":"none"{extra},"convertToAmplitudeFunc":{func}}}}}"#
    ))
    .unwrap();
    let rec = Record::new(parse_value(record).unwrap());
    let r = c.convert(
        &rec,
        7,
        Origin {
            bucket: "b",
            key: "k.json",
        },
    );
    let dropped = r.dropped.iter().map(|s| s.to_string()).collect();
    let text = match r.outcome {
        Outcome::Converted(p) => serde_json::to_string(&p).unwrap(),
        Outcome::Skipped => "skipped".into(),
        Outcome::Invalid(e) => format!("invalid: {e}"),
    };
    (text, dropped)
}

#[test]
fn ids_are_checked_by_characters_not_bytes() {
    assert!(usable_id("éééée"));
    assert!(!usable_id("éééé"));
    assert!(!usable_id("UNDEFINED"));
    assert!(!usable_id("00000000-0000-0000-0000-000000000000"));
    // Characters, not bytes: four 4-byte characters are too short, 20 bytes never are.
    assert!(!usable_id("🚀🚀🚀🚀"));
    assert!(usable_id("🚀🚀🚀🚀a"));
    assert!(usable_id("00000000-0000-0000-0000-0000000000001"));
    assert!(!usable_id("Anonymous"));
    // Five ASCII bytes are five characters; four ASCII bytes and a multi-byte one are too.
    assert!(usable_id("abcde"));
    assert!(!usable_id("abcd"));
    assert!(usable_id("abcdé"));
    assert!(!usable_id("abcé"));
    assert!(!usable_id("none"));
}

#[test]
fn unsigned_overflow_is_invalid_not_truncated() {
    let (t, _) = conv(
        r#"{"event_type":"e","user_id":"u","time":"t"}"#,
        "",
        r#"{"e":"x","u":"user-1","t":18446744073709551615}"#,
    );
    assert_eq!(
        t,
        "invalid: time: integer 18446744073709551615 is out of range"
    );
}

#[test]
fn mutation_type_is_dropped_without_mirror() {
    let (t, d) = conv(
        r#"{"event_type":"e","user_id":"u","mutation_type":["value","DELETE"]}"#,
        "",
        r#"{"e":"x","u":"user-1"}"#,
    );
    assert_eq!(
        t,
        r#"[{"event_type":"x","user_id":"user-1","$skip_user_properties_sync":true,"insert_id":"b/k.json:7"}]"#
    );
    assert_eq!(d, vec!["mutation_type"]);
}

/// Reads into a value the converter also passes through whole (kept as text) give what
/// they give when the value is parsed as a tree.
#[test]
fn paths_into_a_value_kept_as_text_match_paths_into_the_tree() {
    let reads = r#""a": ["path", "props", "cat", "path", "1"], "b": "props.cat.name",
        "c": ["path", "props", "missing"], "d": ["path", "props", "price"],
        "e": ["path", "props", "cat", ["value", "x"]], "f": "props.cat.path.0",
        "g": ["path", "props", "list", "1", "k"], "h": ["path", "props", "dup"]"#;
    let line = br#"{"user_id":"user-1","event_type":"x","props":{"price":9.5,"dup":1,"cat":{"name":"Books \"C\"","path":["home",17]},"list":[{"k":1},{"k":"two"}],"dup":2}}"#;
    let convert = |with_pass_through: bool| {
        let extra = if with_pass_through {
            r#", "event_properties": "props""#
        } else {
            ""
        };
        let c = Converter::load(&format!(
            r#"{{"converterConfig":{{"fileType":"json","compressionType":"none","convertToAmplitudeFunc":{{"user_id":"user_id","event_type":"event_type","insert_id":["value","i-1"],"user_properties":{{{reads}}}{extra}}}}}}}"#
        ))
        .unwrap();
        let record = crate::datalang::value::parse_record(line, &c.file.record_keys).unwrap();
        let kept_whole = matches!(record.value.get("props"), Some(V::Raw(_)));
        assert_eq!(kept_whole, with_pass_through);
        let r = c.convert(
            &record,
            0,
            Origin {
                bucket: "b",
                key: "k",
            },
        );
        let Outcome::Converted(p) = r.outcome else {
            panic!("{:?}", r.outcome)
        };
        p[0].get("user_properties").map(V::to_json).unwrap()
    };
    let tree = convert(false);
    assert_eq!(
        tree,
        r#"{"a":17,"b":"Books \"C\"","d":9.5,"e":"x","f":"home","g":"two","h":2}"#
    );
    assert_eq!(convert(true), tree);
}
