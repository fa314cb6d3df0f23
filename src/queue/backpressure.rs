//! Backpressure: when workers fall behind, acknowledge more slowly.
//!
//! Without it, the API accepts as fast as clients send, the queue grows without bound,
//! and so does the time from 202 to stored. Instead, a sampler reads the queue's lag (how
//! long the oldest due job has waited for a worker) a few times a second, and the group
//! committer pauses before each commit in proportion to the lag above a target. Clients
//! that wait for their 202 before sending more (as game clients do) then send at the
//! rate workers store. Pausing also makes groups larger, so commits get cheaper exactly
//! when the database is busiest. The pause is capped: with no worker running at all, the
//! API still accepts, only more slowly, and the queue absorbs the outage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

/// Lag the service aims to stay under.
pub const TARGET_LAG: Duration = Duration::from_millis(250);
/// Longest pause before a commit.
pub const MAX_PAUSE: Duration = Duration::from_millis(30);
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The pause before a commit, for a given lag: nothing up to the target, then a quarter
/// of the excess, up to the cap.
pub fn pause_for(lag: Duration) -> Duration {
    (lag.saturating_sub(TARGET_LAG) / 4).min(MAX_PAUSE)
}

#[derive(Debug, Clone)]
pub struct Backpressure {
    lag_micros: Arc<AtomicU64>,
}

impl Backpressure {
    /// Starts sampling the lag; the sampler stops when the last clone is dropped.
    pub fn start(pool: PgPool) -> Self {
        let lag_micros = Arc::new(AtomicU64::new(0));
        let weak = Arc::downgrade(&lag_micros);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(lag_micros) = weak.upgrade() else {
                    return;
                };
                // A failed sample (database down) keeps the last value: the commit that
                // follows fails fast anyway.
                if let Ok(lag) = super::lag(&pool).await {
                    lag_micros.store(lag.as_micros() as u64, Ordering::Relaxed);
                }
            }
        });
        Self { lag_micros }
    }

    pub fn pause(&self) -> Duration {
        pause_for(Duration::from_micros(
            self.lag_micros.load(Ordering::Relaxed),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pause_up_to_the_target_then_a_quarter_of_the_excess_up_to_the_cap() {
        assert_eq!(pause_for(Duration::ZERO), Duration::ZERO);
        assert_eq!(pause_for(TARGET_LAG), Duration::ZERO);
        assert_eq!(
            pause_for(TARGET_LAG + Duration::from_millis(80)),
            Duration::from_millis(20)
        );
        assert_eq!(pause_for(Duration::from_secs(60)), MAX_PAUSE);
    }
}
