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
use tokio::sync::watch;
use tokio::task::JoinHandle;
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

/// How often a worker checks that the database is reachable (see [`supervise`]).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A running worker.
pub struct Worker {
    stop: watch::Sender<bool>,
    /// Resolves, once told to stop, to every runner this worker started, all stopped
    /// claiming, some perhaps still running jobs.
    supervisor: JoinHandle<Vec<JobRunnerHandle>>,
    grace: Duration,
}

impl Worker {
    pub async fn start(pool: PgPool, settings: &WorkSettings) -> Result<Self, sqlx::Error> {
        let concurrency = usize::from(settings.concurrency);
        let dispatch_pool = pool.clone();
        let mut options = JobRunnerOptions::new(&pool, move |job: CurrentJob| {
            let span = tracing::info_span!("batch", batch_id = %job.id());
            tokio::spawn(handle(dispatch_pool.clone(), job).instrument(span));
        });
        options
            .set_concurrency(concurrency, concurrency)
            .set_keep_alive(true);
        let runner = options.run().await?;
        tracing::info!(concurrency, "worker started");
        let (stop, stopped) = watch::channel(false);
        Ok(Self {
            stop,
            supervisor: tokio::spawn(supervise(pool, options, runner, stopped)),
            grace: Duration::from_secs(settings.worker_shutdown_grace_secs),
        })
    }

    /// Stops claiming, then waits (up to the grace period) for running batches. A batch
    /// still running after that is abandoned uncommitted; its lease runs out and another
    /// worker retries it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let runners = self.supervisor.await.unwrap_or_default();
        let running = |runners: &[JobRunnerHandle]| -> usize {
            runners.iter().map(JobRunnerHandle::num_running_jobs).sum()
        };
        if running(&runners) > 0 {
            tracing::info!(running = running(&runners), "waiting for running batches");
            let deadline = Instant::now() + self.grace;
            for runner in &runners {
                runner
                    .wait_jobs_finish(deadline.saturating_duration_since(Instant::now()))
                    .await;
            }
        }
        tracing::info!(abandoned = running(&runners), "worker stopped");
    }

    /// Runs until `shutdown` resolves, then shuts down.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.shutdown().await;
    }
}

/// Watches the database and, when it is reachable again after being unreachable, replaces
/// the job runner with a fresh one. sqlxmq's runner cannot be trusted to come back by
/// itself: while its polls fail it backs off as `50 ms << failures` without a bound, and
/// in a debug build its poll loop panics (a shift overflow) after 64 consecutive failures,
/// which leaves a live process that never claims a job again. Returns, once `stopped`,
/// every runner it started, stopped claiming.
async fn supervise(
    pool: PgPool,
    options: JobRunnerOptions,
    mut runner: JobRunnerHandle,
    mut stopped: watch::Receiver<bool>,
) -> Vec<JobRunnerHandle> {
    // Runners replaced while they still ran jobs, kept so that shutdown waits for those.
    let mut retired: Vec<JobRunnerHandle> = Vec::new();
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let probe = async {
            tokio::time::sleep(PROBE_EVERY).await;
            sqlx::query("SELECT 1").execute(&pool).await
        };
        let reachable = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            result = probe => result,
        };
        match (reachable, unreachable_since) {
            (Ok(_), Some(since)) => match options.run().await {
                Ok(fresh) => {
                    let mut old = std::mem::replace(&mut runner, fresh);
                    old.stop().await;
                    retired.push(old);
                    unreachable_since = None;
                    tracing::info!(
                        unreachable_ms = since.elapsed().as_millis() as u64,
                        "the database is reachable again; restarted the job runner"
                    );
                }
                Err(error) => tracing::warn!(%error, "cannot restart the job runner yet"),
            },
            (Ok(_), None) => {}
            (Err(error), None) => {
                tracing::warn!(%error, "the database is unreachable; claiming resumes when it is back");
                unreachable_since = Some(Instant::now());
            }
            (Err(_), Some(_)) => {}
        }
        retired.retain(|r| r.num_running_jobs() > 0);
    }
    runner.stop().await;
    retired.push(runner);
    retired
}
