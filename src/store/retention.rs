//! Retention's SQL besides dropping partitions (`partitions::drop_day`): the batches,
//! sessions and players a game no longer needs, deleted in small chunks, each its own
//! short transaction, so that no lock is held for long and a worker storing the same
//! game waits at most one chunk.
//!
//! A chunk takes the game's retention lock exclusively; a worker storing events of the
//! game takes it shared for its transaction (`lock_games_against_pruning`). So a player
//! or session is never deleted while events that refer to it are being stored, and a
//! chunk sees every event committed before it.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::GameId;

/// Rows deleted per chunk.
pub const CHUNK: i64 = 500;

/// The advisory lock space of retention's per-game lock.
const PRUNE_LOCK: &str = "game_prune";

/// Takes, for the rest of `tx`, the games' retention locks in shared mode: pruning of
/// these games waits for `tx`, and `tx` for a chunk in progress.
pub async fn lock_games_against_pruning(
    tx: &mut Transaction<'_, Postgres>,
    games: &[GameId],
) -> Result<(), sqlx::Error> {
    let games: Vec<i32> = games.iter().map(|g| g.0).collect();
    sqlx::query!(
        "SELECT pg_advisory_xact_lock_shared(hashtext($1), game) FROM unnest($2::int[]) AS game ORDER BY game",
        PRUNE_LOCK,
        &games
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn lock_game(conn: &mut PgConnection, game: GameId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext($1), $2)",
        PRUNE_LOCK,
        game.0
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The smallest UUIDv7 of the millisecond `at`: batch ids are UUIDv7, made when the batch
/// was received, so `batch_id < bound(t)` is "received before t", read off the primary key.
pub fn uuid_v7_floor(at: OffsetDateTime) -> Uuid {
    let millis = (at.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    Uuid::from_bytes(bytes)
}

/// Deletes up to [`CHUNK`] of game `game`'s completed batches received before `before`;
/// returns how many.
pub async fn prune_batches(
    pool: &PgPool,
    game: GameId,
    before: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_game(&mut tx, game).await?;
    let deleted = sqlx::query!(
        "DELETE FROM batches WHERE batch_id IN (
             SELECT batch_id FROM batches
             WHERE batch_id < $2 AND game_id = $1 AND status = 'completed'
             ORDER BY batch_id LIMIT $3)",
        game.0,
        uuid_v7_floor(before),
        CHUNK
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}

/// Deletes up to [`CHUNK`] of game `game`'s sessions last seen before `before` that no
/// event refers to any more; returns how many were looked at and how many deleted.
/// `after` resumes after the last session looked at.
///
/// A session's (or player's) events are all in the partitions of the day of its newest
/// event (`last_client_occurred_at`, the partition key's time) and of days before it, so
/// they are all gone exactly when none of those is left in `event_partitions` (a day
/// leaves it only once its tables are dropped): `events_may_remain` (migration 13), one
/// lookup in `event_partitions`, where an index of events by player would cost every
/// event stored an insert.
pub async fn prune_sessions(
    pool: &PgPool,
    game: GameId,
    before: OffsetDateTime,
    after: Option<(OffsetDateTime, Uuid)>,
) -> Result<Chunk<(OffsetDateTime, Uuid)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_game(&mut tx, game).await?;
    let candidates = sqlx::query!(
        "SELECT session_id, last_seen_at FROM sessions
         WHERE game_id = $1 AND last_seen_at < $2
           AND (last_seen_at, session_id) > ($3, $4)
         ORDER BY last_seen_at, session_id LIMIT $5",
        game.0,
        before,
        after.map_or(OffsetDateTime::UNIX_EPOCH, |a| a.0),
        after.map_or(Uuid::nil(), |a| a.1),
        CHUNK
    )
    .fetch_all(&mut *tx)
    .await?;
    let last = candidates.last().map(|c| (c.last_seen_at, c.session_id));
    let ids: Vec<Uuid> = candidates.into_iter().map(|c| c.session_id).collect();
    let deleted = sqlx::query!(
        "DELETE FROM sessions AS s
         WHERE s.game_id = $1 AND s.session_id = ANY($2)
           AND NOT events_may_remain($1, s.last_client_occurred_at)",
        game.0,
        &ids
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Chunk {
        looked_at: ids.len(),
        deleted,
        last,
    })
}

/// Deletes up to [`CHUNK`] of game `game`'s players last seen before `before` that no
/// event or session refers to any more. As [`prune_sessions`].
pub async fn prune_players(
    pool: &PgPool,
    game: GameId,
    before: OffsetDateTime,
    after: Option<(OffsetDateTime, String)>,
) -> Result<Chunk<(OffsetDateTime, String)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_game(&mut tx, game).await?;
    let (after_at, after_id) = match &after {
        Some((at, id)) => (*at, id.as_str()),
        None => (OffsetDateTime::UNIX_EPOCH, ""),
    };
    let candidates = sqlx::query!(
        "SELECT player_id, last_seen_at FROM players
         WHERE game_id = $1 AND last_seen_at < $2
           AND (last_seen_at, player_id) > ($3, $4)
         ORDER BY last_seen_at, player_id LIMIT $5",
        game.0,
        before,
        after_at,
        after_id,
        CHUNK
    )
    .fetch_all(&mut *tx)
    .await?;
    let last = candidates
        .last()
        .map(|c| (c.last_seen_at, c.player_id.clone()));
    let ids: Vec<String> = candidates.into_iter().map(|c| c.player_id).collect();
    let deleted = sqlx::query!(
        "DELETE FROM players AS p
         WHERE p.game_id = $1 AND p.player_id = ANY($2)
           AND NOT events_may_remain($1, p.last_client_occurred_at)
           AND NOT EXISTS (SELECT 1 FROM sessions AS s
                           WHERE s.game_id = $1 AND s.player_id = p.player_id)",
        game.0,
        &ids
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Chunk {
        looked_at: ids.len(),
        deleted,
        last,
    })
}

/// One chunk of a pass over candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk<K> {
    pub looked_at: usize,
    pub deleted: u64,
    /// Where the next chunk starts; `None` when the pass is over.
    pub last: Option<K>,
}

/// The games, each with its own retention (`None`: the default).
pub async fn games(pool: &PgPool) -> Result<Vec<(GameId, Option<u32>)>, sqlx::Error> {
    let rows = sqlx::query!("SELECT game_id, retention_days FROM games ORDER BY game_id")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                GameId(r.game_id),
                r.retention_days.and_then(|d| u32::try_from(d).ok()),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_v7_floor_of_a_time_orders_below_every_v7_id_made_then_or_after() {
        let at = datetime!(2026-12-01 12:00:00.123 UTC);
        let floor = uuid_v7_floor(at);
        let ts =
            uuid::Timestamp::from_unix(uuid::NoContext, at.unix_timestamp() as u64, 123_000_000);
        let then = Uuid::new_v7(ts);
        assert!(floor <= then);
        let earlier = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            at.unix_timestamp() as u64,
            122_000_000,
        ));
        assert!(earlier < floor);
        assert_eq!(floor.get_version_num(), 7);
    }
}
