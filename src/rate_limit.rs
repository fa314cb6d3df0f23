//! Per-game rate limits on ingested events: a token bucket per game, in this process.
//!
//! A game's bucket holds up to `burst` events and refills at `events_per_sec`. A request
//! of n events passes when the bucket holds at least min(n, burst) of them, and then
//! takes all n, which may leave the bucket below zero: so a batch larger than the burst
//! still gets through when the bucket is full, and the sustained rate holds all the same,
//! since the debt is paid back before the next request passes.
//!
//! Buckets live in each API process: with N processes behind a balancer, a game may send
//! up to N times its limit in all (see the README).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::auth::{GameAccess, RateLimit, RateLimitSetting};
use crate::domain::GameId;

/// A refusal: how long until a request of that size would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub retry_after: Duration,
    pub limit: RateLimit,
}

impl OverLimit {
    /// `Retry-After` is whole seconds: rounded up, and at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    limit: RateLimit,
    /// Events available; below zero after a request larger than what was left.
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            level: f64::from(limit.burst),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * f64::from(self.limit.events_per_sec))
            .min(f64::from(self.limit.burst));
        self.at = now;
    }

    /// Takes `events` if at least min(events, burst) are available.
    fn take(&mut self, events: u32, now: Instant) -> Result<(), OverLimit> {
        self.refill(now);
        let needed = f64::from(events.min(self.limit.burst).max(1));
        if self.level >= needed {
            self.level -= f64::from(events);
            return Ok(());
        }
        let wait = (needed - self.level) / f64::from(self.limit.events_per_sec);
        Err(OverLimit {
            retry_after: Duration::from_secs_f64(wait).max(Duration::from_secs(1)),
            limit: self.limit,
        })
    }
}

/// Every game's bucket in this process.
#[derive(Debug)]
pub struct RateLimiter {
    /// For games without a limit of their own; `None`: no limit.
    default: Option<RateLimit>,
    buckets: Mutex<HashMap<GameId, Bucket>>,
}

