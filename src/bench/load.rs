//! Traffic: realistic mixed events, generated before the clock starts and pre-serialized
//! into request bodies, then sent to the API by `concurrency` tasks.
//!
//! The generator models devices: each of `players` players plays sessions of 10 to 120
//! events (a `session_start`, then progression, resource, custom, purchase and error
//! events, then a `session_end`). A request is what one device flushes: the next
//! `batch_size` events of one randomly chosen player, which may span the end of one of
//! its sessions and the start of the next. Event ids are UUIDv7, in generation order.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

/// A small, fast, deterministic PRNG (SplitMix64); the benchmark needs variety, not
/// cryptographic quality, and no extra dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A player id, `player-000042`, formatted when serialized (no string per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerRef(pub u32);

impl std::fmt::Display for PlayerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "player-{:06}", self.0)
    }
}

impl Serialize for PlayerRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Free-form properties of a custom event.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Properties {
    pub screen: &'static str,
    pub ab_group: &'static str,
    pub first_time: bool,
}

/// The fields that differ by type, serialized with the `type` discriminator.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Detail {
    SessionStart {
        platform: &'static str,
        app_version: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        country: Option<&'static str>,
    },
    SessionEnd {
        duration_seconds: u32,
    },
    Progression {
        status: &'static str,
        level: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        score: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
    },
    Purchase {
        item_id: &'static str,
        item_type: &'static str,
        amount_minor: u64,
        currency: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        transaction_id: Option<Uuid>,
    },
    Resource {
        flow: &'static str,
        currency: &'static str,
        amount: f64,
        item_type: &'static str,
        item_id: &'static str,
    },
    Custom {
        name: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        properties: Option<Properties>,
    },
    Error {
        severity: &'static str,
        message: &'static str,
    },
}

impl Detail {
    /// `events.event_type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Detail::SessionStart { .. } => "session_start",
            Detail::SessionEnd { .. } => "session_end",
            Detail::Progression { .. } => "progression",
            Detail::Purchase { .. } => "purchase",
            Detail::Resource { .. } => "resource",
            Detail::Custom { .. } => "custom",
            Detail::Error { .. } => "error",
        }
    }
}

/// One generated event, as sent.
#[derive(Debug, Clone, Serialize)]
pub struct GenEvent {
    #[serde(flatten)]
    pub detail: Detail,
    pub event_id: Uuid,
    pub player_id: PlayerRef,
    pub session_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

#[derive(Serialize)]
pub struct RequestBody<'a> {
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    pub events: &'a [GenEvent],
}

/// The kind of event and session ids a generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdKind {
    /// Time-ordered (UUIDv7), as the README recommends.
    V7,
    /// Random (UUIDv4), as many SDKs send.
    V4,
}

impl IdKind {
    fn make(self) -> Uuid {
        match self {
            IdKind::V7 => Uuid::now_v7(),
            IdKind::V4 => Uuid::new_v4(),
        }
    }
}

/// A session in progress on one player's device.
#[derive(Debug, Clone, Copy)]
struct Session {
    id: Uuid,
    started_at: OffsetDateTime,
    clock: OffsetDateTime,
    /// Events still to come before its session_end.
    remaining: u32,
}

