//! One request to one API: batching limits, body encoding, and reading the answer (§6.4).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use super::routes::ApiRoute;
use super::{quota_ids, EventApi, Item, Job, SinkSettings};
use crate::convert::Kind;

/// Where a batch goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    Events(EventApi),
    Identify,
    GroupIdentify,
    Mutations,
}

impl Route {
    fn of(item: &Item, api: EventApi) -> Route {
        match (item.kind, &item.mutation) {
            (Kind::Event | Kind::Profile, Some(_)) | (Kind::Profile, None) => Route::Mutations,
            (Kind::Event, None) => Route::Events(api),
            (Kind::Identify, _) => Route::Identify,
            (Kind::GroupIdentify, _) => Route::GroupIdentify,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Route::Events(api) => ApiRoute::events(api),
            Route::Identify => ApiRoute::Identify,
            Route::GroupIdentify => ApiRoute::GroupIdentify,
            Route::Mutations => ApiRoute::Mutations,
        }
        .path()
    }

    /// (payloads, body bytes) per request, with room left for the envelope.
    fn limits(self, settings: &SinkSettings) -> (usize, usize) {
        let (count, bytes) = match self {
            Route::Events(EventApi::HttpV2) | Route::Mutations => (2000, 1_000_000),
            Route::Events(EventApi::Batch) => (2000, 20_000_000),
            Route::Identify => (2000, 1_000_000),
            Route::GroupIdentify => (1024, 1_000_000),
        };
        (count.min(settings.batch_events.max(1)), bytes - 4096)
    }

    fn form(self) -> bool {
        matches!(self, Route::Identify | Route::GroupIdentify)
    }
}

/// Bytes of `s` once form-url-encoded.
fn form_len(s: &str) -> usize {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"*-._ ".contains(&b) {
                1
            } else {
                3
            }
        })
        .sum()
}

fn item_len(route: Route, item: &Item) -> usize {
    let json = if route.form() {
        form_len(&item.json)
    } else {
        item.json.len()
    };
    json + 48 // separator, and the mutation wrapper when there is one
}

/// Groups items into batches per route, bounded by each route's count and byte limits.
pub(crate) struct Batcher {
    api: EventApi,
    limits: HashMap<Route, (usize, usize)>,
    open: HashMap<Route, (Vec<Item>, usize)>,
}

impl Batcher {
    pub(crate) fn new(settings: &SinkSettings) -> Self {
        let routes = [
            Route::Events(settings.event_api),
            Route::Identify,
            Route::GroupIdentify,
            Route::Mutations,
        ];
        let limits = routes.iter().map(|r| (*r, r.limits(settings))).collect();
        Batcher {
            api: settings.event_api,
            limits,
            open: HashMap::new(),
        }
    }

    /// Adds an item; returns a full batch when this item does not fit the open one.
    pub(crate) fn push(&mut self, item: Item) -> Option<Job> {
        let route = Route::of(&item, self.api);
        let (max_count, max_bytes) = self.limits[&route];
        let len = item_len(route, &item);
        let (batch, bytes) = self.open.entry(route).or_default();
        let full = (!batch.is_empty() && (batch.len() >= max_count || *bytes + len > max_bytes))
            .then(|| {
                *bytes = 0;
                Job::new(route, std::mem::take(batch), 0)
            });
        *bytes += len;
        batch.push(item);
        full
    }

    /// The batches still open.
    pub(crate) fn finish(self) -> Vec<Job> {
        let mut rest: Vec<(Route, (Vec<Item>, usize))> = self.open.into_iter().collect();
        rest.sort_by_key(|(r, _)| r.path());
        rest.into_iter()
            .filter(|(_, (b, _))| !b.is_empty())
            .map(|(r, (b, _))| Job::new(r, b, 0))
            .collect()
    }
}

fn json_body(settings: &SinkSettings, route: Route, items: &[Item]) -> Vec<u8> {
    let mut body = Vec::with_capacity(items.iter().map(|i| i.json.len() + 48).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"api_key\":");
    crate::json_out::write_str(&mut body, &settings.api_key);
    body.extend_from_slice(if route == Route::Mutations {
        b",\"mutations\":["
    } else {
        b",\"events\":["
    });
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        if route == Route::Mutations {
            body.extend_from_slice(b"{\"mutation_type\":");
            crate::json_out::write_str(&mut body, item.mutation.as_deref().unwrap_or("UPDATE"));
            body.extend_from_slice(if item.kind == Kind::Profile {
                b",\"profile\":"
            } else {
                b",\"event\":"
            });
            body.extend_from_slice(item.json.as_bytes());
            body.push(b'}');
        } else {
            body.extend_from_slice(item.json.as_bytes());
        }
    }
    body.extend_from_slice(b"]}");
    body
}

