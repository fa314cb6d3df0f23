//! Batches that used up their attempts: listing them and requeueing them.

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::RetrySettings;

#[derive(Debug, Clone, PartialEq)]
pub struct FailedBatch {
    pub batch_id: Uuid,
    /// The name of its game.
    pub game: String,
    pub accepted: i32,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub received_at: OffsetDateTime,
}

pub async fn list(pool: &PgPool) -> Result<Vec<FailedBatch>, sqlx::Error> {
    sqlx::query_as!(
        FailedBatch,
        "SELECT b.batch_id, g.name AS game, b.accepted, b.attempts, b.last_error, b.received_at
         FROM batches AS b JOIN games AS g USING (game_id)
         WHERE b.status = 'failed' ORDER BY b.received_at, b.batch_id"
    )
    .fetch_all(pool)
    .await
}

/// Which failed batches to requeue.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    Only(Vec<Uuid>),
}

/// Gives failed batches a fresh set of attempts and wakes the workers. Returns the ids
/// requeued; an id that is not a failed batch is left alone (and not returned).
pub async fn retry(
    pool: &PgPool,
    selection: &Selection,
    retry: RetrySettings,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let only: Option<&[Uuid]> = match selection {
        Selection::All => None,
        Selection::Only(ids) => Some(ids),
    };
    let mut tx = pool.begin().await?;
    // Lock order as everywhere: the jobs, then their batches.
    let requeued = sqlx::query_scalar!(
        "WITH revived AS (
             UPDATE mq_msgs AS m
             SET attempts = $2, attempt_at = now(), retry_backoff = make_interval(secs => $3)
             WHERE m.attempts = 0 AND m.attempt_at IS NULL AND m.id <> uuid_nil()
               AND ($1::uuid[] IS NULL OR m.id = ANY($1))
             RETURNING m.id
         )
         UPDATE batches AS b SET status = 'queued'
         FROM revived WHERE b.batch_id = revived.id
         RETURNING b.batch_id",
        only as Option<&[Uuid]>,
        retry.max_attempts as i32,
        retry.base_delay().as_secs_f64(),
    )
    .fetch_all(&mut *tx)
    .await?;
    // sqlxmq's runners wake on this channel (the API notifies it when it queues jobs).
    // ...and the backpressure signal learns that jobs wait (migration 10).
    sqlx::query!("SELECT pg_notify('mq', ''), mq_note_waiting()")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(requeued)
}
