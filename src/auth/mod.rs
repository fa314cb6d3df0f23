//! Who may do what: API keys, each of one game and one scope, and what a verified key
//! grants. The HTTP side (headers, status codes) is in `api::auth`; the SQL in
//! `store::games`.

pub mod cache;
pub mod key;

use std::sync::Arc;

use uuid::Uuid;

pub use cache::{KeyCache, KeyError};
pub use key::{ApiKey, KeyHash};

use crate::domain::{GameId, GameName, Origin};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scope {
    /// Publishable, embedded in game clients: may only send its game's events.
    Ingest,
    /// Secret, for the studio's backend: reads its game's batches and events.
    Read,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            _ => None,
        }
    }
}

/// A rate limit: a sustained rate and a burst, both in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub events_per_sec: u32,
    pub burst: u32,
}

impl RateLimit {
    /// The burst when none is given: a second's worth of events, and at least one full
    /// batch, so that a client sending full batches at the rate is never refused.
    pub fn default_burst(events_per_sec: u32) -> u32 {
        events_per_sec.max(crate::domain::MAX_EVENTS_PER_BATCH as u32)
    }

    /// `events_per_sec` 0 means no limit.
    pub fn new(events_per_sec: u32, burst: Option<u32>) -> Option<Self> {
        (events_per_sec > 0).then(|| Self {
            events_per_sec,
            burst: burst.unwrap_or_else(|| Self::default_burst(events_per_sec)),
        })
    }
}

/// A game's own rate limit, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitSetting {
    /// The API's default (`--rate-limit`).
    Default,
    /// This game's own: `None` for no limit.
    Own(Option<RateLimit>),
}

/// What the API knows of a game when checking one of its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameAccess {
    pub id: GameId,
    pub name: GameName,
    pub rate_limit: RateLimitSetting,
    /// The browser origins allowed to send its events; `None`: any.
    pub allowed_origins: Option<Vec<Origin>>,
    /// Its own retention in days; `None`: the service's default.
    pub retention_days: Option<u32>,
}

impl GameAccess {
    /// Whether a browser page at `origin` may send this game's events. Only browsers send
    /// `Origin`; a request without one is not a browser's and is not restricted by it.
    pub fn allows_origin(&self, origin: &str) -> bool {
        match &self.allowed_origins {
            None => true,
            Some(allowed) => allowed.iter().any(|o| o.as_str() == origin),
        }
    }
}

/// What a valid key grants: its scope, on its game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key_id: Uuid,
    pub scope: Scope,
    pub game: Arc<GameAccess>,
}
