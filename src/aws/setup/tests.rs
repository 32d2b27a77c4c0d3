//! `setup`'s tests: the notification merge, the queue policy, the rule ARN checks.

use super::*;

fn dest(arn: &str, events: &[&str], prefix: &str, suffix: &str) -> Destination {
    Destination {
        kind: "queue",
        id: Some(format!("id-{arn}")),
        arn: arn.into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        prefix: prefix.into(),
        suffix: suffix.into(),
    }
}

#[test]
fn a_clash_is_the_same_events_on_keys_both_filters_match_sent_elsewhere() {
    let ours = dest("ours", &["s3:ObjectCreated:*"], "in/", "");
    for (other, clashes) in [
        (
            dest("q2", &["s3:ObjectCreated:Put"], "in/sub/", ".gz"),
            true,
        ),
        (dest("q2", &["s3:ObjectCreated:*"], "", ""), true),
        (dest("q2", &["s3:ObjectCreated:*"], "i", ""), true),
        (dest("q2", &["s3:ObjectCreated:*"], "out/", ""), false),
        (dest("q2", &["s3:ObjectRemoved:*"], "in/", ""), false),
        (dest("ours", &["s3:ObjectCreated:*"], "in/", ""), false),
    ] {
        assert_eq!(
            clash(&ours, std::slice::from_ref(&other)).is_some(),
            clashes,
            "{other:?}"
        );
    }
    let puts = dest("a", &["s3:ObjectCreated:Put"], "", ".json");
    assert!(!puts.overlaps(&dest("b", &["s3:ObjectCreated:Copy"], "", "")));
    assert!(!puts.overlaps(&dest("b", &["s3:ObjectCreated:Put"], "", ".csv")));
    let text = clash(
        &ours,
        &[dest("arn:q2", &["s3:ObjectCreated:Put"], "in/a/", "")],
    )
    .unwrap();
    assert_eq!(
        text,
        "configuration `id-arn:q2` sends s3:ObjectCreated:Put under prefix `in/a/` to the queue arn:q2"
    );
}

#[test]
fn the_queue_policy_keeps_other_statements_and_scopes_its_own() {
    let other = serde_json::json!({"Version": "2012-10-17", "Id": "theirs", "Statement": [
        {"Sid": "Theirs", "Effect": "Allow", "Principal": {"AWS": "123"}, "Action": "sqs:*", "Resource": "q"},
        {"Sid": "s3-import-rule", "Effect": "Allow"}
    ]});
    let p = queue_policy(
        Some(&other),
        "arn:q",
        "arn:aws:s3:::b",
        "111",
        Announce::Queue,
    );
    let st = p["Statement"].as_array().unwrap();
    assert_eq!(st.len(), 2);
    assert_eq!(st[0]["Sid"], "Theirs");
    assert_eq!(p["Id"], "theirs");
    assert_eq!(
        st[1]["Condition"]["ArnLike"]["aws:SourceArn"],
        "arn:aws:s3:::b"
    );
    assert_eq!(
        st[1]["Condition"]["StringEquals"]["aws:SourceAccount"],
        "111"
    );
    // Set again, it is the same policy: nothing to write.
    assert_eq!(
        queue_policy(Some(&p), "arn:q", "arn:aws:s3:::b", "111", Announce::Queue),
        p
    );
    let rule = "arn:aws:events:us-east-1:222:rule/created";
    let e = queue_policy(
        Some(&p),
        "arn:q",
        "arn:aws:s3:::b",
        "111",
        Announce::EventBridge { rule_arn: rule },
    );
    let st = e["Statement"].as_array().unwrap();
    assert_eq!(
        st.len(),
        2,
        "the bucket's statement is replaced by the rule's"
    );
    assert_eq!(st[1]["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(st[1]["Condition"]["ArnEquals"]["aws:SourceArn"], rule);
    assert_eq!(
        st[1]["Condition"]["StringEquals"]["aws:SourceAccount"],
        "222"
    );
}