const PLATFORMS: &[&str] = &["ios", "android", "windows", "macos", "web", "switch"];
const VERSIONS: &[&str] = &["1.4.2", "1.4.3", "1.5.0", "2.0.0-beta.1"];
const DEVICES: &[&str] = &["iPhone15,3", "SM-S918B", "Pixel 8", "MacBookPro18,3"];
const COUNTRIES: &[&str] = &["SE", "DE", "US", "BR", "JP", "GB", "FR", "IN"];
const LEVELS: &[&str] = &[
    "world-1:stage-1",
    "world-1:stage-2",
    "world-1:stage-3",
    "world-2:stage-1:boss",
    "tutorial",
];
const STATUSES: &[&str] = &["start", "complete", "fail"];
const ITEMS: &[(&str, &str)] = &[
    ("gem_pack_small", "bundle"),
    ("gem_pack_large", "bundle"),
    ("starter_pack", "offer"),
    ("no_ads", "unlock"),
];
const CURRENCIES: &[&str] = &["EUR", "USD", "SEK", "JPY", "BRL"];
const VIRTUAL: &[&str] = &["gold", "gems", "energy"];
const RESOURCE_ITEMS: &[(&str, &str)] = &[
    ("weapon", "sword_basic"),
    ("booster", "double_xp"),
    ("level_reward", "chest_common"),
    ("shop", "skin_red"),
];
const CUSTOM_NAMES: &[&str] = &[
    "ui:button:click",
    "tutorial:step:completed",
    "social:share",
    "ads:rewarded:watched",
];
const SCREENS: &[&str] = &["shop", "main_menu", "level_select", "settings"];
const SEVERITIES: &[&str] = &["debug", "info", "warning", "error", "critical"];
const MESSAGES: &[&str] = &[
    "NullReferenceException in ShopController.Open",
    "asset bundle 'level-3' failed to load: timeout",
    "frame time above 50 ms for 30 frames",
];

/// Generates the events of `batches` requests of `batch_size` events from `players`
/// players, as sent at `now`.
pub struct Generator {
    rng: Rng,
    now: OffsetDateTime,
    sessions: Vec<Option<Session>>,
    ids: IdKind,
}

impl Generator {
    pub fn new(seed: u64, players: u32, now: OffsetDateTime, ids: IdKind) -> Self {
        Self {
            rng: Rng::new(seed),
            now,
            sessions: vec![None; players.max(1) as usize],
            ids,
        }
    }

    /// Moves the generator's clock on (events never happen after it).
    pub fn set_now(&mut self, now: OffsetDateTime) {
        self.now = now;
    }

    /// The next `n` events of one random player.
    pub fn device_flush(&mut self, n: usize, out: &mut Vec<GenEvent>) {
        let player = self.rng.below(self.sessions.len() as u64) as u32;
        for _ in 0..n {
            let event = self.next_event(player);
            out.push(event);
        }
    }

    fn next_event(&mut self, player: u32) -> GenEvent {
        let rng = &mut self.rng;
        let slot = &mut self.sessions[player as usize];
        let (session, detail) = match slot {
            None => {
                // Sessions started up to two hours ago; their events stay in the past.
                let started_at = self.now - Duration::from_secs(rng.between(3_600, 7_200));
                let s = Session {
                    id: self.ids.make(),
                    started_at,
                    clock: started_at,
                    remaining: rng.between(8, 118) as u32,
                };
                *slot = Some(s);
                let detail = Detail::SessionStart {
                    platform: rng.pick(PLATFORMS),
                    app_version: rng.pick(VERSIONS),
                    device: rng.percent(80).then(|| rng.pick(DEVICES)),
                    country: rng.percent(90).then(|| rng.pick(COUNTRIES)),
                };
                (s, detail)
            }
            Some(s) => {
                s.clock += Duration::from_secs(rng.between(1, 30));
                let detail = if s.remaining == 0 {
                    Detail::SessionEnd {
                        duration_seconds: (s.clock - s.started_at).whole_seconds() as u32,
                    }
                } else {
                    s.remaining -= 1;
                    middle_event(rng)
                };
                let s = *s;
                if s.remaining == 0 && matches!(detail, Detail::SessionEnd { .. }) {
                    *slot = None;
                }
                (s, detail)
            }
        };
        GenEvent {
            detail,
            event_id: self.ids.make(),
            player_id: PlayerRef(player),
            session_id: session.id,
            occurred_at: session.clock.min(self.now),
        }
    }
}

