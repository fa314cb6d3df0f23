//! Group commit: concurrent requests share one queue transaction.
//!
//! With durable acks, each request would otherwise pay for its own commit (a WAL flush),
//! and single-event requests would be bounded by flushes per second. Instead, requests
//! hand their batch to one committer task. It takes every batch waiting at that moment
//! and writes them all (the batch rows and one sqlxmq job per batch) in one transaction,
//! then answers each request. There is no timer: while a commit is in flight the next
//! group gathers by itself, so an idle service answers at once and a busy one commits in
//! large groups. Every 202 still waits for its own batch's commit.
//!
//! One committer, not several: with two, each commit carried half as many batches, and
//! every commit costs PostgreSQL a WAL flush and its statements' fixed costs whatever its
//! size. Measured in the standard benchmark (BENCHMARKS.md), one committer against two:
//! a 85.0k → 90.4k events/s with POST p99 27–39 → 21–23 ms, b 5,765 → 5,939 events/s.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::backpressure::Backpressure;
use super::{QueueError, INGEST_JOB};
use crate::config::RetrySettings;
use crate::store::{self, QueuedBatch};

/// Largest group, in batches and in payload bytes, so one commit stays short.
const MAX_GROUP_BATCHES: usize = 512;
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// One batch waiting for its commit.
pub struct PendingBatch {
    pub record: QueuedBatch,
    /// The job payload, already encoded by the request's own task.
    pub payload: Vec<u8>,
    pub committed: oneshot::Sender<Result<(), QueueError>>,
}

pub fn start(pool: PgPool, retry: RetrySettings) -> mpsc::Sender<PendingBatch> {
    // Room for two full groups waiting while one commits: requests past that wait to
    // hand theirs over.
    let (sender, receiver) = mpsc::channel(2 * MAX_GROUP_BATCHES);
    let backpressure = Backpressure::start(pool.clone());
    tokio::spawn(committer(receiver, pool, retry, backpressure));
    sender
}

async fn committer(
    mut receiver: mpsc::Receiver<PendingBatch>,
    pool: PgPool,
    retry: RetrySettings,
    backpressure: Backpressure,
) {
    // Ends when every sender is gone and the channel is drained.
    loop {
        // Workers behind: wait a little before taking the next group, so that fewer,
        // larger commits acknowledge clients at the rate batches are stored.
        let pause = backpressure.pause();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let Some(group) = next_group(&mut receiver).await else {
            break;
        };
        let result = commit(&pool, &group, retry)
            .await
            .map_err(|e| QueueError::Database(Arc::new(e)));
        for pending in group {
            // The request may have gone away (client disconnected); its batch is queued anyway.
            let _ = pending.committed.send(result.clone());
        }
    }
}

/// Waits for one batch, then takes every batch already waiting, up to the group limits.
async fn next_group(receiver: &mut mpsc::Receiver<PendingBatch>) -> Option<Vec<PendingBatch>> {
    let first = receiver.recv().await?;
    let mut bytes = first.payload.len();
    let mut group = vec![first];
    while group.len() < MAX_GROUP_BATCHES && bytes < MAX_GROUP_BYTES {
        match receiver.try_recv() {
            Ok(pending) => {
                bytes += pending.payload.len();
                group.push(pending);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

/// Writes the batch rows and their jobs in one transaction: two statements, whatever
/// the group's size.
async fn commit(
    pool: &PgPool,
    group: &[PendingBatch],
    retry: RetrySettings,
) -> Result<(), sqlx::Error> {
    let records: Vec<&QueuedBatch> = group.iter().map(|p| &p.record).collect();
    let ids: Vec<Uuid> = records.iter().map(|r| r.batch_id).collect();
    let mut tx = pool.begin().await?;
    store::insert_queued_batches(&mut tx, &records).await?;
    // One sqlxmq job per batch, written straight into sqlxmq's tables rather than through
    // its mq_insert(), which also looks up the channel's latest message (for ordered
    // jobs, which ours are not) at 0.3 ms a call. The payload goes in the bytes column:
    // the JSON column would be parsed into jsonb here and printed back at each claim.
    // sqlxmq's runners wake on the 'mq' notification.
    sqlx::query!(
        "WITH jobs AS (
             SELECT * FROM UNNEST($1::uuid[], $2::bytea[]) AS j(id, payload)
         ), payloads AS (
             INSERT INTO mq_payloads (id, name, payload_bytes)
             SELECT id, $5, payload FROM jobs
         ), messages AS (
             INSERT INTO mq_msgs (id, attempt_at, attempts, retry_backoff, channel_name,
                                  channel_args, commit_interval, after_message_id)
             SELECT id, now(), $3, make_interval(secs => $4), '', '', NULL, NULL FROM jobs
         )
         SELECT pg_notify('mq', ''), mq_note_waiting()",
        &ids,
        &group
            .iter()
            .map(|p| p.payload.as_slice())
            .collect::<Vec<_>>() as &[&[u8]],
        retry.max_attempts as i32,
        retry.base_delay().as_secs_f64(),
        INGEST_JOB,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
