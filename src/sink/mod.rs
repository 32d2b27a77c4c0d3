//! Delivery to Amplitude's ingestion APIs (amplitude-reference.md §6–9): batching by count and
//! bytes per API, several requests in flight, the response rules of §6.4, retries with
//! exponential backoff and full jitter bounded by attempts and by the caller's deadline, and an
//! outcome for every payload: sent, rejected (with the reason) or not sent.

mod request;
pub mod routes;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::convert::{Kind, Payload};
use crate::json_out::{self, Style};
pub use request::NO_ROUTE;
use request::{Answer, Route};

/// Which API receives events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventApi {
    /// `/2/httpapi`: 2000 events and 1 MB per request.
    HttpV2,
    /// `/batch`: 2000 events and 20 MB per request; suits backfills.
    Batch,
}

/// Amplitude's data-residency regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Us,
    Eu,
}

impl Region {
    pub fn base_url(self) -> &'static str {
        match self {
            Region::Us => "https://api2.amplitude.com",
            Region::Eu => "https://api.eu.amplitude.com",
        }
    }
}

/// How to deliver. The API key is never printed.
#[derive(Clone)]
pub struct SinkSettings {
    pub api_key: String,
    /// `https://api2.amplitude.com`, the EU host, the emulator or any compatible endpoint.
    pub base_url: String,
    pub event_api: EventApi,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Gzip request bodies (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Attempts per payload for retryable failures (5xx, timeouts, connection errors).
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long throttled (429) devices and users are held back.
    pub throttle_pause: Duration,
    pub request_timeout: Duration,
    /// Bound on events per request (the API's own limit is used when lower).
    pub batch_events: usize,
}

impl fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("SinkSettings")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("event_api", &self.event_api)
            .field("max_in_flight", &self.max_in_flight)
            .field("gzip", &self.gzip)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl SinkSettings {
    pub fn new(api_key: impl Into<String>, base_url: impl Into<String>) -> Self {
        SinkSettings {
            api_key: api_key.into(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
            event_api: EventApi::HttpV2,
            max_in_flight: 8,
            gzip: false,
            max_attempts: 8,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            throttle_pause: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            batch_events: 2000,
        }
    }
}

/// One payload, ready to send: its compact JSON and what the rules need to know about it.
#[derive(Clone, Debug)]
pub struct Item {
    /// Record index in the object.
    pub n: u64,
    pub kind: Kind,
    /// Mirror strategy: the mutation type; the item goes to the mutation endpoint.
    pub mutation: Option<String>,
    /// The device (or `user:<user_id>`) that throttling is about.
    pub throttle_id: Option<String>,
    pub json: String,
}

impl Item {
    /// Renders a converted payload (`n`: its record index).
    pub fn from_payload(n: u64, p: &Payload<'_, '_>) -> Item {
        let mut buf = Vec::with_capacity(256);
        json_out::write_object(
            &mut buf,
            p.fields.iter().map(|(k, v)| (*k, v.as_ref())),
            Style::Compact,
        );
        let text = |name: &str| p.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let throttle_id =
            text("device_id").or_else(|| text("user_id").map(|u| format!("user:{u}")));
        Item {
            n,
            kind: p.kind,
            mutation: text("mutation_type")
                .filter(|_| matches!(p.kind, Kind::Event | Kind::Profile)),
            throttle_id,
            json: String::from_utf8(buf).unwrap_or_default(),
        }
    }
}

/// Fates by record number, and the JSON of the rejected payloads among them.
pub type Settled = (Vec<(u64, Kind, Fate)>, Vec<(u64, String)>);

/// What became of one payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Sent,
    /// The endpoint refused it for good; the reason names the field or rule.
    Rejected(String),
    /// Not confirmed before the attempts or the deadline ran out: the caller must retry it.
    NotSent(String),
}

/// The outcome of a delivery: a fate for every item, and counts that add up.
#[derive(Debug, Default)]
pub struct Delivery {
    pub fates: Vec<(u64, Kind, Fate)>,
    /// The JSON of each rejected payload, by record number.
    pub rejected_payloads: Vec<(u64, String)>,
    /// Set when delivery stopped on a permanent configuration error (bad API key, …).
    pub fatal: Option<String>,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
}

impl Delivery {
    pub fn sent(&self) -> usize {
        self.fates.iter().filter(|f| f.2 == Fate::Sent).count()
    }
    pub fn rejected(&self) -> usize {
        self.fates
            .iter()
            .filter(|f| matches!(f.2, Fate::Rejected(_)))
            .count()
    }
    pub fn not_sent(&self) -> usize {
        self.fates
            .iter()
            .filter(|f| matches!(f.2, Fate::NotSent(_)))
            .count()
    }
}

/// State shared by the batch tasks of one delivery.
struct Shared {
    settings: SinkSettings,
    client: reqwest::Client,
    /// Requests in flight: this delivery's own, or a budget it shares with others.
    permits: Arc<Semaphore>,
    deadline: Instant,
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
    fates: Mutex<Vec<(u64, Kind, Fate)>>,
    /// The JSON of rejected payloads, for the report's rejected records.
    rejected: Mutex<Vec<(u64, String)>>,
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    rng: AtomicU64,
}

impl Shared {
    fn settle(&self, items: &[Item], fate: &Fate) {
        let mut fates = self.fates.lock().unwrap_or_else(|p| p.into_inner());
        fates.extend(items.iter().map(|i| (i.n, i.kind, fate.clone())));
        if matches!(fate, Fate::Rejected(_)) {
            let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
            rejected.extend(items.iter().map(|i| (i.n, i.json.clone())));
        }
    }

