//! `s3-import emulator`: a local Amplitude-compatible ingestion endpoint for the demo, the tests
//! and dry runs. It validates like Amplitude (amplitude-reference.md §6–9), drops repeated
//! `insert_id`s per device for 7 days, throttles hot devices/users with 429, can inject faults,
//! appends what it accepted to JSON-lines files and reports counts at `GET /stats`.
//!
//! Dropped requests really cut their connection (`cut.rs`). Tests: tests/it/sink.rs, tests/it/faults.rs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

mod cut;
mod identify;

use cut::{cut_connection, deliver, ConnCutter, CuttableListener, Cutter};

use crate::convert::usable_id;
use crate::datalang::value::parse_value;
use crate::datalang::V;
use crate::json_out::{self, Style};

const DEDUPE_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

/// How the emulator behaves.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where accepted payloads are appended (`events.jsonl`, `identify.jsonl`, …).
    pub data_dir: PathBuf,
    /// The only API key accepted; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Events per second allowed per device (or user); `None`: no limit.
    pub eps_limit: Option<u32>,
    /// Share of requests answered 500 (after ingesting) or 503 (before), 0.0–1.0.
    pub fail_rate: f64,
    /// Share of requests whose connection is cut after ingesting, 0.0–1.0.
    pub drop_rate: f64,
    /// Added to every request.
    pub latency: Duration,
    /// Events per request (HTTP V2 and Batch).
    pub max_events: usize,
    /// Body bytes (decompressed) for HTTP V2 and mutations; Batch allows 20 MB.
    pub max_body_bytes: usize,
    /// Seed of the fault generator, for repeatable runs.
    pub seed: u64,
}

impl EmulatorConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        EmulatorConfig {
            data_dir,
            api_key: None,
            eps_limit: None,
            fail_rate: 0.0,
            drop_rate: 0.0,
            latency: Duration::ZERO,
            max_events: 2000,
            max_body_bytes: 1 << 20,
            seed: 42,
        }
    }
}

#[derive(Default, serde::Serialize)]
struct Stats {
    requests: BTreeMap<String, BTreeMap<u16, u64>>,
    events: u64,
    duplicates: u64,
    identifies: u64,
    group_identifies: u64,
    mutations: u64,
    throttled_events: u64,
    dropped_connections: u64,
    /// Requests whose body came with `Content-Encoding: gzip`.
    gzip_requests: u64,
}

struct Inner {
    stats: Stats,
    /// (device or user, insert_id) → epoch ms first seen.
    seen: HashMap<(String, String), i64>,
    /// Per device/user: times of recently accepted events.
    recent: HashMap<String, VecDeque<Instant>>,
    rng: u64,
}

