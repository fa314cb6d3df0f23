//! The durable queue: one sqlxmq job per accepted batch, whose id is the batch's id.
//! Batches are queued through a group committer (see [`group_commit`]).
//!
//! Claiming is our own `mq_poll`, which sqlxmq's runner calls: defined in migration 6
//! (…_claims_and_leases_in_fewer_calls.sql), which replaced migration 2's. A job's lease
//! is its retry backoff: a job whose worker stops renewing the lease is claimed again once
//! the lease runs out, and each claim uses one attempt.

mod backpressure;
pub mod failed;
mod group_commit;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::RetrySettings;
use crate::domain::{GameId, ValidBatch};
use crate::store::QueuedBatch;
use group_commit::PendingBatch;

/// The sqlxmq job name of a queued batch.
pub const INGEST_JOB: &str = "ingest_batch";

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("database error: {0}")]
    Database(Arc<sqlx::Error>),
    #[error("cannot encode the job payload: {0}")]
    Encode(Arc<serde_json::Error>),
    #[error("the queue is shutting down")]
    Closed,
}

/// What a queued job carries: the batch, its game, and the request that queued it (for
/// the logs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobPayload {
    pub request_id: String,
    /// Jobs queued before games existed name none: theirs is the default game.
    #[serde(default = "default_game")]
    pub game_id: GameId,
    pub batch: ValidBatch,
}

fn default_game() -> GameId {
    GameId::DEFAULT
}

/// [`JobPayload`] by reference, for encoding without copying the batch.
#[derive(Serialize)]
struct JobPayloadRef<'a> {
    request_id: &'a str,
    game_id: GameId,
    batch: &'a ValidBatch,
}

impl JobPayload {
    pub fn encode(
        request_id: &str,
        game_id: GameId,
        batch: &ValidBatch,
    ) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&JobPayloadRef {
            request_id,
            game_id,
            batch,
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Queues validated batches, through the group committer.
#[derive(Debug, Clone)]
pub struct Queue {
    committer: mpsc::Sender<PendingBatch>,
}

impl Queue {
    /// Starts the committer task; it stops once every clone of this queue is dropped.
    pub fn start(pool: PgPool, retry: RetrySettings) -> Self {
        Self {
            committer: group_commit::start(pool, retry),
        }
    }

    /// Queues `batch` of game `game_id`; when this returns, the batch record and its job
    /// are committed.
    pub async fn enqueue(
        &self,
        game_id: GameId,
        batch: &ValidBatch,
        request_id: &str,
    ) -> Result<Uuid, QueueError> {
        // Time-ordered ids keep the batches index append-only.
        let batch_id = Uuid::now_v7();
        let payload = JobPayload::encode(request_id, game_id, batch)
            .map_err(|e| QueueError::Encode(Arc::new(e)))?;
        let (committed, outcome) = oneshot::channel();
        let pending = PendingBatch {
            record: QueuedBatch {
                batch_id,
                game_id,
                accepted: batch.events.len() as i32,
                sent_at: batch.sent_at,
                received_at: batch.received_at,
                request_id: request_id.to_owned(),
            },
            payload,
            committed,
        };
        self.committer
            .send(pending)
            .await
            .map_err(|_| QueueError::Closed)?;
        outcome.await.map_err(|_| QueueError::Closed)??;
        Ok(batch_id)
    }
}

/// Removes jobs from the queue inside the worker's transaction, so that they are gone
/// exactly when their batches' writes commit. Taking them first locks them: a claim skips
/// them from here on. Returns the ids taken: a job that is gone already was completed by
/// another worker (which took over after this one's lease ran out).
pub async fn take_jobs(
    conn: &mut PgConnection,
    job_ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "WITH jobs AS (DELETE FROM mq_msgs WHERE id = ANY($1) RETURNING id)
         DELETE FROM mq_payloads AS p USING jobs WHERE p.id = jobs.id RETURNING p.id",
        job_ids
    )
    .fetch_all(conn)
    .await
}

/// Renews the leases of the jobs a worker holds, in one call for all of them (our
/// `mq_renew_leases`, migration 6: a job is renewed once less than half its lease is
/// left, and a locked one is skipped). Returns how many were renewed, and the shortest
/// lease among the given jobs still queued (`None` if there is none).
pub async fn renew_leases(
    pool: &PgPool,
    job_ids: &[Uuid],
) -> Result<(i64, Option<std::time::Duration>), sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT renewed AS "renewed!", shortest_lease FROM mq_renew_leases($1)"#,
        job_ids
    )
    .fetch_one(pool)
    .await?;
    // Leases are seconds to hours: made of microseconds and days, never months.
    let shortest = row.shortest_lease.map(|lease| {
        std::time::Duration::from_micros(lease.microseconds.max(0) as u64)
            + std::time::Duration::from_secs(lease.days.max(0) as u64 * 86_400)
    });
    Ok((row.renewed, shortest))
}