/// An event between a session's start and end: mostly progression and resources.
fn middle_event(rng: &mut Rng) -> Detail {
    match rng.below(100) {
        0..=39 => Detail::Progression {
            status: rng.pick(STATUSES),
            level: rng.pick(LEVELS),
            score: rng.percent(70).then(|| rng.below(1_000_000)),
            attempt: rng.percent(50).then(|| rng.between(1, 10) as u32),
        },
        40..=64 => {
            let (item_type, item_id) = rng.pick(RESOURCE_ITEMS);
            Detail::Resource {
                flow: if rng.percent(50) { "source" } else { "sink" },
                currency: rng.pick(VIRTUAL),
                amount: rng.between(1, 500) as f64,
                item_type,
                item_id,
            }
        }
        65..=84 => Detail::Custom {
            name: rng.pick(CUSTOM_NAMES),
            value: rng.percent(50).then(|| rng.below(10_000) as f64 / 100.0),
            properties: rng.percent(60).then(|| Properties {
                screen: rng.pick(SCREENS),
                ab_group: if rng.percent(50) { "a" } else { "b" },
                first_time: rng.percent(10),
            }),
        },
        85..=89 => {
            let (item_id, item_type) = rng.pick(ITEMS);
            Detail::Purchase {
                item_id,
                item_type,
                amount_minor: rng.pick(&[99, 499, 999, 1999]),
                currency: rng.pick(CURRENCIES),
                transaction_id: rng.percent(80).then(Uuid::now_v7),
            }
        }
        _ => Detail::Error {
            severity: rng.pick(SEVERITIES),
            message: rng.pick(MESSAGES),
        },
    }
}

/// Everything to send, generated up front.
pub struct Workload {
    /// The events in request order; request `i` carries `events[bounds[i]..bounds[i+1]]`.
    pub events: Vec<GenEvent>,
    pub bounds: Vec<usize>,
    /// The serialized request bodies.
    pub bodies: Vec<Vec<u8>>,
}

impl Workload {
    /// `total` events in requests of `batch_size` (the last one may be smaller).
    pub fn generate(
        total: usize,
        batch_size: usize,
        players: u32,
        seed: u64,
        now: OffsetDateTime,
        ids: IdKind,
    ) -> Self {
        let batch_size = batch_size.max(1);
        let mut generator = Generator::new(seed, players, now, ids);
        let mut events = Vec::with_capacity(total);
        let mut bounds = vec![0];
        while events.len() < total {
            let n = batch_size.min(total - events.len());
            generator.device_flush(n, &mut events);
            bounds.push(events.len());
        }
        let bodies = bounds
            .windows(2)
            .map(|w| {
                serde_json::to_vec(&RequestBody {
                    sent_at: now,
                    events: &events[w[0]..w[1]],
                })
                .expect("the generated events serialize")
            })
            .collect();
        Self {
            events,
            bounds,
            bodies,
        }
    }

    pub fn requests(&self) -> usize {
        self.bodies.len()
    }
}

/// What the load phase saw.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Per request, from sending to the end of the response (or the transport error).
    pub latencies: Vec<Duration>,
    /// Responses by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    /// A few error descriptions, to say what went wrong.
    pub error_samples: Vec<String>,
    /// Accepted batches: (batch_id, events).
    pub accepted: Vec<(Uuid, u32)>,
    /// From the first request sent to the last response received.
    pub elapsed: Duration,
}

impl LoadOutcome {
    fn merge(&mut self, other: LoadOutcome) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        for s in other.error_samples {
            if self.error_samples.len() < MAX_ERROR_SAMPLES {
                self.error_samples.push(s);
            }
        }
        self.accepted.extend(other.accepted);
    }

    pub fn accepted_events(&self) -> u64 {
        self.accepted.iter().map(|&(_, n)| u64::from(n)).sum()
    }
}

const MAX_ERROR_SAMPLES: usize = 5;

#[derive(serde::Deserialize)]
struct AcceptedBody {
    batch_id: Uuid,
    accepted: u32,
}