struct App {
    config: EmulatorConfig,
    inner: Mutex<Inner>,
    /// Appends to the data files, one at a time.
    files: Mutex<()>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Inner {
    fn roll(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn count(&mut self, route: &str, headers: &HeaderMap, code: u16) {
        self.stats.gzip_requests += u64::from(is_gzip(headers));
        *self
            .stats
            .requests
            .entry(route.to_string())
            .or_default()
            .entry(code)
            .or_insert(0) += 1;
    }
}

fn reply(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

/// The request body, gzip-decoded when sent so; `None` when it does not decode.
fn is_gzip(headers: &HeaderMap) -> bool {
    headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
}

fn body_bytes(headers: &HeaderMap, body: &Bytes) -> Option<Vec<u8>> {
    if !is_gzip(headers) {
        return Some(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .take(64 << 20)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn undecodable() -> Response {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"code": 400, "error": "Invalid JSON request body"}),
    )
}

fn id_of_v(event: &V<'_>) -> Option<String> {
    let usable = |k: &str| event.get(k).and_then(V::as_str).filter(|s| usable_id(s));
    usable("device_id")
        .map(str::to_string)
        .or_else(|| usable("user_id").map(|u| format!("user:{u}")))
}

fn id_of(event: &Map<String, Value>) -> Option<String> {
    let usable = |k: &str| {
        event
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| usable_id(s))
            .map(str::to_string)
    };
    usable("device_id").or_else(|| usable("user_id").map(|u| format!("user:{u}")))
}

impl App {
    fn append(&self, file: &str, lines: &[Value]) {
        let mut text = Vec::new();
        for l in lines {
            let _ = serde_json::to_writer(&mut text, l);
            text.push(b'\n');
        }
        self.append_bytes(file, &text);
    }

    fn append_bytes(&self, file: &str, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        let _one_at_a_time = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.config.data_dir.join(file);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(text);
        }
    }

    /// Faults decided before the request is handled: `Some` answers 503 without ingesting.
    fn fault_before(&self, inner: &mut Inner) -> Option<Response> {
        if self.config.fail_rate > 0.0 && inner.roll() < self.config.fail_rate / 2.0 {
            return Some(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"code": 503, "error": "Service Unavailable"}),
            ));
        }
        None
    }

    /// Faults after ingesting: a 500 or a cut connection (the client cannot know it landed).
    fn fault_after(&self, inner: &mut Inner) -> Option<Response> {
        if self.config.fail_rate > 0.0 && inner.roll() < self.config.fail_rate / 2.0 {
            return Some(reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"code": 500, "error": "Internal Server Error"}),
            ));
        }
        if self.config.drop_rate > 0.0 && inner.roll() < self.config.drop_rate {
            inner.stats.dropped_connections += 1;
            return Some(cut_connection());
        }
        None
    }

    /// HTTP V2, Batch and mutations: validate, throttle, dedupe, ingest.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn events(
        &self,
        route: &str,
        headers: &HeaderMap,
        body: &Bytes,
        list_key: &str,
        max_bytes: usize,
    ) -> Response {
        let response = self.events_checked(headers, body, list_key, max_bytes);
        self.lock()
            .count(route, headers, response.status().as_u16());
        response
    }

    /// The response for a missing or wrong API key, if it is.
    fn key_problem(&self, key: Option<&str>) -> Option<Response> {
        match key {
            None | Some("") => Some(reply(
                StatusCode::BAD_REQUEST,
                json!({"code": 400, "error": "Request missing required field", "missing_field": "api_key"}),
            )),
            Some(k) if self.config.api_key.as_deref().is_some_and(|want| want != k) => Some(reply(
                StatusCode::BAD_REQUEST,
                json!({"code": 400, "error": "Invalid API key"}),
            )),
            Some(_) => None,
        }
    }

    /// Decoding and validation run without the lock, so requests in flight overlap; throttling,
    /// dedupe and ingesting hold it. Bodies are read with the project's borrowed value parser:
    /// a `serde_json::Value` per event made the emulator, not the client, the bottleneck.
    /// Long on purpose: Amplitude's checks in the order its documentation lists them.
    fn events_checked(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
        list_key: &str,
        max_bytes: usize,
    ) -> Response {
        if let Some(r) = self.fault_before(&mut self.lock()) {
            return r;
        }
        let Some(bytes) = body_bytes(headers, body) else {
            return undecodable();
        };
        if bytes.len() > max_bytes {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"code": 413, "error": "Payload too large"}),
            );
        }
        let Some(req) = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| parse_value(t).ok())
        else {
            return undecodable();
        };
        if !matches!(req, V::Obj(_)) {
            return undecodable();
        }
        if let Some(r) = self.key_problem(req.get("api_key").and_then(V::as_str)) {
            return r;
        }
        // An empty list is a missing field, as Amplitude answers it: a request that ingests
        // nothing, which `s3-import check` sends to test the API key (checked just above).
        let Some(V::Arr(items)) = req
            .get(list_key)
            .filter(|l| !matches!(l, V::Arr(a) if a.is_empty()))
        else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"code": 400, "error": "Request missing required field", "missing_field": list_key}),
            );
        };
        if items.len() > self.config.max_events {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"code": 413, "error": "Payload too large"}),
            );
        }
        // Validation: every problem, by field, with the indexes of the events that have it.
        let mut invalid: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut missing: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut events: Vec<(usize, Option<String>, &V)> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let event = if list_key == "mutations" {
                if !matches!(
                    item.get("mutation_type").and_then(V::as_str),
                    Some("INSERT" | "UPDATE" | "DELETE")
                ) {
                    invalid.entry("mutation_type").or_default().push(i);
                }
                item.get("event").or_else(|| item.get("profile"))
            } else {
                Some(item)
            };
            let Some(e @ V::Obj(_)) = event else {
                invalid.entry("event").or_default().push(i);
                continue;
            };
            let is_profile = item.get("profile").is_some();
            let has_type = e
                .get("event_type")
                .and_then(V::as_str)
                .is_some_and(|s| !s.is_empty());
            if !is_profile && !has_type {
                missing.entry("event_type").or_default().push(i);
            }
            let id = id_of_v(e);
            if id.is_none() {
                missing
                    .entry(if is_profile { "user_id" } else { "device_id" })
                    .or_default()
                    .push(i);
            }
            if e.get("time")
                .is_some_and(|t| !matches!(t, V::Num(n) if n.is_integer()))
            {
                invalid.entry("time").or_default().push(i);
            }
            events.push((i, id, item));
        }
        if !invalid.is_empty() || !missing.is_empty() {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"code": 400, "error": "Invalid field values on some events",
                       "events_with_invalid_fields": invalid, "events_with_missing_fields": missing}),
            );
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        // Throttling per device/user over the last second.
        if let Some(limit) = self.config.eps_limit {
            let now = Instant::now();
            let mut per_id: HashMap<&str, u32> = HashMap::new();
            let mut throttled_events = Vec::new();
            let mut throttled_devices = Map::new();
            let mut throttled_users = Map::new();
            for (i, id, _) in &events {
                let Some(id) = id else { continue };
                let window = inner.recent.entry(id.clone()).or_default();
                while window
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
                {
                    window.pop_front();
                }
                let n = per_id.entry(id.as_str()).or_insert(0);
                *n += 1;
                if window.len() as u32 + *n > limit {
                    throttled_events.push(*i);
                    let eps = json!(window.len() as u32 + *n);
                    match id.strip_prefix("user:") {
                        Some(user) => throttled_users.insert(user.to_string(), eps),
                        None => throttled_devices.insert(id.clone(), eps),
                    };
                }
            }
            if !throttled_events.is_empty() {
                inner.stats.throttled_events += throttled_events.len() as u64;
                return reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": limit,
                           "throttled_devices": throttled_devices, "throttled_users": throttled_users,
                           "throttled_events": throttled_events}),
                );
            }
            for (_, id, _) in &events {
                if let Some(id) = id {
                    inner.recent.entry(id.clone()).or_default().push_back(now);
                }
            }
        }
        // Dedupe by (device or user, insert_id) over 7 days under the lock; render and append
        // outside it, so concurrent requests only queue for the bookkeeping.
        let now = now_ms();
        let mut keep = Vec::with_capacity(events.len());
        for (_, id, item) in events {
            // Mirror Sync: an UPDATE or DELETE names its event's insert_id on purpose; only a
            // repeated INSERT is a duplicate.
            let event = if list_key == "mutations" {
                (item.get("mutation_type").and_then(V::as_str) == Some("INSERT"))
                    .then(|| item.get("event").or_else(|| item.get("profile")))
                    .flatten()
            } else {
                Some(item)
            };
            if let (Some(id), Some(ins)) = (
                id,
                event.and_then(|e| e.get("insert_id")).and_then(V::as_str),
            ) {
                match inner.seen.entry((id, ins.to_string())) {
                    std::collections::hash_map::Entry::Occupied(mut seen) => {
                        if now - *seen.get() < DEDUPE_WINDOW_MS {
                            inner.stats.duplicates += 1;
                            continue;
                        }
                        seen.insert(now);
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(now);
                    }
                }
            }
            keep.push(item);
        }
        if list_key == "mutations" {
            inner.stats.mutations += keep.len() as u64;
        } else {
            inner.stats.events += keep.len() as u64;
        }
        let after = self.fault_after(inner);
        drop(guard);
        let mut out = Vec::with_capacity(bytes.len());
        for item in keep {
            json_out::write_value(&mut out, item, Style::Compact);
            out.push(b'\n');
        }
        self.append_bytes(
            if list_key == "mutations" {
                "mutations.jsonl"
            } else {
                "events.jsonl"
            },
            &out,
        );
        if let Some(r) = after {
            return r;
        }
        reply(
            StatusCode::OK,
            json!({"code": 200, "events_ingested": items.len(), "payload_size_bytes": bytes.len(), "server_upload_time": now}),
        )
    }
}