fn form_body(settings: &SinkSettings, items: &[Item]) -> String {
    let mut list = String::with_capacity(items.iter().map(|i| i.json.len() + 1).sum::<usize>() + 2);
    list.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&item.json);
    }
    list.push(']');
    serde_urlencoded::to_string([
        ("api_key", settings.api_key.as_str()),
        ("identification", list.as_str()),
    ])
    .unwrap_or_default()
}

/// How a delivery stopped because the endpoint has no route for a payload begins.
pub const NO_ROUTE: &str = "no such route";

/// What an answer means for the batch.
pub(crate) enum Answer {
    Ok,
    /// 413: split and try again.
    TooLarge,
    /// A permanent configuration error: stop the whole delivery.
    Fatal(String),
    /// The whole batch is refused for good.
    Rejected(String),
    /// 400 naming events: these indexes are refused (with reasons), the rest is resent.
    PartlyRejected(HashMap<usize, String>),
    /// 429: these indexes wait (all, when empty); ids over the daily quota are refused.
    Throttled {
        events: HashSet<usize>,
        over_quota: HashSet<String>,
    },
    /// A failure worth retrying (5xx, timeout, connection).
    Retry(String),
}

fn indexes(v: Option<&Value>) -> Vec<usize> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|i| i as usize)
                .collect()
        })
        .unwrap_or_default()
}

fn keys(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Reads a 400 answer: which events it refuses and why, or why the request as a whole failed.
fn bad_request(body: &Value, len: usize) -> Answer {
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("bad request");
    if error.eq_ignore_ascii_case("Invalid API key") {
        return Answer::Fatal(
            "the endpoint says the API key is invalid (400 Invalid API key)".into(),
        );
    }
    let mut reasons: HashMap<usize, String> = HashMap::new();
    for (list, what) in [
        ("events_with_invalid_fields", "invalid value"),
        ("events_with_missing_fields", "missing"),
    ] {
        if let Some(fields) = body.get(list).and_then(Value::as_object) {
            for (field, idx) in fields {
                for i in indexes(Some(idx)) {
                    reasons
                        .entry(i)
                        .or_insert_with(|| format!("{field}: {what} (400 {list})"));
                }
            }
        }
    }
    for i in indexes(body.get("silenced_events")) {
        reasons
            .entry(i)
            .or_insert_with(|| "the device is silenced by Amplitude (400 Events silenced)".into());
    }
    reasons.retain(|i, _| *i < len);
    if !reasons.is_empty() {
        return Answer::PartlyRejected(reasons);
    }
    if let Some(field) = body.get("missing_field").and_then(Value::as_str) {
        return Answer::Fatal(format!(
            "the endpoint says requests miss the field {field:?} (400)"
        ));
    }
    Answer::Rejected(format!("400 {error}"))
}

/// Sends one batch and reads the answer.
pub(crate) async fn send(
    client: &reqwest::Client,
    settings: &SinkSettings,
    route: Route,
    items: &[Item],
    timeout: Duration,
) -> Answer {
    let url = format!("{}{}", settings.base_url, route.path());
    let request = if route.form() {
        client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(settings, items))
    } else {
        let body = json_body(settings, route, items);
        let request = client.post(&url).header("content-type", "application/json");
        if settings.gzip {
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            let _ = gz.write_all(&body);
            request
                .header("content-encoding", "gzip")
                .body(gz.finish().unwrap_or_default())
        } else {
            request.body(body)
        }
    };
    let response = match request.timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) => return Answer::Retry(describe(&e)),
    };
    let status = response.status().as_u16();
    let text = match response.text().await {
        Ok(t) => t,
        // The connection broke while the answer came: it may or may not have landed.
        Err(e) if status == 200 => {
            return Answer::Retry(format!("answer cut off: {}", describe(&e)))
        }
        Err(_) => String::new(),
    };
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match status {
        200..=299 => Answer::Ok,
        413 => Answer::TooLarge,
        429 => {
            let events = indexes(body.get("throttled_events"))
                .into_iter()
                .filter(|i| *i < items.len())
                .collect();
            let over_quota = quota_ids(
                &keys(body.get("exceeded_daily_quota_devices")),
                &keys(body.get("exceeded_daily_quota_users")),
            );
            Answer::Throttled { events, over_quota }
        }
        400 => bad_request(&body, items.len()),
        403 => Answer::Rejected("403 Forbidden: blocked by the endpoint's firewall".into()),
        // No such route: nothing sent there can land, so the whole delivery stops (the object
        // waits, as with an unusable converter) rather than counting every payload rejected.
        404 | 405 => Answer::Fatal(format!(
            "{NO_ROUTE}: {url} answered {status}; the endpoint has no {} route (Mirror Sync and \
             Profiles need a compatible endpoint that serves /mutations; check S3I_ENDPOINT)",
            route.path()
        )),
        408 | 500..=599 => Answer::Retry(format!("HTTP {status}")),
        _ => {
            let excerpt: String = text.chars().take(200).collect();
            Answer::Rejected(format!("HTTP {status}: {excerpt}"))
        }
    }
}

