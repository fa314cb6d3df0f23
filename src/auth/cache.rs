//! The API's copy of every valid key, so that checking a key costs no database round trip.
//!
//! A refresher task reloads all unrevoked keys (one query, a small table) every
//! [`RELOAD_EVERY`], so a revoked key stops working on every API process within about a
//! second, and never later than [`MAX_STALENESS`]: past that, with the database out of
//! reach, keys are not trusted and requests get 503.
//!
//! A key that the copy does not hold may have been created a moment ago, so the lookup
//! waits for a reload that starts after it. Reloads for such misses are at least
//! [`MIN_RELOAD_GAP`] apart and shared by every miss waiting, so a flood of unknown keys
//! costs the database at most one query per gap, however many requests it sends. Strings
//! that are not shaped like a key are refused without waiting at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::key::{is_well_formed, KeyHash};
use super::Grant;

/// How often every key is reloaded.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// The least time between two reloads, whatever misses ask for.
pub const MIN_RELOAD_GAP: Duration = Duration::from_millis(200);
/// How old the copy may be before keys are not trusted (503).
pub const MAX_STALENESS: Duration = Duration::from_secs(4);
/// How long a lookup waits for a reload before answering 503.
const MISS_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No such key, or a revoked one (the two are not told apart).
    #[error("the key is not valid: unknown or revoked")]
    Unknown,
    /// The keys cannot be checked now: the database has been out of reach too long.
    #[error("API keys cannot be checked right now: the database is unavailable")]
    Unavailable,
}

/// Loads every unrevoked key: what the refresher calls.
pub type Loader = Box<
    dyn Fn()
            -> futures_util::future::BoxFuture<'static, Result<HashMap<KeyHash, Grant>, sqlx::Error>>
        + Send
        + Sync,
>;

#[derive(Clone)]
struct Snapshot {
    /// Reloads finished so far, successful or not.
    reloads: u64,
    keys: Arc<HashMap<KeyHash, Grant>>,
    /// When the reload that read `keys` started.
    loaded_at: Option<Instant>,
}

impl Snapshot {
    fn is_fresh(&self) -> bool {
        self.loaded_at
            .is_some_and(|at| at.elapsed() <= MAX_STALENESS)
    }
}

/// A handle on the copy of the keys; cheap to clone. The refresher stops once every
/// handle is gone.
#[derive(Clone)]
pub struct KeyCache {
    snapshot: watch::Receiver<Snapshot>,
    /// Reloads started so far: a miss waits for the reload after this count.
    started: Arc<AtomicU64>,
    /// Wakes the refresher early for a miss.
    wanted: Arc<Notify>,
}

impl KeyCache {
    /// Starts the refresher on `pool`. The first load starts at once; until it is done,
    /// lookups wait for it.
    pub fn start(pool: PgPool) -> Self {
        Self::start_with(Box::new(move || {
            let pool = pool.clone();
            Box::pin(async move { crate::store::games::load_grants(&pool).await })
        }))
    }

    pub fn start_with(load: Loader) -> Self {
        let (publish, snapshot) = watch::channel(Snapshot {
            reloads: 0,
            keys: Arc::default(),
            loaded_at: None,
        });
        let started = Arc::new(AtomicU64::new(0));
        let wanted = Arc::new(Notify::new());
        tokio::spawn(refresh(load, publish, started.clone(), wanted.clone()));
        Self {
            snapshot,
            started,
            wanted,
        }
    }

    /// What `presented` grants, if it is a valid key.
    pub async fn verify(&self, presented: &str) -> Result<Grant, KeyError> {
        if !is_well_formed(presented) {
            return Err(KeyError::Unknown);
        }
        let hash = KeyHash::of(presented);
        {
            let snapshot = self.snapshot.borrow();
            if snapshot.is_fresh() {
                if let Some(grant) = snapshot.keys.get(&hash) {
                    return Ok(grant.clone());
                }
            }
        }
        // Not in a fresh copy: wait for a reload that starts after this moment.
        let after = self.started.load(Ordering::SeqCst);
        self.wanted.notify_one();
        let mut snapshot = self.snapshot.clone();
        let reloaded =
            tokio::time::timeout(MISS_WAIT, snapshot.wait_for(|s| s.reloads > after)).await;
        let snapshot = match reloaded {
            Ok(Ok(snapshot)) => snapshot.clone(),
            // Timed out, or the refresher is gone (shutting down).
            _ => return Err(KeyError::Unavailable),
        };
        if !snapshot.is_fresh() {
            return Err(KeyError::Unavailable);
        }
        snapshot.keys.get(&hash).cloned().ok_or(KeyError::Unknown)
    }
}

