//! Workers: claim queued batches and write them into the event tables.
//!
//! sqlxmq's runner claims jobs (through our `mq_poll`) and hands them over one by one; the
//! worker renews the leases of all the jobs it holds at once (`lease.rs`). A few processor
//! tasks take the jobs that are
//! waiting and store each group of batches in one transaction (one statement per table),
//! together with the removal of their jobs and the completion of their batch records:
//! a crash at any moment either loses the whole attempt (the jobs are claimed again when
//! their leases run out) or none of it. If a group fails, its batches are stored one by
//! one, so that a poison batch fails alone.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlxmq::{CurrentJob, JobRunnerHandle, JobRunnerOptions};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch, Mutex, Notify};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

mod lease;
mod partitions;

use crate::config::WorkSettings;
use crate::metrics::{metrics, JobOutcome as MetricOutcome};
use crate::queue::{self, JobPayload};
use crate::store::{self, BatchToWrite, WriteOutcome};
use lease::{HeldJobs, Lease};
use partitions::KnownPartitions;

/// Most jobs a processor stores in one transaction.
const MAX_GROUP_JOBS: usize = 64;
/// Most events a processor stores in one transaction.
const MAX_GROUP_EVENTS: usize = 10_000;
/// Longest a group that is not full waits for another processor to finish storing.
const MAX_GROUP_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("the job payload is not a batch: {0}")]
    Payload(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What became of one claimed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Stored(WriteOutcome),
    /// Another worker completed the job first (it took over after our lease ran out).
    AlreadyDone,
}

/// A job as sqlxmq's runner hands it over, with its lease.
struct Handed {
    job: CurrentJob,
    lease: Lease,
}

/// A claimed job with its decoded payload.
struct Claimed {
    id: Uuid,
    /// The job's slot in sqlxmq's runner, given back once a processor starts storing it
    /// (see [`Group::start`]).
    slot: Option<CurrentJob>,
    lease: Lease,
    payload: Result<JobPayload, String>,
}

impl Claimed {
    fn new(Handed { job, lease }: Handed) -> Self {
        let payload = match job.raw_bytes() {
            Some(bytes) => JobPayload::decode(bytes).map_err(|e| e.to_string()),
            None => Err("the job has no payload".to_owned()),
        };
        Self {
            id: job.id(),
            slot: Some(job),
            lease,
            payload,
        }
    }

    fn id(&self) -> Uuid {
        self.id
    }

    fn events(&self) -> usize {
        self.payload.as_ref().map_or(0, |p| p.batch.events.len())
    }

    /// The batch's span: the request id links the worker's log lines to the API's.
    fn span(&self) -> tracing::Span {
        let request_id = self.payload.as_ref().map_or("", |p| p.request_id.as_str());
        tracing::info_span!("batch", batch_id = %self.id(), request_id)
    }
}

/// Stores claimed batches in one transaction, start to commit.
async fn store_group(
    pool: &PgPool,
    group: &[(Uuid, &JobPayload)],
    trust_own_references: bool,
) -> Result<Vec<JobOutcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Every statement below finds its rows by key. Stale statistics (a queue table grows
    // and shrinks by thousands of rows a second; autovacuum may even be off) must not make
    // the planner read whole tables instead: measured, that was 152 million rows read for
    // 30,000 jobs, and a worker that slowed the more it lagged.
    sqlx::query_scalar!("SELECT set_config('enable_seqscan', 'off', true)")
        .fetch_one(&mut *tx)
        .await?;
    let ids: Vec<Uuid> = group.iter().map(|(id, _)| *id).collect();
    let taken = queue::take_jobs(&mut tx, &ids).await?;
    // After the jobs are taken: the queue's own foreign keys act as ever.
    if trust_own_references {
        store::trust_own_references(&mut tx).await?;
    }
    let to_write: Vec<BatchToWrite> = group
        .iter()
        .filter(|(id, _)| taken.contains(id))
        .map(|(id, payload)| BatchToWrite {
            batch_id: *id,
            game_id: payload.game_id,
            batch: &payload.batch,
        })
        .collect();
    let mut written = store::write_batches(&mut tx, &to_write).await?.into_iter();
    tx.commit().await?;
    Ok(group
        .iter()
        .map(|(id, _)| match taken.contains(id) {
            true => JobOutcome::Stored(written.next().expect("one outcome per batch written")),
            false => JobOutcome::AlreadyDone,
        })
        .collect())
}

