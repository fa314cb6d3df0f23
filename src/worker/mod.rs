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
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::WorkSettings;
use crate::domain::ValidBatch;
use crate::metrics::{metrics, JobOutcome as MetricOutcome};
use crate::queue::{self, JobPayload};
use crate::store::{self, WriteOutcome};

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("the job payload is not a batch: {0}")]
    Payload(String),
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

/// Stores one claimed batch, start to commit.
pub async fn process(
    pool: &PgPool,
    job_id: Uuid,
    batch: &ValidBatch,
) -> Result<JobOutcome, WorkError> {
    let mut tx = pool.begin().await?;
    if !queue::take_job(&mut tx, job_id).await? {
        return Ok(JobOutcome::AlreadyDone);
    }
    let outcome = store::write_batch(&mut tx, job_id, batch).await?;
    tx.commit().await?;
    Ok(JobOutcome::Stored(outcome))
}

/// The job's batch, or why it cannot be read.
fn decode(job: &CurrentJob) -> Result<JobPayload, String> {
    let bytes = job.raw_bytes().ok_or("the job has no payload")?;
    JobPayload::decode(bytes).map_err(|e| e.to_string())
}

async fn handle(pool: PgPool, job: CurrentJob) {
    let job_id = job.id();
    let started = Instant::now();
    let payload = decode(&job);
    // The request id links the worker's log lines to the API's for the same batch.
    let request_id = payload.as_ref().map_or("", |p| p.request_id.as_str());
    let span = tracing::info_span!("batch", batch_id = %job_id, request_id);
    let result = match &payload {
        Ok(payload) => {
            process(&pool, job_id, &payload.batch)
                .instrument(span.clone())
                .await
        }
        Err(reason) => Err(WorkError::Payload(reason.clone())),
    };
    let metrics = metrics();
    let _entered = span.enter();
    match result {
        Ok(JobOutcome::Stored(outcome)) => {
            metrics.job(MetricOutcome::completed);
            metrics
                .processing_seconds
                .observe(started.elapsed().as_secs_f64());
            if let Ok(payload) = &payload {
                let lag = OffsetDateTime::now_utc() - payload.batch.received_at;
                metrics
                    .end_to_end_lag_seconds
                    .observe(lag.as_seconds_f64().max(0.0));
            }
            tracing::info!(
                inserted = outcome.inserted,
                duplicates = outcome.duplicates,
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "batch stored"
            );
        }
        Ok(JobOutcome::AlreadyDone) => tracing::info!("batch was completed by another worker"),
        Err(error) => {
            tracing::warn!(%error, "batch attempt failed");
            match queue::record_failure(&pool, job_id, &error.to_string()).await {
                Ok(Some(true)) => {
                    metrics.job(MetricOutcome::failed);
                    tracing::error!(%error, "batch failed: no attempts left; `app failed retry` requeues it");
                }
                Ok(Some(false)) => metrics.job(MetricOutcome::retried),
                Ok(None) => {}
                Err(record_error) => {
                    tracing::error!(%record_error, "cannot record the failure; the job is retried when its lease runs out")
                }
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
            tokio::spawn(handle(dispatch_pool.clone(), job));
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