async fn refresh(
    load: Loader,
    publish: watch::Sender<Snapshot>,
    started: Arc<AtomicU64>,
    wanted: Arc<Notify>,
) {
    let mut last_start: Option<Instant> = None;
    // An outage is reported once, not at every reload.
    let mut failing = false;
    loop {
        if let Some(last) = last_start {
            tokio::select! {
                _ = publish.closed() => return,
                _ = tokio::time::sleep_until(last + RELOAD_EVERY) => {}
                _ = wanted.notified() => {
                    tokio::time::sleep_until(last + MIN_RELOAD_GAP).await;
                }
            }
        }
        let start = Instant::now();
        last_start = Some(start);
        started.fetch_add(1, Ordering::SeqCst);
        let loaded = load().await;
        match &loaded {
            Ok(keys) if failing => {
                tracing::info!(keys = keys.len(), "reading API keys again");
                failing = false;
            }
            Ok(_) => {}
            Err(error) if !failing => {
                tracing::warn!(%error, "cannot read the API keys; the last copy is trusted for a few seconds");
                failing = true;
            }
            Err(_) => {}
        }
        publish.send_modify(|snapshot| {
            snapshot.reloads += 1;
            if let Ok(keys) = loaded {
                snapshot.keys = Arc::new(keys);
                snapshot.loaded_at = Some(start);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::auth::{ApiKey, GameAccess, RateLimitSetting, Scope};
    use crate::domain::GameId;

    /// A loader over a key table the test edits, counting its loads; `None` fails.
    #[derive(Clone, Default)]
    struct FakeTable {
        keys: Arc<Mutex<Option<HashMap<KeyHash, Grant>>>>,
        loads: Arc<AtomicU64>,
    }

    impl FakeTable {
        fn cache(&self) -> KeyCache {
            let table = self.clone();
            KeyCache::start_with(Box::new(move || {
                let table = table.clone();
                Box::pin(async move {
                    table.loads.fetch_add(1, Ordering::SeqCst);
                    table
                        .keys
                        .lock()
                        .unwrap()
                        .clone()
                        .ok_or(sqlx::Error::PoolTimedOut)
                })
            }))
        }

        fn add(&self, key: &ApiKey) -> Grant {
            let grant = Grant {
                key_id: uuid::Uuid::now_v7(),
                scope: Scope::Ingest,
                game: Arc::new(GameAccess {
                    id: GameId(7),
                    name: "demo".parse().unwrap(),
                    rate_limit: RateLimitSetting::Default,
                    allowed_origins: None,
                    retention_days: None,
                }),
            };
            self.keys
                .lock()
                .unwrap()
                .get_or_insert_with(HashMap::new)
                .insert(key.hash(), grant.clone());
            grant
        }

        fn remove(&self, key: &ApiKey) {
            self.keys
                .lock()
                .unwrap()
                .as_mut()
                .unwrap()
                .remove(&key.hash());
        }

        fn fail(&self) {
            *self.keys.lock().unwrap() = None;
        }

        fn loads(&self) -> u64 {
            self.loads.load(Ordering::SeqCst)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_key_is_answered_from_memory() {
        let table = FakeTable::default();
        let key = ApiKey::generate().unwrap();
        let grant = table.add(&key);
        let cache = table.cache();
        assert_eq!(cache.verify(key.reveal()).await, Ok(grant.clone()));
        let loads = table.loads();
        for _ in 0..1000 {
            assert_eq!(cache.verify(key.reveal()).await, Ok(grant.clone()));
        }
        assert_eq!(
            table.loads(),
            loads,
            "lookups of a known key loaded the table"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_created_after_the_last_load_works_at_once() {
        let table = FakeTable::default();
        table.add(&ApiKey::generate().unwrap());
        let cache = table.cache();
        let fresh = ApiKey::generate().unwrap();
        assert_eq!(cache.verify(fresh.reveal()).await, Err(KeyError::Unknown));
        let grant = table.add(&fresh);
        assert_eq!(cache.verify(fresh.reveal()).await, Ok(grant));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_unknown_keys_costs_one_load_per_gap() {
        let table = FakeTable::default();
        table.add(&ApiKey::generate().unwrap());
        let cache = table.cache();
        let started = Instant::now();
        let lookups: Vec<_> = (0..500)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    let unknown = ApiKey::generate().unwrap();
                    cache.verify(unknown.reveal()).await
                })
            })
            .collect();
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap(), Err(KeyError::Unknown));
        }
        // Paused time: every load the 500 misses caused happened in simulated time.
        let gaps = started.elapsed().as_millis() / MIN_RELOAD_GAP.as_millis() + 2;
        assert!(
            u128::from(table.loads()) <= gaps,
            "{} loads in {:?}",
            table.loads(),
            started.elapsed()
        );
        // Malformed keys are refused without any load.
        let loads = table.loads();
        for junk in ["", "not-a-key", &"x".repeat(4096)] {
            assert_eq!(cache.verify(junk).await, Err(KeyError::Unknown));
        }
        assert_eq!(table.loads(), loads);
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_key_stops_working_within_a_reload() {
        let table = FakeTable::default();
        let key = ApiKey::generate().unwrap();
        table.add(&key);
        let cache = table.cache();
        assert!(cache.verify(key.reveal()).await.is_ok());
        table.remove(&key);
        tokio::time::sleep(RELOAD_EVERY + Duration::from_millis(10)).await;
        assert_eq!(cache.verify(key.reveal()).await, Err(KeyError::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_not_trusted_once_the_copy_is_too_old() {
        let table = FakeTable::default();
        let key = ApiKey::generate().unwrap();
        table.add(&key);
        let cache = table.cache();
        assert!(cache.verify(key.reveal()).await.is_ok());
        table.fail();
        // Within the staleness bound the last copy holds...
        tokio::time::sleep(MAX_STALENESS / 2).await;
        assert!(cache.verify(key.reveal()).await.is_ok());
        // ...past it, nothing is trusted.
        tokio::time::sleep(MAX_STALENESS).await;
        assert_eq!(cache.verify(key.reveal()).await, Err(KeyError::Unavailable));
        // And it recovers by itself.
        table.add(&key);
        tokio::time::sleep(RELOAD_EVERY * 2).await;
        assert!(cache.verify(key.reveal()).await.is_ok());
    }
}
