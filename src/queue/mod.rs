//! The durable queue: one sqlxmq job per accepted batch, whose id is the batch's id.
//!
//! Claiming is our own `mq_poll` (migrations/…_claim_jobs_skip_locked.sql), which sqlxmq's
//! runner calls. A job's lease is its retry backoff: a job whose worker stops renewing
//! the lease is claimed again once the lease runs out, and each claim uses one attempt.

pub mod failed;

use sqlx::{PgConnection, PgPool};
use sqlxmq::JobBuilder;
use uuid::Uuid;

use crate::config::RetrySettings;
use crate::domain::ValidBatch;
use crate::store;

/// The sqlxmq job name of a queued batch.
pub const INGEST_JOB: &str = "ingest_batch";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot encode the job payload: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Queues validated batches.
#[derive(Debug, Clone)]
pub struct Queue {
    pool: PgPool,
    retry: RetrySettings,
}

impl Queue {
    pub fn new(pool: PgPool, retry: RetrySettings) -> Self {
        Self { pool, retry }
    }

    /// Queues `batch`; when this returns, the batch record and its job are committed.
    pub async fn enqueue(&self, batch: &ValidBatch) -> Result<Uuid, QueueError> {
        // Time-ordered ids keep the batches index append-only.
        let batch_id = Uuid::now_v7();
        let payload = serde_json::to_string(batch)?;
        let mut tx = self.pool.begin().await?;
        store::insert_queued_batch(&mut tx, batch_id, batch).await?;
        JobBuilder::new_with_id(batch_id, INGEST_JOB)
            .set_retries(self.retry.max_attempts - 1)
            .set_retry_backoff(self.retry.base_delay())
            .set_raw_json(&payload)
            .spawn(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(batch_id)
    }
}

/// Removes job `job_id` from the queue inside the worker's transaction, so that it is
/// gone exactly when the batch's writes commit. Taking it first locks it: a claim skips
/// it from here on. Returns false when the job is gone already, because another worker
/// (which took over after this one's lease ran out) completed it.
pub async fn take_job(conn: &mut PgConnection, job_id: Uuid) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query_scalar!(
        "WITH job AS (DELETE FROM mq_msgs WHERE id = $1 RETURNING id)
         DELETE FROM mq_payloads AS p USING job WHERE p.id = job.id RETURNING p.id",
        job_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(taken.is_some())
}

/// Records that an attempt at job `job_id` failed. After the last attempt the job is dead
/// and its batch `failed`; otherwise the batch is `queued` again and the job is retried
/// once its backoff has passed.
pub async fn record_failure(pool: &PgPool, job_id: Uuid, error: &str) -> Result<(), sqlx::Error> {
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
        return Ok(());
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
    tx.commit().await
}