/// Sends every body once, `concurrency` requests at a time; returns when all are
/// answered (or failed). Timing starts at `start`, which the caller takes just before.
pub async fn drive(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<(Vec<u8>, u32)>,
    concurrency: usize,
    progress: &ProgressBar,
    start: Instant,
) -> LoadOutcome {
    let endpoint = format!("{}/v1/events", url.trim_end_matches('/'));
    let queue = Mutex::new(bodies.into_iter());
    let tasks = (0..concurrency.max(1)).map(|_| {
        let (queue, endpoint) = (&queue, &endpoint);
        async move {
            let mut out = LoadOutcome::default();
            loop {
                let Some((body, events)) = queue.lock().expect("not poisoned").next() else {
                    break;
                };
                let sent = Instant::now();
                let result = client
                    .post(endpoint.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await;
                match result {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let outcome = if status == 202 {
                            response
                                .json::<AcceptedBody>()
                                .await
                                .map(Some)
                                .map_err(|e| format!("202 with an unreadable body: {e}"))
                        } else {
                            let text = response.text().await.unwrap_or_default();
                            Err(format!("{status}: {}", truncate(&text, 300)))
                        };
                        out.latencies.push(sent.elapsed());
                        *out.by_status.entry(status).or_default() += 1;
                        match outcome {
                            Ok(Some(a)) => out.accepted.push((a.batch_id, a.accepted)),
                            Ok(None) => {}
                            Err(e) if out.error_samples.len() < MAX_ERROR_SAMPLES => {
                                out.error_samples.push(e)
                            }
                            Err(_) => {}
                        }
                    }
                    Err(e) => {
                        out.latencies.push(sent.elapsed());
                        out.transport_errors += 1;
                        if out.error_samples.len() < MAX_ERROR_SAMPLES {
                            out.error_samples.push(format!("transport: {e}"));
                        }
                    }
                }
                progress.inc(u64::from(events));
            }
            out
        }
    });
    let results = futures_util::future::join_all(tasks).await;
    let elapsed = start.elapsed();
    let mut total = LoadOutcome::default();
    for r in results {
        total.merge(r);
    }
    total.elapsed = elapsed;
    total
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate_batch;
    use std::collections::HashSet;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-11-25 14:00:00 UTC)
    }

    #[test]
    fn every_generated_request_passes_the_apis_validation() {
        let w = Workload::generate(3_000, 100, 50, 7, now(), IdKind::V7);
        assert_eq!(w.requests(), 30);
        for body in &w.bodies {
            let value: serde_json::Value = serde_json::from_slice(body).unwrap();
            if let Err(e) = validate_batch(&value, now() + Duration::from_secs(5)) {
                panic!("invalid generated batch: {e:?}\n{value}");
            }
        }
    }

    #[test]
    fn the_mix_has_every_type_many_players_and_sessions_and_unique_v7_ids() {
        let w = Workload::generate(20_000, 1, 1_000, 1, now(), IdKind::V7);
        let types: HashSet<_> = w.events.iter().map(|e| e.detail.type_name()).collect();
        assert_eq!(types.len(), 7, "{types:?}");
        let players: HashSet<_> = w.events.iter().map(|e| e.player_id.0).collect();
        assert!(players.len() > 900, "{} players", players.len());
        let sessions: HashSet<_> = w.events.iter().map(|e| e.session_id).collect();
        assert!(sessions.len() > 1_000, "{} sessions", sessions.len());
        let ids: HashSet<_> = w.events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), w.events.len());
        assert!(w.events.iter().all(|e| e.event_id.get_version_num() == 7));
    }

    #[test]
    fn requests_split_the_total_and_the_last_one_takes_the_rest() {
        let w = Workload::generate(250, 100, 10, 3, now(), IdKind::V7);
        assert_eq!(w.bounds, vec![0, 100, 200, 250]);
        assert_eq!(w.events.len(), 250);
    }

    #[test]
    fn a_session_starts_before_its_other_events_and_ends_once() {
        let w = Workload::generate(5_000, 50, 3, 9, now(), IdKind::V7);
        let mut started = HashSet::new();
        let mut ended = HashSet::new();
        for e in &w.events {
            match e.detail {
                Detail::SessionStart { .. } => assert!(started.insert(e.session_id)),
                Detail::SessionEnd { .. } => {
                    assert!(started.contains(&e.session_id));
                    assert!(ended.insert(e.session_id));
                }
                _ => {
                    assert!(started.contains(&e.session_id));
                    assert!(!ended.contains(&e.session_id));
                }
            }
            assert!(e.occurred_at <= now());
        }
        assert!(!ended.is_empty());
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("åäö", 2), "åä…");
        assert_eq!(truncate("ab", 2), "ab");
    }
}
