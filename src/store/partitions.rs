//! The partitions of the event tables (migration 9): one per game and UTC day of the
//! events' `occurred_at` as their client sent it, for `events` and each detail table
//! alike. `event_partitions` lists the days that have them.
//!
//! Partitions are made by `event_partition_ensure` (SQL), which any process may call at
//! any time: ahead of need by every `serve` and `work` (see `maintenance`), and by a
//! worker for any other day its events fall on (a backfill), just before it stores them.
//! Retention drops a game's old days here ([`drop_day`]), without ever locking a table
//! that ingestion writes exclusively.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::{Executor, PgConnection, PgPool};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::domain::GameId;

/// The day of the partition an event at `client_time` belongs to.
pub fn day_of(client_time: OffsetDateTime) -> Date {
    client_time.to_offset(UtcOffset::UTC).date()
}

/// Makes the partitions of game `game` for `day` unless they exist; returns whether it
/// made them. Safe to call from any number of processes at once.
pub async fn ensure(pool: &PgPool, game: GameId, day: Date) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT event_partition_ensure($1, $2) AS "made!""#,
        game.0,
        day
    )
    .fetch_one(pool)
    .await
}

/// Every (game, day) that has partitions.
pub async fn existing(pool: &PgPool) -> Result<HashSet<(GameId, Date)>, sqlx::Error> {
    let rows = sqlx::query!("SELECT game_id, day FROM event_partitions")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (GameId(r.game_id), r.day))
        .collect())
}

/// Game `game`'s days with partitions, before `before`, oldest first.
pub async fn days_before(
    pool: &PgPool,
    game: GameId,
    before: Date,
) -> Result<Vec<Date>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT day FROM event_partitions WHERE game_id = $1 AND day < $2 ORDER BY day",
        game.0,
        before
    )
    .fetch_all(pool)
    .await
}

/// The days before `before` whose partitions are not sealed yet (vacuumed and frozen
/// once over: see `maintenance`), oldest first.
pub async fn unsealed_before(
    pool: &PgPool,
    before: Date,
) -> Result<Vec<(GameId, Date)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT game_id, day FROM event_partitions
         WHERE sealed_at IS NULL AND day < $1 ORDER BY day, game_id",
        before
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (GameId(r.game_id), r.day))
        .collect())
}

/// One event table's partition of a (game, day).
#[derive(sqlx::FromRow)]
struct DayPartition {
    parent: String,
    child: String,
    /// Whether it is attached (`Some(false)`), half detached (`Some(true)`: a concurrent
    /// detach was interrupted) or not attached at all (`None`: gone, or detached).
    detach_pending: Option<bool>,
}

/// Every event table's partition of game `game` on `day`, by name, whether it exists or not.
async fn partitions_of_day(
    conn: &mut PgConnection,
    game: GameId,
    day: Date,
) -> Result<Vec<DayPartition>, sqlx::Error> {
    sqlx::query_as(
        "SELECT parent, event_partition_name(parent, $1, $2) AS child,
                (SELECT i.inhdetachpending FROM pg_inherits AS i
                 WHERE i.inhrelid = to_regclass(event_partition_name(parent, $1, $2)))
                AS detach_pending
         FROM unnest(event_partitioned_tables()) AS parent",
    )
    .bind(game.0)
    .bind(day)
    .fetch_all(conn)
    .await
}

/// Vacuums, freezes and analyzes every event table's partition of game `game` on `day`,
/// on `conn` (VACUUM runs outside any transaction), and marks the day sealed. Once a day
/// is over its tables only grow again by a backfill, so one pass sets their visibility
/// map and freezes their rows for good: no autovacuum scans them again, and no
/// anti-wraparound vacuum ever has to.
pub async fn seal_day(conn: &mut PgConnection, game: GameId, day: Date) -> Result<(), sqlx::Error> {
    for DayPartition { child, .. } in partitions_of_day(conn, game, day).await? {
        conn.execute(format!("VACUUM (FREEZE, ANALYZE) \"{child}\"").as_str())
            .await?;
    }
    sqlx::query!(
        "UPDATE event_partitions SET sealed_at = now() WHERE game_id = $1 AND day = $2",
        game.0,
        day
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How long dropping a detached partition waits for its lock (a reader such as pg_dump
/// may hold it) before giving up until the next retention pass.
const DROP_LOCK_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether a day's partitions are gone, or must wait for a later pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    Done,
    /// A table of the day is still in use (a pg_dump, a long query): tried again later.
    Busy,
}

/// Drops every event table's partition of game `game` on `day`, on `conn` (outside any
/// transaction: a concurrent detach cannot run inside one).
///
/// Each partition is first detached CONCURRENTLY, which locks its parent only in SHARE
/// UPDATE EXCLUSIVE mode: ingestion keeps writing, and partitions keep being attached,
/// while it waits for the transactions that may still read the partition (a pg_dump's
/// included). Dropping the detached table then locks nothing but that table. A detach
/// left half done (the process stopped) is finished on the next pass. The day leaves
/// `event_partitions` last, once every table is gone.
pub async fn drop_day(
    conn: &mut PgConnection,
    game: GameId,
    day: Date,
) -> Result<Dropped, sqlx::Error> {
    let children = partitions_of_day(conn, game, day).await?;
    let detaches: Vec<String> = children
        .iter()
        .filter_map(
            |DayPartition {
                 parent,
                 child,
                 detach_pending,
             }| match detach_pending {
                Some(false) => Some(format!(
                    "ALTER TABLE {parent} DETACH PARTITION {child} CONCURRENTLY"
                )),
                Some(true) => Some(format!(
                    "ALTER TABLE {parent} DETACH PARTITION {child} FINALIZE"
                )),
                None => None,
            },
        )
        .collect();
    let drops: Vec<String> = children
        .into_iter()
        .map(|DayPartition { child, .. }| format!("DROP TABLE IF EXISTS {child}"))
        .collect();
    for detach in detaches {
        conn.execute(detach.as_str()).await?;
    }
    // A detached table is read by nothing of ours, but a reader that began before the
    // detach (a pg_dump) may hold it: wait a little, and otherwise try again next pass.
    conn.execute(format!("SET lock_timeout = {}", DROP_LOCK_TIMEOUT.as_millis()).as_str())
        .await?;
    let mut busy = false;
    for drop in drops {
        match conn.execute(drop.as_str()).await {
            Ok(_) => {}
            // 55P03: lock_not_available.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                busy = true;
                break;
            }
            Err(e) => {
                let _ = conn.execute("RESET lock_timeout").await;
                return Err(e);
            }
        }
    }
    conn.execute("RESET lock_timeout").await?;
    if busy {
        return Ok(Dropped::Busy);
    }
    sqlx::query!(
        "DELETE FROM event_partitions WHERE game_id = $1 AND day = $2",
        game.0,
        day
    )
    .execute(&mut *conn)
    .await?;
    Ok(Dropped::Done)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn an_event_belongs_to_the_utc_day_of_its_client_time() {
        assert_eq!(
            day_of(datetime!(2026-12-01 23:59:59.999 UTC)),
            time::macros::date!(2026 - 12 - 01)
        );
        assert_eq!(
            day_of(datetime!(2026-12-02 00:30 +01:00)),
            time::macros::date!(2026 - 12 - 01)
        );
        assert_eq!(
            day_of(datetime!(2026-12-02 00:00 UTC)),
            time::macros::date!(2026 - 12 - 02)
        );
    }
}
