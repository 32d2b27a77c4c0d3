//! One record → what it amounts to: payloads ready to send, each with its dedupe key, or a
//! skip, or an invalid record with its reason and raw text. The one record step shared by
//! the pipeline and `send`.

use crate::convert::{Converter, Kind, Origin, Outcome};
use crate::decode::Rec;
use crate::dedupe::DedupeKey;
use crate::sink::Item;

/// What one record amounts to, with its index in the object.
pub enum RecordResult {
    Payloads(u64, Vec<(Item, Option<DedupeKey>)>),
    Skipped(u64),
    Invalid { n: u64, reason: String, raw: String },
}

/// Converts record `n`. `dedupe_source`: the source the dedupe keys belong to, or `None`
/// when nothing is deduped. Only events are deduped: mirror mutations (an UPDATE or DELETE
/// names its event's insert_id on purpose), profiles and identifies are not.
pub fn convert_record(
    converter: &Converter,
    origin: Origin<'_>,
    dedupe_source: Option<&str>,
    n: u64,
    rec: Rec<'_>,
) -> RecordResult {
    match rec {
        Rec::Ok { record, line } => match converter.convert(record, n, origin).outcome {
            Outcome::Converted(payloads) => RecordResult::Payloads(
                n,
                payloads
                    .iter()
                    .map(|p| {
                        let item = Item::from_payload(n, p);
                        let key = match dedupe_source {
                            Some(source) if p.kind == Kind::Event && item.mutation.is_none() => {
                                let text = |f: &str| p.get(f).and_then(|v| v.as_str());
                                text("insert_id").and_then(|insert_id| {
                                    DedupeKey::for_event(
                                        source,
                                        text("device_id"),
                                        text("user_id"),
                                        insert_id,
                                    )
                                })
                            }
                            _ => None,
                        };
                        (item, key)
                    })
                    .collect(),
            ),
            Outcome::Skipped => RecordResult::Skipped(n),
            Outcome::Invalid(reason) => {
                let raw = match line {
                    Some(l) => String::from_utf8_lossy(l).into_owned(),
                    None => serde_json::to_string(&record.value).unwrap_or_default(),
                };
                RecordResult::Invalid { n, reason, raw }
            }
        },
        Rec::Invalid { reason, raw } => RecordResult::Invalid {
            n,
            reason,
            raw: String::from_utf8_lossy(raw).into_owned(),
        },
    }
}