/// Stores a group of claimed jobs and reports on each.
async fn process_group(pool: &PgPool, claimed: Vec<Claimed>, processors: &Processors) {
    let trust_own_references = processors.trust_own_references;
    let started = Instant::now();
    let (decoded, undecodable): (Vec<&Claimed>, Vec<&Claimed>) =
        claimed.iter().partition(|c| c.payload.is_ok());
    for c in undecodable {
        let reason = c.payload.as_ref().err().cloned().unwrap_or_default();
        fail(pool, c, &WorkError::Payload(reason)).await;
    }
    let group: Vec<(Uuid, &JobPayload)> = decoded
        .iter()
        .filter_map(|c| Some((c.id(), c.payload.as_ref().ok()?)))
        .collect();
    if group.is_empty() {
        return;
    }
    let stored = match processors
        .partitions
        .ensure(pool, group.iter().map(|(_, p)| *p))
        .await
    {
        Ok(()) => store_group(pool, &group, trust_own_references).await,
        Err(error) => Err(error),
    };
    if stored.is_err() {
        // A day it knew of may have been dropped by retention: the next attempt checks.
        processors.partitions.forget();
    }
    match stored {
        Ok(outcomes) => {
            for (c, outcome) in decoded.iter().zip(outcomes) {
                succeed(c, outcome, started);
            }
        }
        Err(error) if group.len() > 1 => {
            tracing::warn!(%error, batches = group.len(), "storing a group failed; storing its batches one by one");
            for (c, single) in decoded.iter().zip(&group) {
                match store_group(pool, std::slice::from_ref(single), trust_own_references).await {
                    Ok(outcomes) => succeed(c, outcomes[0], started),
                    Err(error) => fail(pool, c, &WorkError::Database(error)).await,
                }
            }
        }
        Err(error) => fail(pool, decoded[0], &WorkError::Database(error)).await,
    }
    // Dropping the jobs stops their lease renewal.
    drop(claimed);
}

