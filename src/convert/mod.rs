//! One record → Amplitude payloads: skip flag, kinds, field typing, ID rules, defaults, mirror.
//! One file (~620 lines): the rules run in one pass per record and read best in their order.

mod fields;

use std::borrow::Cow;

use crate::config::{ConfigErrors, ConverterFile, DataType, Strategy};
use crate::datalang::{parse_num, push_made, truthy, Num, Record, V};
pub use fields::FieldType;

/// What a converted payload is, and so which API receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Event,
    Identify,
    GroupIdentify,
    Profile,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Identify => "identify",
            Kind::GroupIdentify => "groupidentify",
            Kind::Profile => "profile",
        }
    }
}

/// One payload: an ordered object whose values borrow from the record where they can.
#[derive(Debug)]
pub struct Payload<'r, 'a> {
    pub kind: Kind,
    pub fields: Vec<(&'r str, Cow<'r, V<'a>>)>,
}

impl Payload<'_, '_> {
    pub fn get(&self, name: &str) -> Option<&V<'_>> {
        self.fields
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }
}

impl serde::Serialize for Payload<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v.as_ref())?;
        }
        map.end()
    }
}

/// The outcome of one record.
#[derive(Debug)]
pub enum Outcome<'r, 'a> {
    Converted(Vec<Payload<'r, 'a>>),
    Skipped,
    /// The reason names the field and the rule.
    Invalid(String),
}

/// A converted record with the output fields dropped as unknown for its kind.
#[derive(Debug)]
pub struct Converted<'r, 'a> {
    pub outcome: Outcome<'r, 'a>,
    pub dropped: Vec<&'r str>,
}

/// Where a record comes from; the default `insert_id` is `<bucket>/<key>:<n>`.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'s> {
    pub bucket: &'s str,
    pub key: &'s str,
}

/// A loaded converter, ready to convert records.
#[derive(Debug)]
pub struct Converter {
    pub file: ConverterFile,
    flag_index: Option<usize>,
    /// Per field of `convertToAmplitudeFunc`: its type in each payload kind (`KINDS` order),
    /// worked out once here rather than by name per record.
    types: Vec<[Option<FieldType>; 4]>,
    roles: Vec<Role>,
    event_type_index: Option<usize>,
}

const KINDS: [Kind; 4] = [
    Kind::Event,
    Kind::Identify,
    Kind::GroupIdentify,
    Kind::Profile,
];

const BAD_IDS: [&str; 13] = [
    "anonymous",
    "nil",
    "none",
    "null",
    "n/a",
    "na",
    "undefined",
    "unknown",
    "00000000-0000-0000-0000-000000000000",
    "{}",
    "lmy47d",
    "0",
    "-1",
];

const PROPERTY_OPS: [&str; 9] = [
    "$set",
    "$setOnce",
    "$add",
    "$append",
    "$prepend",
    "$unset",
    "$preInsert",
    "$postInsert",
    "$remove",
];

/// Whether a `user_id`/`device_id` is usable: at least 5 characters and not a placeholder.
pub fn usable_id(id: &str) -> bool {
    // 20 bytes hold at least 5 characters, and so do 5 ASCII bytes; the placeholders are at
    // most 36 bytes long, and most ids have a length none of them has.
    let b = id.as_bytes();
    (b.len() >= 20 || b.get(..5).is_some_and(<[u8]>::is_ascii) || id.chars().nth(4).is_some())
        && (id.len() > 36
            || BAD_ID_LENGTHS >> id.len() & 1 == 0
            || !BAD_IDS.iter().any(|b| b.eq_ignore_ascii_case(id)))
}

/// Bit `n` set: some placeholder of [`BAD_IDS`] is `n` bytes long.
const BAD_ID_LENGTHS: u64 = {
    let mut mask = 0;
    let mut i = 0;
    while i < BAD_IDS.len() {
        mask |= 1 << BAD_IDS[i].len();
        i += 1;
    }
    mask
};