/// Records that an attempt at job `job_id` failed. After the last attempt the job is dead
/// and its batch `failed`; otherwise the batch is `queued` again and the job is retried
/// once its backoff has passed. Returns whether the job is dead (`None` if it is gone:
/// another worker completed it).
pub async fn record_failure(
    pool: &PgPool,
    job_id: Uuid,
    error: &str,
) -> Result<Option<bool>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Lock order as everywhere: the job, then its batch.
    let remaining = sqlx::query_scalar!(
        "SELECT attempts FROM mq_msgs WHERE id = $1 FOR UPDATE",
        job_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(remaining) = remaining else {
        // Completed meanwhile by a worker that took over.
        return Ok(None);
    };
    let dead = remaining == 0;
    if dead {
        sqlx::query!("UPDATE mq_msgs SET attempt_at = NULL WHERE id = $1", job_id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query!(
        "UPDATE batches
         SET last_error = $2, status = CASE WHEN $3 THEN 'failed' ELSE 'queued' END
         WHERE batch_id = $1 AND status <> 'completed'",
        job_id,
        error,
        dead,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(dead))
}

/// Vacuums the queue's tables. Their rows live for seconds (inserted, updated at each
/// claim, deleted with the batch's writes), so within seconds most index entries point to
/// dead rows, and each claim, which walks the claim index from its start, reads past
/// them. Measured at 3,000 single-event batches a second with autovacuum off: a claim
/// took 10.6 ms without this and 3.9 ms with it every second. SKIP_LOCKED leaves a table
/// that another worker is vacuuming to that worker.
///
/// Returns the dead rows it had to leave: rows that a transaction older than them may
/// still see (a pg_dump, a long query), which no vacuum can remove until it ends.
pub async fn vacuum(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::raw_sql("VACUUM (SKIP_LOCKED) mq_msgs, mq_payloads")
        .execute(pool)
        .await?;
    sqlx::query_scalar!(
        r#"SELECT coalesce(sum(n_dead_tup), 0)::bigint AS "left!" FROM pg_stat_user_tables
           WHERE relid IN ('mq_msgs'::regclass, 'mq_payloads'::regclass)"#
    )
    .fetch_one(pool)
    .await
}

/// How long the oldest job that is due has waited for a worker (zero when none waits).
pub async fn lag(pool: &PgPool) -> Result<std::time::Duration, sqlx::Error> {
    let seconds = sqlx::query_scalar!(r#"SELECT mq_lag_seconds() AS "seconds!""#)
        .fetch_one(pool)
        .await?;
    Ok(std::time::Duration::from_secs_f64(seconds.max(0.0)))
}

/// The queue's size, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueStats {
    /// Jobs not yet stored and not dead: waiting, running, or awaiting a retry.
    pub depth: i64,
    /// Jobs that used up their attempts.
    pub dead: i64,
    /// Age of the oldest job counted in `depth`.
    pub oldest_age_seconds: Option<f64>,
}

pub async fn stats(pool: &PgPool) -> Result<QueueStats, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE attempt_at IS NOT NULL) AS "depth!",
                  count(*) FILTER (WHERE attempt_at IS NULL) AS "dead!",
                  extract(epoch FROM now() - min(created_at) FILTER (WHERE attempt_at IS NOT NULL))::float8 AS oldest
           FROM mq_msgs WHERE id <> uuid_nil()"#
    )
    .fetch_one(pool)
    .await?;
    Ok(QueueStats {
        depth: row.depth,
        dead: row.dead,
        oldest_age_seconds: row.oldest,
    })
}