/// A transport error in a few words, without the request body.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        let mut s = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            s = format!("{s}: {inner}");
            source = inner.source();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_400_naming_events_rejects_exactly_those_with_their_reasons() {
        let body = json!({"code": 400, "error": "Invalid field values on some events",
            "events_with_invalid_fields": {"time": [1, 9]}, "events_with_missing_fields": {"event_type": [2]},
            "silenced_events": [3]});
        match bad_request(&body, 5) {
            Answer::PartlyRejected(r) => {
                assert_eq!(r.len(), 3, "index 9 is outside the batch and ignored");
                assert_eq!(
                    r[&1],
                    "time: invalid value (400 events_with_invalid_fields)"
                );
                assert_eq!(
                    r[&2],
                    "event_type: missing (400 events_with_missing_fields)"
                );
                assert!(r[&3].contains("silenced"));
            }
            _ => panic!("expected a partial rejection"),
        }
    }

    #[test]
    fn configuration_errors_are_fatal_and_other_400s_reject_the_batch() {
        assert!(
            matches!(bad_request(&json!({"error": "Invalid API key"}), 3), Answer::Fatal(m) if m.contains("API key"))
        );
        let missing =
            json!({"error": "Request missing required field", "missing_field": "api_key"});
        assert!(matches!(bad_request(&missing, 3), Answer::Fatal(m) if m.contains("api_key")));
        assert!(
            matches!(bad_request(&json!({"error": "Invalid JSON request body"}), 3), Answer::Rejected(m) if m.contains("Invalid JSON"))
        );
        // Index lists that name nothing in this batch must not cause an endless resend.
        let outside = json!({"error": "x", "events_with_invalid_fields": {"time": [7]}});
        assert!(matches!(bad_request(&outside, 3), Answer::Rejected(_)));
    }

    #[test]
    fn daily_quota_ids_are_spelled_like_throttle_ids() {
        let ids = quota_ids(&["dev-1".into()], &["u-1".into()]);
        assert!(ids.contains("dev-1") && ids.contains("user:u-1"));
    }

    #[test]
    fn batches_respect_count_and_byte_limits_per_route() {
        let mut settings = SinkSettings::new("k", "http://x");
        settings.batch_events = 3;
        let item = |n, kind, len| Item {
            n,
            kind,
            mutation: None,
            throttle_id: None,
            json: "x".repeat(len),
        };
        let mut b = Batcher::new(&settings);
        let mut jobs = Vec::new();
        for n in 0..7 {
            jobs.extend(b.push(item(n, Kind::Event, 10)));
        }
        jobs.extend(b.push(item(7, Kind::Identify, 10)));
        jobs.extend(b.finish());
        let sizes: Vec<(Route, usize)> = jobs.iter().map(|j| (j.route, j.items.len())).collect();
        assert_eq!(
            sizes,
            vec![
                (Route::Events(EventApi::HttpV2), 3),
                (Route::Events(EventApi::HttpV2), 3),
                (Route::Events(EventApi::HttpV2), 1),
                (Route::Identify, 1)
            ]
        );
        // Bytes: three 400 kB events cannot share a 1 MB request.
        let mut b = Batcher::new(&SinkSettings::new("k", "http://x"));
        let full: Vec<Job> = (0..3)
            .filter_map(|n| b.push(item(n, Kind::Event, 400_000)))
            .collect();
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].items.len(), 2);
        // Form encoding triples quotes: identify batches count encoded bytes.
        assert_eq!(form_len("a\"b c"), 1 + 3 + 1 + 1 + 1);
    }
}
