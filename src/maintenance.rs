//! Background upkeep of the event tables.
//!
//! - **Partitions ahead of need**, in every `serve` and `work`: for every game, the days
//!   from yesterday to the day after tomorrow ([`make_partitions_ahead`], every
//!   [`KEEP_AHEAD_EVERY`]). Processes agree through the advisory lock that
//!   `event_partition_ensure` takes for each day, so any number may run it at once.
//!   Workers also make any other day on demand before storing its events.
//! - **Retention and sealing**, in every `work` ([`retention_pass`], every
//!   `--retention-every-secs`), one worker at a time (a session advisory lock): each game
//!   with a retention drops the partitions of its days older than the retention, then
//!   prunes the batches, sessions and players that are left without events; and the
//!   partitions of every day that is over are vacuumed and frozen, once (autovacuum's
//!   insert-triggered passes are off for them: migration 12).

use std::time::Duration;

use sqlx::{Connection, PgPool};
use time::{Date, OffsetDateTime};

use crate::domain::GameId;
use crate::store::partitions::{self, Dropped};
use crate::store::retention;

/// How often partitions are made ahead.
pub const KEEP_AHEAD_EVERY: Duration = Duration::from_secs(600);
/// The days made ahead, relative to today (UTC).
const AHEAD: std::ops::RangeInclusive<i64> = -1..=2;

/// Makes the partitions of the days around `today` for every game; returns how many
/// (game, day) it made.
pub async fn make_partitions_ahead(pool: &PgPool, today: Date) -> Result<usize, sqlx::Error> {
    let games = retention::games(pool).await?;
    let existing = partitions::existing(pool).await?;
    let mut made = 0;
    for (game, _) in games {
        for offset in AHEAD {
            let day = today + time::Duration::days(offset);
            if !existing.contains(&(game, day)) && partitions::ensure(pool, game, day).await? {
                made += 1;
            }
        }
    }
    Ok(made)
}

/// Makes partitions ahead now and every [`KEEP_AHEAD_EVERY`], for as long as the process
/// runs. A failure (the database away) is logged and tried again at the next turn;
/// workers make what they need on demand meanwhile.
pub fn spawn_partition_keeper(pool: PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(KEEP_AHEAD_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match make_partitions_ahead(&pool, OffsetDateTime::now_utc().date()).await {
                Ok(0) => {}
                Ok(made) => tracing::info!(made, "made the partitions of the coming days"),
                Err(error) => {
                    tracing::warn!(%error, "cannot make the partitions of the coming days yet")
                }
            }
        }
    })
}

/// What a retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Whether another worker was running a pass already (this one did nothing).
    pub skipped: bool,
    pub days_dropped: usize,
    /// Days whose tables were in use (a pg_dump holding them): dropped on a later pass.
    pub days_busy: usize,
    pub batches: u64,
    pub sessions: u64,
    pub players: u64,
    /// Days that were over, vacuumed and frozen.
    pub days_sealed: usize,
}

/// The session advisory lock that one worker at a time holds for a pass.
pub const RETENTION_LOCK: i64 = 0x7265_7465_6e74_696f; // "retentio"

/// The oldest day a game with a retention of `days` keeps: the day `days` days ago, and
/// the one before it. The API refuses events older than `days` days, and a queued event
/// may be stored a while after its 202: the extra day keeps its partition meanwhile.
pub fn oldest_kept_day(today: Date, days: u32) -> Date {
    today - time::Duration::days(i64::from(days) + 1)
}

/// One retention pass over every game, as of `now`. `default_days` is the retention of
/// games without their own (`None`: keep everything).
pub async fn retention_pass(
    pool: &PgPool,
    default_days: Option<u32>,
    now: OffsetDateTime,
) -> Result<RetentionReport, sqlx::Error> {
    let mut report = RetentionReport::default();
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RETENTION_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        report.skipped = true;
        return Ok(report);
    }
    let result = every_game(pool, &mut conn, default_days, now, &mut report).await;
    // The lock goes with the connection if this fails too; release it for the next pass.
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(RETENTION_LOCK)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // Never hand a connection that may still hold the lock back to the pool.
        let _ = conn.detach().close().await;
    }
    result.map(|()| report)
}

/// The pass itself, on `conn`, which holds the pass's lock.
async fn every_game(
    pool: &PgPool,
    conn: &mut sqlx::PgConnection,
    default_days: Option<u32>,
    now: OffsetDateTime,
    report: &mut RetentionReport,
) -> Result<(), sqlx::Error> {
    for (game, own) in retention::games(pool).await? {
        let Some(days) = own.or(default_days) else {
            continue;
        };
        let oldest = oldest_kept_day(now.date(), days);
        for day in partitions::days_before(pool, game, oldest).await? {
            match partitions::drop_day(conn, game, day).await? {
                Dropped::Done => {
                    report.days_dropped += 1;
                    tracing::info!(%game, %day, "dropped a day of events past the retention");
                }
                Dropped::Busy => report.days_busy += 1,
            }
        }
        prune_game(pool, game, oldest, report).await?;
    }
    // Days before yesterday are over (a device whose clock is behind may still send
    // yesterday's).
    let over = now.date() - time::Duration::days(1);
    for (game, day) in partitions::unsealed_before(pool, over).await? {
        partitions::seal_day(conn, game, day).await?;
        report.days_sealed += 1;
    }
    Ok(())
}

/// Prunes what game `game` keeps no events for: batches received before its oldest kept
/// day (a day more, for a batch whose events are later than its receipt), and the
/// sessions and players last seen before it that no event refers to. Players and sessions
/// carry server times, partitions client times: the day's margin covers clocks a day
/// fast, and the check for events left covers the rest.
async fn prune_game(
    pool: &PgPool,
    game: GameId,
    oldest: Date,
    report: &mut RetentionReport,
) -> Result<(), sqlx::Error> {
    let before = (oldest - time::Duration::days(1)).midnight().assume_utc();
    loop {
        let deleted = retention::prune_batches(pool, game, before).await?;
        report.batches += deleted;
        if deleted < retention::CHUNK as u64 {
            break;
        }
    }
    report.sessions +=
        in_chunks(|after| retention::prune_sessions(pool, game, before, after)).await?;
    report.players +=
        in_chunks(|after| retention::prune_players(pool, game, before, after)).await?;
    Ok(())
}

/// Runs `chunk` from the start, then after the last key each chunk looked at, until one
/// looks at nothing; returns the rows deleted in all.
async fn in_chunks<K, F, Fut>(mut chunk: F) -> Result<u64, sqlx::Error>
where
    F: FnMut(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Result<retention::Chunk<K>, sqlx::Error>>,
{
    let (mut after, mut deleted) = (None, 0);
    loop {
        let done = chunk(after.take()).await?;
        deleted += done.deleted;
        match done.last {
            Some(last) => after = Some(last),
            None => return Ok(deleted),
        }
    }
}

/// Runs a retention pass every `every`, for as long as the process runs.
pub fn spawn_retention(
    pool: PgPool,
    default_days: Option<u32>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match retention_pass(&pool, default_days, OffsetDateTime::now_utc()).await {
                Ok(report) if report == RetentionReport::default() || report.skipped => {}
                Ok(report) => tracing::info!(?report, "retention pass"),
                Err(error) => tracing::warn!(%error, "retention pass failed; trying again later"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn a_retention_of_n_days_keeps_n_days_and_one_more() {
        let today = date!(2026 - 12 - 10);
        assert_eq!(oldest_kept_day(today, 1), date!(2026 - 12 - 08));
        assert_eq!(oldest_kept_day(today, 30), date!(2026 - 11 - 09));
    }
}