fn show(v: &V<'_>) -> String {
    let mut s = v.to_json();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Coerces a known field to its type: `Ok(None)` when the value already has it, `Ok(Some)`
/// the value converted; `Err` is the reason the record is invalid.
fn coerce<'a>(name: &str, ty: FieldType, v: &V<'a>) -> Result<Option<V<'a>>, String> {
    match (ty, v) {
        (FieldType::Int, V::Num(n)) => match n {
            Num::I(_) => Ok(None),
            Num::U(_) => Err(format!("{name}: integer {} is out of range", show(v))),
            Num::F(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(V::int(*f as i64))),
            Num::F(_) => Err(format!("{name}: expected an integer, got {}", show(v))),
            Num::D(d) => match n.as_i64() {
                Some(i) if i.abs() < 9_000_000_000_000_000 => Ok(Some(V::int(i))),
                _ => Err(format!("{name}: expected an integer, got {}", d.text())),
            },
        },
        (FieldType::Int, V::Wide(text)) => match text.parse::<i64>() {
            Ok(i) if i.abs() < 9_000_000_000_000_000 => Ok(Some(V::int(i))),
            _ => Err(format!("{name}: expected an integer, got {}", show(v))),
        },
        (FieldType::Int, V::Str(s)) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(Some(V::int(i))),
            Err(_) if name == "time" => Err(format!(
                "time: expected epoch milliseconds, got {}; use iso_time_to_ms",
                show(v)
            )),
            Err(_) => Err(format!("{name}: expected an integer, got {}", show(v))),
        },
        (FieldType::Int, _) => Err(format!("{name}: expected an integer, got {}", show(v))),
        (FieldType::Float, V::Num(_) | V::Wide(_)) => Ok(None),
        (FieldType::Float, V::Str(s)) => match parse_num(s.trim()) {
            Some(n) => Ok(Some(V::Num(n))),
            None => Err(format!("{name}: expected a number, got {}", show(v))),
        },
        (FieldType::Float, _) => Err(format!("{name}: expected a number, got {}", show(v))),
        (FieldType::Str, V::Str(_)) => Ok(None),
        (FieldType::Str, V::Num(n)) => n
            .to_text()
            .map(|t| Some(V::str(t)))
            .ok_or_else(|| format!("{name}: expected a string, got {}", show(v))),
        (FieldType::Str, V::Wide(text)) => Ok(Some(V::str(text.to_string()))),
        (FieldType::Str, V::Bool(b)) => Ok(Some(V::str(if *b { "true" } else { "false" }))),
        (FieldType::Str, _) => Err(format!("{name}: expected a string, got {}", show(v))),
        (FieldType::Obj, V::Obj(_)) => Ok(None),
        (FieldType::Obj, V::Raw(text)) if text.starts_with('{') => Ok(None),
        (FieldType::Obj, _) => Err(format!("{name}: expected an object, got {}", show(v))),
        (FieldType::Bool, V::Bool(_)) => Ok(None),
        (FieldType::Bool, V::Str(s))
            if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
        {
            Ok(Some(V::Bool(s.eq_ignore_ascii_case("true"))))
        }
        (FieldType::Bool, _) => Err(format!("{name}: expected true or false, got {}", show(v))),
    }
}

/// An object of property operations must hold only operations.
fn check_operations(name: &str, v: &V<'_>) -> Result<(), String> {
    if let V::Raw(_) = v {
        return v
            .resolved()
            .map_or(Ok(()), |tree| check_operations(name, &tree));
    }
    let V::Obj(entries) = v else { return Ok(()) };
    let op = entries
        .iter()
        .find(|(k, _)| PROPERTY_OPS.contains(&k.as_ref()));
    let plain = entries
        .iter()
        .find(|(k, _)| !PROPERTY_OPS.contains(&k.as_ref()));
    match (op, plain) {
        (Some((op, _)), Some((plain, _))) => Err(format!(
            "{name}: mixes the operation {op:?} with the plain property {plain:?}; put plain properties inside \"$set\""
        )),
        _ => Ok(()),
    }
}

impl Converter {
    /// Loads a converter file.
    pub fn load(text: &str) -> Result<Self, ConfigErrors> {
        Ok(Self::new(ConverterFile::load(text)?))
    }

    pub fn new(file: ConverterFile) -> Self {
        let flag_index = file
            .ignore_flag
            .as_ref()
            .and_then(|flag| file.fields.iter().position(|(k, _)| k == flag));
        let mirror = file.strategy == Strategy::Mirror;
        let types = file
            .fields
            .iter()
            .map(|(name, _)| KINDS.map(|kind| fields::field_type(kind, name, mirror)))
            .collect();
        let roles = file.fields.iter().map(|(name, _)| Role::of(name)).collect();
        let event_type_index = file
            .fields
            .iter()
            .position(|(name, _)| name == "event_type");
        Converter {
            file,
            flag_index,
            types,
            roles,
            event_type_index,
        }
    }

    /// Converts one record (the `n`-th of the object) into its outcome.
    pub fn convert<'r, 'a>(
        &'r self,
        record: &'r Record<'a>,
        n: u64,
        origin: Origin<'_>,
    ) -> Converted<'r, 'a> {
        let mut dropped = Vec::new();
        let outcome = self.outcome(record, n, origin, &mut dropped);
        Converted { outcome, dropped }
    }