fn succeed(claimed: &Claimed, outcome: JobOutcome, started: Instant) {
    let _span = claimed.span().entered();
    match outcome {
        JobOutcome::Stored(outcome) => {
            let metrics = metrics();
            metrics.job(MetricOutcome::completed);
            metrics
                .processing_seconds
                .observe(started.elapsed().as_secs_f64());
            if let Ok(payload) = &claimed.payload {
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
        JobOutcome::AlreadyDone => tracing::info!("batch was completed by another worker"),
    }
}

async fn fail(pool: &PgPool, claimed: &Claimed, error: &WorkError) {
    let span = claimed.span();
    let _entered = span.enter();
    tracing::warn!(%error, "batch attempt failed");
    // The retry waits for the lease to run out.
    claimed.lease.stop_renewing();
    let metrics = metrics();
    match queue::record_failure(pool, claimed.id(), &error.to_string()).await {
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

/// The jobs a worker's runner has handed over, shared by its processors.
struct Processors {
    jobs: Mutex<mpsc::UnboundedReceiver<Handed>>,
    /// Batches being stored right now, by all processors.
    storing: AtomicUsize,
    /// Signalled each time a processor is done storing a group.
    done: Notify,
    /// Skip PostgreSQL's per-row foreign-key checks ([`store::trust_own_references`]).
    trust_own_references: bool,
    /// The event tables' partitions this worker knows exist.
    partitions: KnownPartitions,
}

/// A group of claimed jobs being gathered.
struct Group {
    jobs: Vec<Claimed>,
    events: usize,
}

impl Group {
    fn push(&mut self, job: Handed) {
        let claimed = Claimed::new(job);
        self.events += claimed.events();
        self.jobs.push(claimed);
    }

    fn is_full(&self) -> bool {
        self.jobs.len() >= MAX_GROUP_JOBS || self.events >= MAX_GROUP_EVENTS
    }

    /// The group is about to be stored: give its jobs' slots back to sqlxmq's runner, which
    /// claims more once every job it handed over is being stored (see `Worker::start`).
    /// The leases stay held until the jobs are done.
    fn start(mut self) -> Vec<Claimed> {
        for claimed in &mut self.jobs {
            drop(claimed.slot.take());
        }
        self.jobs
    }
}

impl Processors {
    /// Waits for one job, then takes the jobs already waiting, up to the group limits.
    ///
    /// A group that is not full waits while another processor of this worker is storing,
    /// for more jobs or for that processor to finish (at most [`MAX_GROUP_WAIT`], in case
    /// that one hangs). A worker that keeps up thus runs one transaction at a time, in
    /// groups that grow with the load, and opens more at once only when there is a
    /// backlog of full groups. Measured in the benchmark with two workers of four
    /// processors: taking whatever was waiting, they stored 2,000 batches in 375 groups of
    /// 5 on average, and two workers were slower than one (38k against 48k events/s);
    /// waiting, in 36 groups of 56, and as fast as one.
    async fn next_group(&self) -> Option<Vec<Claimed>> {
        let mut jobs = self.jobs.lock().await;
        let mut group = Group {
            jobs: Vec::new(),
            events: 0,
        };
        group.push(jobs.recv().await?);
        let wait_until = tokio::time::Instant::now() + MAX_GROUP_WAIT;
        loop {
            while !group.is_full() {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            if group.is_full() || self.storing.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => group.push(job),
                    None => break,
                },
                // A stale signal only costs one more look at `storing`.
                _ = self.done.notified() => {}
                _ = tokio::time::sleep_until(wait_until) => break,
            }
        }
        self.storing.fetch_add(group.jobs.len(), Ordering::SeqCst);
        Some(group.start())
    }
}

async fn processor(pool: PgPool, processors: Arc<Processors>) {
    while let Some(group) = processors.next_group().await {
        let batches = group.len();
        process_group(&pool, group, &processors).await;
        processors.storing.fetch_sub(batches, Ordering::SeqCst);
        processors.done.notify_one();
    }
}

/// How often a worker checks that the database is reachable (see [`supervise`]).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A running worker.
pub struct Worker {
    stop: watch::Sender<bool>,
    /// Resolves, once told to stop, to every runner this worker started, all stopped
    /// claiming, some perhaps still holding jobs.
    supervisor: JoinHandle<Vec<JobRunnerHandle>>,
    processors: JoinSet<()>,
    shared: Arc<Processors>,
    lease_renewal: JoinHandle<()>,
    grace: Duration,
}

impl Worker {
    pub async fn start(pool: PgPool, settings: &WorkSettings) -> Result<Self, sqlx::Error> {
        let processors_count = usize::from(settings.concurrency);
        let (to_processors, jobs) = mpsc::unbounded_channel::<Handed>();
        let trust_own_references =
            !settings.check_foreign_keys && store::may_trust_own_references(&pool).await?;
        if trust_own_references {
            tracing::info!("foreign keys of stored rows hold by construction; PostgreSQL's per-row checks are skipped (--check-foreign-keys to keep them)");
        } else {
            tracing::info!("PostgreSQL checks the foreign keys of stored rows row by row");
        }
        let shared = Arc::new(Processors {
            jobs: Mutex::new(jobs),
            storing: AtomicUsize::new(0),
            done: Notify::new(),
            trust_own_references,
            partitions: KnownPartitions::default(),
        });
        let mut processors = JoinSet::new();
        for _ in 0..processors_count {
            processors.spawn(processor(pool.clone(), shared.clone()));
        }
        // sqlxmq's runner counts a job as running until a processor starts storing it
        // (`Group::start`), and claims again only once none is left: every due job, up to
        // a full group per processor. Claiming whenever fewer than some number were
        // running, it claimed after nearly every enqueue (each one notifies the runners):
        // with two workers, 808 claims of 2.5 jobs on average for 2,000 jobs, against 40
        // this way. A job the processors never get (we are stopping) is dropped, and
        // claimed again when its lease runs out.
        let in_flight = processors_count * MAX_GROUP_JOBS;
        let held = Arc::new(HeldJobs::default());
        let lease_renewal = tokio::spawn(lease::renew(pool.clone(), held.clone()));
        let mut options = JobRunnerOptions::new(&pool, move |job: CurrentJob| {
            let lease = held.hold(job.id());
            let _ = to_processors.send(Handed { job, lease });
        });
        // Leases are renewed by `lease_renewal`, for all held jobs at once.
        options.set_concurrency(1, in_flight).set_keep_alive(false);
        let runner = options.run().await?;
        tracing::info!(processors = processors_count, "worker started");
        let (stop, stopped) = watch::channel(false);
        if settings.queue_vacuum_interval_ms > 0 {
            let every = Duration::from_millis(settings.queue_vacuum_interval_ms);
            tokio::spawn(vacuum_queue(pool.clone(), every, stopped.clone()));
        }
        Ok(Self {
            stop,
            supervisor: tokio::spawn(supervise(pool, options, runner, stopped)),
            processors,
            shared,
            lease_renewal,
            grace: Duration::from_secs(settings.worker_shutdown_grace_secs),
        })
    }

    /// Stops claiming, then waits (up to the grace period) for claimed batches to be
    /// stored. A batch still unstored after that is abandoned uncommitted; its lease runs
    /// out and a worker retries it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let runners = self.supervisor.await.unwrap_or_default();
        // Batches handed over but not being stored yet, and batches being stored.
        let waiting = |runners: &[JobRunnerHandle]| -> usize {
            runners.iter().map(JobRunnerHandle::num_running_jobs).sum()
        };
        let storing = || self.shared.storing.load(Ordering::SeqCst);
        let running = |runners: &[JobRunnerHandle]| waiting(runners) + storing();
        if running(&runners) > 0 {
            tracing::info!(running = running(&runners), "waiting for running batches");
            let deadline = Instant::now() + self.grace;
            for runner in &runners {
                runner
                    .wait_jobs_finish(deadline.saturating_duration_since(Instant::now()))
                    .await;
            }
            while storing() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tracing::info!(abandoned = running(&runners), "worker stopped");
        self.processors.abort_all();
        self.lease_renewal.abort();
    }

    /// Runs until `shutdown` resolves, then shuts down.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.shutdown().await;
    }
}

/// Vacuums the queue's tables every `every` until `stopped` (see [`queue::vacuum`]).
///
/// While a vacuum has to leave many dead rows behind (an old snapshot holds them), the
/// next one could remove no more, yet would read the whole tables again, which grow by
/// every job meanwhile: measured with a snapshot held for 100 s, vacuums of 280 ms each,
/// a fifth of a core. So the interval doubles while that lasts, up to
/// [`MAX_VACUUM_INTERVAL`], and is back to `every` as soon as a vacuum cleans up.
async fn vacuum_queue(pool: PgPool, every: Duration, mut stopped: watch::Receiver<bool>) {
    let mut interval = every;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            _ = tokio::time::sleep(interval) => {}
        }
        match queue::vacuum(&pool).await {
            Ok(left) => interval = next_vacuum_interval(interval, every, left),
            // An unreachable database is reported by `supervise`; nothing to add here.
            Err(error) => tracing::debug!(%error, "cannot vacuum the queue's tables"),
        }
    }
}

/// Dead rows a vacuum of the queue may leave and still count as having cleaned up: those
/// of the jobs completed while it ran.
const VACUUM_LEFT_BEHIND: i64 = 10_000;
/// The longest wait between vacuums while old snapshots hold dead rows.
const MAX_VACUUM_INTERVAL: Duration = Duration::from_secs(60);

fn next_vacuum_interval(current: Duration, every: Duration, left: i64) -> Duration {
    if left > VACUUM_LEFT_BEHIND {
        (current * 2).min(MAX_VACUUM_INTERVAL.max(every))
    } else {
        every
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vacuum_backs_off_while_dead_rows_stay_and_returns_once_they_go() {
        let every = Duration::from_secs(1);
        let mut interval = every;
        let mut seen = Vec::new();
        for _ in 0..8 {
            interval = next_vacuum_interval(interval, every, 50_000);
            seen.push(interval.as_secs());
        }
        assert_eq!(seen, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(next_vacuum_interval(interval, every, 120), every);
    }
}