async fn delayed(app: &App) {
    if !app.config.latency.is_zero() {
        tokio::time::sleep(app.config.latency).await;
    }
}

/// The emulator's routes, ready to serve.
pub fn router(config: EmulatorConfig) -> Router {
    let seed = config.seed.max(1);
    let app = Arc::new(App {
        config,
        inner: Mutex::new(Inner {
            stats: Stats::default(),
            seen: HashMap::new(),
            recent: HashMap::new(),
            rng: seed,
        }),
        files: Mutex::new(()),
    });
    let events = |route: &'static str, list_key: &'static str, max_bytes: Option<usize>| {
        post(
            move |State(a): State<Arc<App>>, conn: ConnCutter, h: HeaderMap, b: Bytes| async move {
                delayed(&a).await;
                let max_bytes = max_bytes.unwrap_or(a.config.max_body_bytes);
                deliver(a.events(route, &h, &b, list_key, max_bytes), conn)
            },
        )
    };
    let identify = |route: &'static str, group: bool| {
        post(
            move |State(a): State<Arc<App>>, conn: ConnCutter, h: HeaderMap, b: Bytes| async move {
                delayed(&a).await;
                deliver(a.identify(route, &h, &b, group), conn)
            },
        )
    };
    Router::new()
        .route("/2/httpapi", events("/2/httpapi", "events", None))
        .route("/batch", events("/batch", "events", Some(20 << 20)))
        .route("/mutations", events("/mutations", "mutations", None))
        .route("/identify", identify("/identify", false))
        .route("/groupidentify", identify("/groupidentify", true))
        .route(
            "/stats",
            get(|State(a): State<Arc<App>>| async move {
                let inner = a.inner.lock().unwrap_or_else(|p| p.into_inner());
                axum::Json(serde_json::to_value(&inner.stats).unwrap_or_default())
            }),
        )
        .with_state(app)
}

/// Serves the emulator on `listen` until the process ends; returns the bound address first
/// through `bound` (port 0 picks a free port).
pub async fn serve(
    listen: SocketAddr,
    config: EmulatorConfig,
    bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    bound(listener.local_addr()?);
    let app = router(config).into_make_service_with_connect_info::<Cutter>();
    axum::serve(CuttableListener(listener), app).await
}