    // Long: the record's payload kinds in the converter's order, each field's check beside its
    // value (the hot path: no helper calls per field).

    fn outcome<'r, 'a>(
        &'r self,
        record: &'r Record<'a>,
        n: u64,
        origin: Origin<'_>,
        dropped: &mut Vec<&'r str>,
    ) -> Outcome<'r, 'a> {
        let ctx = &record.value;
        // 1. Skip (decided first, applied after the drop count: `dropped_fields` describes
        // the mapping, so it counts every record, as the CLI contract's example does).
        let skip = self
            .flag_index
            .is_some_and(|i| truthy(self.file.fields[i].1.eval(ctx, record).as_deref()));
        // 2. Kind: for events, `event_type` is evaluated first (once) and decides it.
        let mut event_type = match (self.file.data_type, self.event_type_index) {
            (DataType::Event, Some(i)) => self.file.fields[i].1.eval_inline(ctx, record),
            _ => None,
        };
        let kind = match self.file.data_type {
            DataType::UserProperties => Kind::Identify,
            DataType::GroupProperties => Kind::GroupIdentify,
            DataType::Profiles => Kind::Profile,
            DataType::Event => match event_type.as_deref().and_then(V::as_str) {
                Some("$identify") => Kind::Identify,
                Some("$groupidentify") => Kind::GroupIdentify,
                _ => Kind::Event,
            },
        };
        let kind_index = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        let mirror =
            self.file.strategy == Strategy::Mirror && matches!(kind, Kind::Event | Kind::Profile);
        // 3. Field types (unknown fields dropped and counted), property operations, and
        // 4. the ID rules, in one pass.
        let mut typed: Vec<(&'r str, Cow<'r, V<'a>>)> =
            Vec::with_capacity(self.file.fields.len() + 3);
        let mut seen = Seen::default();
        let mut removed_ids = Vec::new();
        for (i, (name, expr)) in self.file.fields.iter().enumerate() {
            if Some(i) == self.flag_index {
                continue;
            }
            // A key read whole is borrowed from the record (`whole`), anything else is
            // evaluated (`made`); the entry is then made where it is stored ([`push_made`]).
            let is_event_type =
                Some(i) == self.event_type_index && self.file.data_type == DataType::Event;
            let whole = match is_event_type {
                true => None,
                false => expr.read_whole(record),
            };
            let mut made = match (is_event_type, whole) {
                (true, _) => event_type.take(),
                (false, None) => expr.eval(ctx, record),
                (false, Some(_)) => None,
            };
            let Some(v) = whole.or(made.as_deref()) else {
                continue;
            };
            let name = name.as_str();
            let role = self.roles[i];
            let Some(ty) = self.types[i][kind_index] else {
                if !(role == Role::EventType
                    && matches!(kind, Kind::Identify | Kind::GroupIdentify))
                {
                    dropped.push(name);
                }
                continue;
            };
            if skip || v.is_null() {
                continue;
            }
            let changed = match coerce(name, ty, v) {
                Ok(changed) => changed,
                Err(reason) => return Outcome::Invalid(reason),
            };
            let v = changed.as_ref().unwrap_or(v);
            match role {
                Role::UserId | Role::DeviceId => {
                    if !v.as_str().is_some_and(usable_id) {
                        removed_ids.push(format!("{name} {}", show(v)));
                        continue;
                    }
                    if role == Role::UserId {
                        seen.user_id = true;
                    } else {
                        seen.device_id = true;
                    }
                }
                Role::Properties => {
                    if let Err(reason) = check_operations(name, v) {
                        return Outcome::Invalid(reason);
                    }
                }
                Role::EventType => seen.event_type = true,
                Role::InsertId => seen.insert_id = true,
                Role::SkipSync => seen.skip_sync = true,
                Role::MutationType => seen.mutation_type = Some(typed.len()),
                Role::Other => {}
            }
            match (changed, whole) {
                (Some(changed), _) => push_made(&mut typed, || (name, Cow::Owned(changed))),
                (None, Some(v)) => push_made(&mut typed, || (name, Cow::Borrowed(v))),
                (None, None) => {
                    if let Some(v) = made.take() {
                        push_made(&mut typed, || (name, v))
                    }
                }
            }
        }
        if skip {
            return Outcome::Skipped;
        }
        let why_no_id = || {
            if removed_ids.is_empty() {
                "neither user_id nor device_id is set".to_string()
            } else {
                format!(
                    "neither user_id nor device_id is usable ({} removed: shorter than 5 characters or a placeholder)",
                    removed_ids.join(", ")
                )
            }
        };
        match kind {
            Kind::Event | Kind::Identify => {
                if !seen.user_id && !seen.device_id {
                    return Outcome::Invalid(why_no_id());
                }
                if kind == Kind::Event && !seen.event_type {
                    return Outcome::Invalid(
                        "event_type: missing; every event needs an event_type".into(),
                    );
                }
            }
            Kind::GroupIdentify => return group_identifies(typed),
            Kind::Profile => {}
        }
        // 5. Defaults.
        if kind == Kind::Event {
            if !seen.skip_sync {
                typed.push(("$skip_user_properties_sync", Cow::Owned(V::Bool(true))));
            }
            if !seen.insert_id {
                typed.push((
                    "insert_id",
                    Cow::Owned(V::str(format!("{}/{}:{n}", origin.bucket, origin.key))),
                ));
            }
        }
        // 6. Mirror.
        if mirror {
            if !seen.user_id {
                return Outcome::Invalid(format!(
                    "user_id: the mirror strategy needs a usable user_id ({})",
                    why_no_id()
                ));
            }
            match seen.mutation_type.map(|i| &typed[i].1) {
                None => typed.push(("mutation_type", Cow::Owned(V::str("UPDATE")))),
                Some(v) if matches!(v.as_str(), Some("INSERT" | "UPDATE" | "DELETE")) => {}
                Some(v) => {
                    return Outcome::Invalid(format!(
                        "mutation_type: expected \"INSERT\", \"UPDATE\" or \"DELETE\", got {}",
                        show(v)
                    ))
                }
            }
        }
        Outcome::Converted(vec![Payload {
            kind,
            fields: typed,
        }])
    }
}

/// What a field of `convertToAmplitudeFunc` means to the rules, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    UserId,
    DeviceId,
    EventType,
    InsertId,
    SkipSync,
    MutationType,
    /// `user_properties` / `group_properties`: operations must not mix with plain properties.
    Properties,
    Other,
}

