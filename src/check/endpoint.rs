//! The endpoint checks: an empty request to every route the converter's payloads use, and
//! what each answer proves (and does not) about the API key.

use super::*;

/// Every route the converter's payloads use answers, and the API key is accepted where the
/// endpoint's documented answer shows it (amplitude-reference.md §6–9). Each probe sends an
/// empty request, which ingests nothing:
/// - events (`/2/httpapi` or `/batch`) with no events: Amplitude answers 400 `missing_field:
///   events` for a good key and `Invalid API key` for a bad one, so this proves the key;
/// - `/identify` and `/groupidentify` with no identification: the documented answer is 400
///   `missing_event`, which proves the route exists but says nothing about the key;
/// - `/mutations` (Mirror Sync, Profiles; a compatible endpoint only) with no mutations: any
///   answer but 404/405 proves the route exists, nothing more.
pub(super) async fn probe_routes(settings: &Settings, conv: Option<&Converter>) -> Vec<Check> {
    use crate::sink::routes::{needed, unserved};
    let sink = &settings.sink;
    let events = ApiRoute::events(sink.event_api);
    let routes = conv.map_or(vec![events], |c| needed(&c.file, sink.event_api));
    if let Some(why) = conv.and_then(|c| unserved(&c.file, &sink.base_url)) {
        return vec![Check::problem(
            "endpoint",
            why,
            "set S3I_ENDPOINT to an endpoint that serves /mutations, or change the converter",
        )];
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap_or_default();
    let mut checks = Vec::new();
    for route in routes {
        checks.push(probe(&client, settings, route).await);
    }
    checks
}

/// One empty request to `route`, and what its answer proves (see [`probe_routes`]).
async fn probe(client: &reqwest::Client, settings: &Settings, route: ApiRoute) -> Check {
    let sink = &settings.sink;
    let name = match route {
        ApiRoute::HttpV2 | ApiRoute::Batch => "endpoint",
        ApiRoute::Identify => "endpoint-identify",
        ApiRoute::GroupIdentify => "endpoint-groupidentify",
        ApiRoute::Mutations => "endpoint-mutations",
    };
    let url = format!("{}{}", sink.base_url.trim_end_matches('/'), route.path());
    let request = match route {
        ApiRoute::Identify | ApiRoute::GroupIdentify => client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([("api_key", sink.api_key.as_str())])
                    .unwrap_or_default(),
            ),
        ApiRoute::Mutations => client
            .post(&url)
            .header("content-type", "application/json")
            .body(serde_json::json!({"api_key": sink.api_key, "mutations": []}).to_string()),
        ApiRoute::HttpV2 | ApiRoute::Batch => client
            .post(&url)
            .header("content-type", "application/json")
            .body(serde_json::json!({"api_key": sink.api_key, "events": []}).to_string()),
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            return Check::problem(
                name,
                format!("{url} does not answer: {e}"),
                "check S3I_ENDPOINT / S3I_REGION and the network path (VPC, proxy) to it",
            )
        }
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let error = body["error"].as_str().unwrap_or("");
    let excerpt: String = text.chars().take(200).collect();
    match (route, status) {
        (_, 404 | 405) => Check::problem(
            name,
            format!("{url} answered {status}: the endpoint has no such route"),
            if route == ApiRoute::Mutations {
                "Mirror Sync and Profiles need an endpoint that serves /mutations (S3I_ENDPOINT)"
            } else {
                "check that S3I_ENDPOINT is an Amplitude-compatible endpoint"
            },
        ),
        (_, 400) if error.starts_with("Invalid API key") || text.contains("invalid_api_key") => {
            Check::problem(
                name,
                format!("{url} refuses the API key: {excerpt}"),
                "put the project's API key in the secret S3I_API_KEY_SECRET names (or AMPLITUDE_API_KEY)",
            )
        }
        (ApiRoute::HttpV2 | ApiRoute::Batch, 200) => {
            Check::ok(name, format!("{url} answers and accepts the API key"))
        }
        (ApiRoute::HttpV2 | ApiRoute::Batch, 400) if body["missing_field"] == "events" => Check::ok(
            name,
            format!("{url} answers and accepts the API key (a request with no events, nothing ingested)"),
        ),
        (ApiRoute::Identify | ApiRoute::GroupIdentify | ApiRoute::Mutations, 200..=299 | 400) => {
            Check::ok(
                name,
                format!(
                    "{url} answers {status} to an empty request: the route exists (this answer \
                     does not prove the API key; the events probe does)"
                ),
            )
        }
        _ => Check::problem(
            name,
            format!("{url} answered {status}: {excerpt}"),
            "check that S3I_ENDPOINT is an Amplitude-compatible endpoint",
        ),
    }
}
