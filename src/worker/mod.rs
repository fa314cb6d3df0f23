//! Workers: claim queued batches and write them into the event tables.
//!
//! sqlxmq's runner polls (through our `mq_poll`), keeps each running job's lease alive,
//! and hands us one job at a time. A batch's writes, its batch record and the removal of
//! its job commit in one transaction: a crash at any moment either loses the whole
//! attempt (and the job is claimed again when its lease runs out) or none of it.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlxmq::{CurrentJob, JobRunnerHandle, JobRunnerOptions};
use tracing::Instrument;
use uuid::Uuid;

use crate::config::WorkSettings;
use crate::domain::ValidBatch;
use crate::queue;
use crate::store::{self, WriteOutcome};

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("the job has no payload")]
    MissingPayload,
    #[error("the job payload is not a batch: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What one attempt at a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Stored(WriteOutcome),
    /// Another worker completed the job first (it took over after our lease ran out).
    AlreadyDone,
}

/// Processes one claimed batch, start to commit.
pub async fn process(
    pool: &PgPool,
    job_id: Uuid,
    payload: Option<&str>,
) -> Result<JobOutcome, WorkError> {
    let batch: ValidBatch = serde_json::from_str(payload.ok_or(WorkError::MissingPayload)?)?;
    let mut tx = pool.begin().await?;
    if !queue::take_job(&mut tx, job_id).await? {
        return Ok(JobOutcome::AlreadyDone);
    }
    let outcome = store::write_batch(&mut tx, job_id, &batch).await?;
    tx.commit().await?;
    Ok(JobOutcome::Stored(outcome))
}

async fn handle(pool: PgPool, job: CurrentJob) {
    let job_id = job.id();
    let started = Instant::now();
    match process(&pool, job_id, job.raw_json()).await {
        Ok(JobOutcome::Stored(outcome)) => tracing::info!(
            inserted = outcome.inserted,
            duplicates = outcome.duplicates,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch stored"
        ),
        Ok(JobOutcome::AlreadyDone) => tracing::info!("batch was completed by another worker"),
        Err(error) => {
            tracing::warn!(%error, "batch attempt failed; it will be retried unless it was the last attempt");
            if let Err(record_error) =
                queue::record_failure(&pool, job_id, &error.to_string()).await
            {
                tracing::error!(%record_error, "cannot record the failure; the job is retried when its lease runs out");
            }
        }
    }
    // Dropping the job stops its lease renewal.
    drop(job);
}

/// A running worker.
pub struct Worker {
    runner: JobRunnerHandle,
    grace: Duration,
}

impl Worker {
    pub async fn start(pool: PgPool, settings: &WorkSettings) -> Result<Self, sqlx::Error> {
        let concurrency = usize::from(settings.concurrency);
        let dispatch_pool = pool.clone();
        let runner = JobRunnerOptions::new(&pool, move |job: CurrentJob| {
            let span = tracing::info_span!("batch", batch_id = %job.id());
            tokio::spawn(handle(dispatch_pool.clone(), job).instrument(span));
        })
        .set_concurrency(concurrency, concurrency)
        .set_keep_alive(true)
        .run()
        .await?;
        tracing::info!(concurrency, "worker started");
        Ok(Self {
            runner,
            grace: Duration::from_secs(settings.worker_shutdown_grace_secs),
        })
    }

    /// Stops claiming, then waits (up to the grace period) for running batches. A batch
    /// still running after that is abandoned uncommitted; its lease runs out and another
    /// worker retries it.
    pub async fn shutdown(mut self) {
        self.runner.stop().await;
        let running = self.runner.num_running_jobs();
        if running > 0 {
            tracing::info!(running, "waiting for running batches");
            self.runner.wait_jobs_finish(self.grace).await;
        }
        tracing::info!(abandoned = self.runner.num_running_jobs(), "worker stopped");
    }

    /// Runs until `shutdown` resolves, then shuts down.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.shutdown().await;
    }
}