    /// Full jitter: a random wait between zero and the capped exponential step.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.settings.backoff_max.min(
            self.settings
                .backoff_base
                .saturating_mul(1 << attempt.min(20)),
        );
        let mut x = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        cap.mul_f64((x >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Waits `d` unless that would pass the deadline; false when it would.
    async fn wait(&self, d: Duration) -> bool {
        if Instant::now() + d >= self.deadline {
            return false;
        }
        tokio::time::sleep(d).await;
        true
    }
}

/// A batch on its way: items, the attempt count of retryable failures, and when it may go.
struct Job {
    route: Route,
    items: Vec<Item>,
    attempt: u32,
    not_before: Option<Instant>,
    last_error: Option<String>,
}

impl Job {
    fn new(route: Route, items: Vec<Item>, attempt: u32) -> Job {
        Job {
            route,
            items,
            attempt,
            not_before: None,
            last_error: None,
        }
    }
}

/// Delivers `items` to the endpoint, in batches, until every item has a fate or `deadline`
/// passes. Items still unconfirmed at the deadline come back as `NotSent`, never dropped.
pub async fn deliver(
    client: &reqwest::Client,
    settings: &SinkSettings,
    items: Vec<Item>,
    deadline: Instant,
) -> Delivery {
    let mut driver = Driver::new(client, settings, deadline);
    for item in items {
        driver.push(item).await;
    }
    driver.finish().await
}

/// Delivers items as they arrive on `items`, batching them per API, until the sending side
/// closes and every item has a fate (or `deadline` passes: the rest come back as `NotSent`).
/// Memory stays bounded: at most `2 × max_in_flight` batches exist beside the open ones;
/// the channel pushes back on the producer when they are all busy.
pub async fn deliver_stream(
    client: &reqwest::Client,
    settings: &SinkSettings,
    mut items: tokio::sync::mpsc::Receiver<Item>,
    deadline: Instant,
) -> Delivery {
    let mut driver = Driver::new(client, settings, deadline);
    while let Some(item) = items.recv().await {
        driver.push(item).await;
    }
    driver.finish().await
}

/// Batches items as they come and keeps a bounded number of batches on their way.
/// Fates can be taken as they settle (`take_settled`) or all at the end (`finish`).
pub struct Driver {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    batcher: request::Batcher,
    limit: usize,
}

impl Driver {
    pub fn new(client: &reqwest::Client, settings: &SinkSettings, deadline: Instant) -> Self {
        let permits = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
        Driver::sharing(client, settings, deadline, permits)
    }

    /// A delivery whose requests in flight count against `permits`, shared with the other
    /// deliveries running at the same time (the objects of one invocation).
    pub fn sharing(
        client: &reqwest::Client,
        settings: &SinkSettings,
        deadline: Instant,
        permits: Arc<Semaphore>,
    ) -> Self {
        let shared = Arc::new(Shared {
            settings: settings.clone(),
            client: client.clone(),
            permits,
            deadline,
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
            fates: Mutex::new(Vec::new()),
            rejected: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            rng: AtomicU64::new(0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id())),
        });
        Driver {
            shared,
            tasks: JoinSet::new(),
            batcher: request::Batcher::new(settings),
            limit: 2 * settings.max_in_flight.max(1),
        }
    }

    fn spawn(&mut self, job: Job) {
        let shared = Arc::clone(&self.shared);
        self.tasks.spawn(async move { run_job(shared, job).await });
    }

    /// Adds an item; waits while the bounded number of batches are all on their way.
    pub async fn push(&mut self, item: Item) {
        if let Some(job) = self.batcher.push(item) {
            while self.tasks.len() >= self.limit {
                self.tasks.join_next().await;
            }
            self.spawn(job);
        }
    }

    /// The fates settled since the last call, and the JSON of the rejected payloads among them.
    pub fn take_settled(&self) -> Settled {
        let fates =
            std::mem::take(&mut *self.shared.fates.lock().unwrap_or_else(|p| p.into_inner()));
        let rejected = std::mem::take(
            &mut *self
                .shared
                .rejected
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        (fates, rejected)
    }

    /// Sends what is still batched and waits until every item has a fate (or the deadline).
    pub async fn finish(mut self) -> Delivery {
        let batcher = std::mem::replace(
            &mut self.batcher,
            request::Batcher::new(&self.shared.settings),
        );
        for job in batcher.finish() {
            self.spawn(job);
        }
        while self.tasks.join_next().await.is_some() {}
        let shared = &self.shared;
        let fatal = shared
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut fates =
            std::mem::take(&mut *shared.fates.lock().unwrap_or_else(|p| p.into_inner()));
        fates.sort_by_key(|f| f.0);
        let rejected_payloads =
            std::mem::take(&mut *shared.rejected.lock().unwrap_or_else(|p| p.into_inner()));
        Delivery {
            fates,
            rejected_payloads,
            fatal,
            requests: shared.requests.load(Ordering::Relaxed),
            retries: shared.retries.load(Ordering::Relaxed),
            throttled: shared.throttled.load(Ordering::Relaxed),
        }
    }
}

/// Sends one batch and whatever it turns into (halves after 413, the rest after 400, the
/// throttled part after 429, the whole after a retryable failure) until all of it is settled.
/// Long on purpose: one match over the answers, each arm the documented retry rule.
async fn run_job(shared: Arc<Shared>, first: Job) {
    let mut queue = vec![first];
    while let Some(mut job) = queue.pop() {
        if job.items.is_empty() {
            continue;
        }
        if shared.stop.load(Ordering::Relaxed) {
            let why = shared
                .fatal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            shared.settle(
                &job.items,
                &Fate::NotSent(format!("delivery stopped: {why}")),
            );
            continue;
        }
        if let Some(t) = job.not_before {
            if !shared
                .wait(t.saturating_duration_since(Instant::now()))
                .await
            {
                shared.settle(
                    &job.items,
                    &Fate::NotSent("deadline reached while held back after 429".into()),
                );
                continue;
            }
        }
        let Ok(permit) = shared.permits.acquire().await else {
            return;
        };
        let left = shared.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            drop(permit);
            let why = job
                .last_error
                .as_deref()
                .map_or(String::new(), |e| format!(" (last error: {e})"));
            shared.settle(&job.items, &Fate::NotSent(format!("deadline reached{why}")));
            continue;
        }
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let answer = request::send(
            &shared.client,
            &shared.settings,
            job.route,
            &job.items,
            left.min(shared.settings.request_timeout),
        )
        .await;
        drop(permit);
        match answer {
            Answer::Ok => shared.settle(&job.items, &Fate::Sent),
            Answer::TooLarge => {
                if job.items.len() == 1 {
                    shared.settle(
                        &job.items,
                        &Fate::Rejected("payload too large (413) even when sent alone".into()),
                    );
                } else {
                    let half = job.items.split_off(job.items.len() / 2);
                    queue.push(Job::new(job.route, half, job.attempt));
                    queue.push(Job::new(job.route, job.items, job.attempt));
                }
            }
            Answer::Fatal(reason) => {
                shared.stop.store(true, Ordering::Relaxed);
                shared
                    .fatal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(reason.clone());
                shared.settle(
                    &job.items,
                    &Fate::NotSent(format!("delivery stopped: {reason}")),
                );
            }
            Answer::Rejected(reason) => shared.settle(&job.items, &Fate::Rejected(reason)),
            Answer::PartlyRejected(reasons) => {
                let mut good = Vec::with_capacity(job.items.len());
                for (i, item) in job.items.into_iter().enumerate() {
                    match reasons.get(&i) {
                        Some(reason) => shared
                            .settle(std::slice::from_ref(&item), &Fate::Rejected(reason.clone())),
                        None => good.push(item),
                    }
                }
                queue.push(Job::new(job.route, good, job.attempt));
            }
            Answer::Throttled { events, over_quota } => {
                shared.throttled.fetch_add(1, Ordering::Relaxed);
                let all = events.is_empty();
                let mut held = Vec::new();
                let mut rest = Vec::new();
                for (i, item) in job.items.into_iter().enumerate() {
                    let throttled = all || events.contains(&i);
                    if throttled
                        && item
                            .throttle_id
                            .as_ref()
                            .is_some_and(|id| over_quota.contains(id))
                    {
                        shared.settle(
                            std::slice::from_ref(&item),
                            &Fate::Rejected(
                                "the device or user is over Amplitude's daily quota (429)".into(),
                            ),
                        );
                    } else if throttled {
                        held.push(item);
                    } else {
                        rest.push(item);
                    }
                }
                let later = Instant::now() + shared.settings.throttle_pause;
                queue.push(Job {
                    route: job.route,
                    items: held,
                    attempt: job.attempt,
                    not_before: Some(later),
                    last_error: Some("429 throttled".into()),
                });
                queue.push(Job::new(job.route, rest, job.attempt));
            }
            Answer::Retry(error) => {
                let attempt = job.attempt + 1;
                if attempt >= shared.settings.max_attempts {
                    shared.settle(
                        &job.items,
                        &Fate::NotSent(format!("gave up after {attempt} attempts: {error}")),
                    );
                    continue;
                }
                shared.retries.fetch_add(1, Ordering::Relaxed);
                let pause = shared.backoff(attempt);
                queue.push(Job {
                    route: job.route,
                    items: job.items,
                    attempt,
                    not_before: Some(Instant::now() + pause),
                    last_error: Some(error),
                });
            }
        }
    }
}

/// The ids that `exceeded_daily_quota_*` lists name, as `Item::throttle_id` spells them.
pub(crate) fn quota_ids(devices: &[String], users: &[String]) -> HashSet<String> {
    devices
        .iter()
        .cloned()
        .chain(users.iter().map(|u| format!("user:{u}")))
        .collect()
}
