//! The known fields of each payload kind and their types (amplitude-reference.md 6.2, 8.2, 9).

use super::Kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Int,
    Float,
    Str,
    Obj,
    Bool,
}

/// Fields an identification object shares with an event.
const IDENTIFY_STR: &[&str] = &[
    "user_id",
    "device_id",
    "app_version",
    "platform",
    "os_name",
    "os_version",
    "device_brand",
    "device_manufacturer",
    "device_model",
    "carrier",
    "country",
    "region",
    "city",
    "dma",
    "language",
];

/// The type of `name` in a payload of `kind`; `None` when the kind has no such field.
pub fn field_type(kind: Kind, name: &str, mirror: bool) -> Option<FieldType> {
    use FieldType::*;
    match kind {
        Kind::Event => match name {
            "time" | "session_id" | "event_id" | "quantity" => Some(Int),
            "price" | "revenue" | "location_lat" | "location_lng" => Some(Float),
            "event_properties" | "user_properties" | "groups" | "group_properties" | "plan" => {
                Some(Obj)
            }
            "$skip_user_properties_sync" => Some(Bool),
            "event_type" | "insert_id" | "user_agent" | "productId" | "revenueType"
            | "currency" | "ip" | "idfa" | "idfv" | "adid" | "android_id"
            | "android_app_set_id" | "partner_id" => Some(Str),
            "mutation_type" if mirror => Some(Str),
            _ if IDENTIFY_STR.contains(&name) => Some(Str),
            _ => None,
        },
        Kind::Identify => match name {
            "user_properties" | "groups" => Some(Obj),
            "paying" | "start_version" => Some(Str),
            _ if IDENTIFY_STR.contains(&name) => Some(Str),
            _ => None,
        },
        Kind::GroupIdentify => match name {
            "groups" | "group_properties" => Some(Obj),
            _ => None,
        },
        Kind::Profile => match name {
            "user_id" | "device_id" | "mutation_type" => Some(Str),
            "user_properties" => Some(Obj),
            _ => None,
        },
    }
}