impl Role {
    fn of(name: &str) -> Role {
        match name {
            "user_id" => Role::UserId,
            "device_id" => Role::DeviceId,
            "event_type" => Role::EventType,
            "insert_id" => Role::InsertId,
            "$skip_user_properties_sync" => Role::SkipSync,
            "mutation_type" => Role::MutationType,
            "user_properties" | "group_properties" => Role::Properties,
            _ => Role::Other,
        }
    }
}

/// Which rule-relevant fields a record kept.
#[derive(Default)]
struct Seen {
    user_id: bool,
    device_id: bool,
    event_type: bool,
    insert_id: bool,
    skip_sync: bool,
    /// Index in the typed fields.
    mutation_type: Option<usize>,
}

/// One Group Identify object per `groups` type → value pair (a list value yields one per element).
fn group_identifies<'r, 'a>(typed: Vec<(&'r str, Cow<'r, V<'a>>)>) -> Outcome<'r, 'a> {
    let get = |f: &str| typed.iter().find(|(k, _)| *k == f).map(|(_, v)| v);
    let Some(props) = get("group_properties") else {
        return Outcome::Invalid(
            "group_properties: missing; a group identify needs a group_properties object".into(),
        );
    };
    let groups = get("groups").and_then(|v| v.resolved());
    let Some(V::Obj(groups)) = groups else {
        return Outcome::Invalid(
            "groups: missing; a group identify needs groups with at least one type → value".into(),
        );
    };
    let mut payloads = Vec::new();
    for (group_type, value) in &groups {
        let values: Vec<&V<'a>> = match value {
            V::Arr(items) => items.iter().collect(),
            other => vec![other],
        };
        for v in values {
            let text = match v {
                V::Str(s) => Cow::Owned(s.to_string()),
                V::Wide(text) => Cow::Owned(text.to_string()),
                V::Num(n) => match n.to_text() {
                    Some(t) => Cow::Owned(t),
                    None => {
                        return Outcome::Invalid(format!(
                            "groups.{group_type}: {} is not a group value",
                            show(v)
                        ))
                    }
                },
                other => {
                    return Outcome::Invalid(format!(
                        "groups.{group_type}: expected a string or a list of strings, got {}",
                        show(other)
                    ))
                }
            };
            payloads.push(Payload {
                kind: Kind::GroupIdentify,
                fields: vec![
                    ("group_type", Cow::Owned(V::str(group_type.to_string()))),
                    ("group_value", Cow::Owned(V::Str(text))),
                    ("group_properties", props.clone()),
                ],
            });
        }
    }
    if payloads.is_empty() {
        return Outcome::Invalid(
            "groups: empty; a group identify needs at least one type → value".into(),
        );
    }
    Outcome::Converted(payloads)
}

#[cfg(test)]
mod tests;
