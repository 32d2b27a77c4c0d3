//! Which API routes a converter's payloads need, and which of them an endpoint serves.
//!
//! Amplitude's public ingestion APIs are `/2/httpapi`, `/batch`, `/identify` and
//! `/groupidentify` (amplitude-reference.md §6–9). Mirror Sync mutations and Profiles exist only
//! inside Amplitude's hosted S3 import: its public hosts have no route for them, and a payload
//! sent there is answered 404. So a converter that needs them is refused before anything is sent
//! when the endpoint is one of Amplitude's hosts, and only a compatible endpoint set explicitly
//! (one that serves `<endpoint>/mutations`, such as the emulator) can take it.

use crate::config::{ConverterFile, DataType, Strategy};

use super::EventApi;

/// An API route of the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiRoute {
    HttpV2,
    Batch,
    Identify,
    GroupIdentify,
    Mutations,
}

impl ApiRoute {
    pub fn path(self) -> &'static str {
        match self {
            ApiRoute::HttpV2 => "/2/httpapi",
            ApiRoute::Batch => "/batch",
            ApiRoute::Identify => "/identify",
            ApiRoute::GroupIdentify => "/groupidentify",
            ApiRoute::Mutations => "/mutations",
        }
    }

    pub fn events(api: EventApi) -> ApiRoute {
        match api {
            EventApi::HttpV2 => ApiRoute::HttpV2,
            EventApi::Batch => ApiRoute::Batch,
        }
    }
}

/// The routes a converter's payloads can go to (events through `api`). Events may still turn
/// into identifies or group identifies by their `event_type`, so those routes are listed for
/// every event converter; mutations only for Mirror Sync events and Profiles.
pub fn needed(file: &ConverterFile, api: EventApi) -> Vec<ApiRoute> {
    let mutations = file.strategy == Strategy::Mirror
        && matches!(file.data_type, DataType::Event | DataType::Profiles);
    let mut routes = match file.data_type {
        DataType::UserProperties => vec![ApiRoute::Identify],
        DataType::GroupProperties => vec![ApiRoute::GroupIdentify],
        DataType::Profiles => vec![],
        DataType::Event if mutations => vec![ApiRoute::Identify, ApiRoute::GroupIdentify],
        DataType::Event => vec![
            ApiRoute::events(api),
            ApiRoute::Identify,
            ApiRoute::GroupIdentify,
        ],
    };
    if mutations {
        routes.push(ApiRoute::Mutations);
    }
    routes
}

/// Whether `base_url` is one of Amplitude's own hosts (`api2.amplitude.com`, the EU host, …).
pub fn is_amplitude_host(base_url: &str) -> bool {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    let host = rest.split(['/', ':', '?']).next().unwrap_or("");
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "amplitude.com" || host.ends_with(".amplitude.com")
}

/// Why `file`'s payloads cannot all be delivered to `base_url`, with what to do; `None` when
/// every route it needs can be served there.
pub fn unserved(file: &ConverterFile, base_url: &str) -> Option<String> {
    let needs_mutations = needed(file, EventApi::HttpV2).contains(&ApiRoute::Mutations);
    if !needs_mutations || !is_amplitude_host(base_url) {
        return None;
    }
    let what = if file.data_type == DataType::Profiles {
        "Profiles (dataType \"profiles\")"
    } else {
        "Mirror Sync mutations (importStrategy \"mirror\")"
    };
    Some(format!(
        "the converter sends {what} to {}/mutations, a route Amplitude's public APIs do not have \
         (Mirror Sync and Profiles exist only inside Amplitude's hosted S3 import; its hosts \
         answer 404 and every payload would be lost): set the endpoint (S3I_ENDPOINT, or \
         --endpoint) to a compatible endpoint that serves /mutations, or import with \
         importStrategy \"append_only\"",
        base_url.trim_end_matches('/')
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Converter;

    fn file(extra: &str) -> ConverterFile {
        let text = format!(
            r#"{{"converterConfig": {{"fileType": "json", "compressionType": "none", {extra}
              "convertToAmplitudeFunc": {{"event_type": "e", "user_id": "u"}}}}}}"#
        );
        Converter::load(&text).unwrap().file
    }

    #[test]
    fn amplitude_hosts_are_recognised() {
        for url in [
            "https://api2.amplitude.com",
            "https://api.eu.amplitude.com/",
            "https://API2.Amplitude.com:443",
            "https://amplitude.com",
        ] {
            assert!(is_amplitude_host(url), "{url}");
        }
        for url in [
            "http://127.0.0.1:8080",
            "https://amplitude.com.example.org",
            "https://notamplitude.com",
            "https://proxy.example.com/amplitude.com",
        ] {
            assert!(!is_amplitude_host(url), "{url}");
        }
    }

    #[test]
    fn mirror_and_profiles_are_refused_on_amplitudes_hosts_only() {
        let mirror = file(r#""importStrategy": "mirror","#);
        let profiles = file(r#""dataType": "profiles","#);
        let append = file("");
        let users = file(r#""dataType": "user_properties","#);
        for host in ["https://api2.amplitude.com", "https://api.eu.amplitude.com"] {
            let why = unserved(&mirror, host).unwrap();
            assert!(
                why.contains("Mirror Sync") && why.contains("/mutations"),
                "{why}"
            );
            assert!(unserved(&profiles, host).unwrap().contains("Profiles"));
            assert!(unserved(&append, host).is_none());
            assert!(unserved(&users, host).is_none());
        }
        assert!(unserved(&mirror, "http://127.0.0.1:9000").is_none());
        assert!(unserved(&profiles, "https://mirror.example.com").is_none());
        assert_eq!(
            needed(&append, EventApi::Batch),
            vec![ApiRoute::Batch, ApiRoute::Identify, ApiRoute::GroupIdentify]
        );
        assert_eq!(
            needed(&profiles, EventApi::HttpV2),
            vec![ApiRoute::Mutations]
        );
    }
}