impl RateLimiter {
    pub fn new(default: Option<RateLimit>) -> Self {
        Self {
            default,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn limit_of(&self, game: &GameAccess) -> Option<RateLimit> {
        match game.rate_limit {
            RateLimitSetting::Default => self.default,
            RateLimitSetting::Own(limit) => limit,
        }
    }

    /// Refuses a request before its body is read when the game's bucket is empty: a
    /// request of any size would be refused, and reading and parsing a megabyte to find
    /// that out is what a flood would make the API do.
    pub fn check(&self, game: &GameAccess) -> Result<(), OverLimit> {
        self.with_bucket(game, |bucket, now| {
            bucket.refill(now);
            if bucket.level >= 1.0 {
                Ok(())
            } else {
                let wait = (1.0 - bucket.level) / f64::from(bucket.limit.events_per_sec);
                Err(OverLimit {
                    retry_after: Duration::from_secs_f64(wait).max(Duration::from_secs(1)),
                    limit: bucket.limit,
                })
            }
        })
    }

    /// Takes `events` from the game's bucket, or refuses them all.
    pub fn take(&self, game: &GameAccess, events: usize) -> Result<(), OverLimit> {
        let events = u32::try_from(events).unwrap_or(u32::MAX);
        self.with_bucket(game, |bucket, now| bucket.take(events, now))
    }

    fn with_bucket(
        &self,
        game: &GameAccess,
        f: impl FnOnce(&mut Bucket, Instant) -> Result<(), OverLimit>,
    ) -> Result<(), OverLimit> {
        let Some(limit) = self.limit_of(game) else {
            return Ok(());
        };
        let now = Instant::now();
        // A panic elsewhere cannot leave a bucket half-updated: each update is one write.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets
            .entry(game.id)
            .or_insert_with(|| Bucket::full(limit, now));
        if bucket.limit != limit {
            // The game's limit changed (`app games limit`): it starts afresh, with a full
            // bucket, rather than owing at the new rate what it took at the old one.
            *bucket = Bucket::full(limit, now);
        }
        f(bucket, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(events_per_sec: u32, burst: u32) -> RateLimit {
        RateLimit {
            events_per_sec,
            burst,
        }
    }

    #[test]
    fn a_full_bucket_passes_its_burst_then_refuses_until_it_refills() {
        let start = Instant::now();
        let mut bucket = Bucket::full(limit(100, 300), start);
        assert!(bucket.take(200, start).is_ok());
        assert!(bucket.take(100, start).is_ok());
        let refused = bucket.take(100, start).unwrap_err();
        // 100 events at 100/s: one second.
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert!(bucket.take(50, start + Duration::from_millis(499)).is_err());
        assert!(bucket.take(50, start + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn a_batch_larger_than_the_burst_passes_a_full_bucket_and_is_paid_back() {
        let start = Instant::now();
        let mut bucket = Bucket::full(limit(100, 100), start);
        assert!(
            bucket.take(1000, start).is_ok(),
            "a full bucket passes any batch"
        );
        // 900 events of debt, paid back at 100/s: one event passes after 9.01 s.
        let refused = bucket.take(1, start + Duration::from_secs(1)).unwrap_err();
        assert!(refused.retry_after > Duration::from_millis(8_000));
        assert!(refused.retry_after < Duration::from_millis(8_020));
        assert_eq!(refused.retry_after_secs(), 9);
        assert!(bucket
            .take(1, start + Duration::from_millis(9_000))
            .is_err());
        assert!(bucket.take(1, start + Duration::from_millis(9_020)).is_ok());
    }

    #[test]
    fn the_sustained_rate_holds_over_a_long_run() {
        let start = Instant::now();
        let mut bucket = Bucket::full(limit(50, 200), start);
        let mut passed = 0u32;
        // A client trying 10 events every 10 ms (1,000 events/s) for 60 s.
        for tick in 0..6_000u64 {
            if bucket
                .take(10, start + Duration::from_millis(tick * 10))
                .is_ok()
            {
                passed += 10;
            }
        }
        // 200 of burst and 50/s for 60 s.
        assert!((3_150..=3_210).contains(&passed), "{passed}");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        let over = |ms| OverLimit {
            retry_after: Duration::from_millis(ms),
            limit: limit(1, 1),
        };
        assert_eq!(over(1_000).retry_after_secs(), 1);
        assert_eq!(over(1_001).retry_after_secs(), 2);
        assert_eq!(over(2_500).retry_after_secs(), 3);
    }

    fn game(id: i32, rate_limit: RateLimitSetting) -> GameAccess {
        GameAccess {
            id: GameId(id),
            name: "g".parse().unwrap(),
            rate_limit,
            allowed_origins: None,
            retention_days: None,
        }
    }

    #[test]
    fn each_game_has_its_own_bucket_and_limit() {
        let limiter = RateLimiter::new(Some(limit(10, 10)));
        let a = game(1, RateLimitSetting::Default);
        let b = game(2, RateLimitSetting::Default);
        let unlimited = game(3, RateLimitSetting::Own(None));
        let own = game(4, RateLimitSetting::Own(Some(limit(1000, 1000))));
        assert!(limiter.take(&a, 10).is_ok());
        assert!(limiter.check(&a).is_err());
        assert!(limiter.take(&a, 1).is_err());
        assert!(limiter.check(&b).is_ok(), "game b pays for game a");
        assert!(limiter.take(&b, 10).is_ok());
        for _ in 0..100 {
            assert!(limiter.take(&unlimited, 1000).is_ok());
        }
        assert!(limiter.take(&own, 1000).is_ok());
        assert!(RateLimiter::new(None).take(&a, 1000).is_ok());
    }

    #[test]
    fn a_changed_limit_starts_with_a_full_bucket() {
        let limiter = RateLimiter::new(None);
        let before = game(1, RateLimitSetting::Own(Some(limit(10, 10))));
        // A full bucket passes a large batch, leaving a debt of 990 events at 10/s.
        assert!(limiter.take(&before, 1000).is_ok());
        assert!(limiter.take(&before, 1).is_err());
        let after = game(1, RateLimitSetting::Own(Some(limit(5, 100))));
        assert!(
            limiter.take(&after, 100).is_ok(),
            "the old debt carried over"
        );
        assert!(
            limiter.take(&after, 1).is_err(),
            "the new burst is not enforced"
        );
    }
}
