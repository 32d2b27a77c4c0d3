//! One record → what it amounts to: payloads ready to send, each with its dedupe key, or a
//! skip, or an invalid record with its reason and raw text. The one record step shared by
//! the pipeline and `send`.

use crate::convert::{Converter, Kind, Origin, Outcome};
use crate::decode::Rec;
use crate::dedupe::{is_default_id, DedupeKey, DedupeMode};
use crate::sink::Item;

/// What one record amounts to, with its index in the object.
pub enum RecordResult {
    Payloads(u64, Vec<(Item, Option<DedupeKey>)>),
    Skipped(u64),
    Invalid { n: u64, reason: String, raw: String },
}

/// Converts record `n`. `dedupe`: the source the dedupe keys belong to and which events get
/// one, or `None` when nothing is deduped. Only events are deduped: mirror mutations (an
/// UPDATE or DELETE names its event's insert_id on purpose), profiles and identifies are not;
/// in [`DedupeMode::Auto`] neither are events with their default insert_id (their object's
/// claim makes them unique).
pub fn convert_record(
    converter: &Converter,
    origin: Origin<'_>,
    dedupe: Option<(&str, DedupeMode)>,
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
                        let key = match dedupe {
                            Some((source, mode))
                                if p.kind == Kind::Event && item.mutation.is_none() =>
                            {
                                let text = |f: &str| p.get(f).and_then(|v| v.as_str());
                                text("insert_id")
                                    .filter(|id| {
                                        mode == DedupeMode::All
                                            || !is_default_id(id, origin.bucket, origin.key, n)
                                    })
                                    .and_then(|insert_id| {
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
                    None => serde_json::to_string(&record.whole()).unwrap_or_default(),
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
