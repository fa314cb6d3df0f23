//! A hung worker: a batch blocked for many multiples of its lease is never worked by two
//! workers at once, and is not taken over. It completes with one attempt once unblocked.
//!
//! Two places to hang, two mechanisms:
//! * before the worker takes the job (the test holds `mq_payloads`, which taking the job
//!   deletes from): nothing locks the job row then, so only the lease stops a second
//!   worker, and the worker must keep renewing it (src/worker/lease.rs);
//! * while writing the events (the test holds `players`): the worker has taken the job
//!   in its open transaction, so its row is locked and claims skip it.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::time::Instant;
use uuid::Uuid;

use crate::crash::waiting_on;
use crate::helpers::*;

/// Short, but with room for a late first renewal (at half the lease) on a busy CI machine.
const LEASE_MS: u64 = 500;
/// How long the batch is held: many leases.
const HOLD: Duration = Duration::from_millis(8 * LEASE_MS);

/// The job's lease as other sessions see it: (attempts left, seconds until it runs out).
async fn lease(db: &TestDb, job: Uuid) -> Option<(i32, f64)> {
    sqlx::query_as(
        "SELECT attempts, extract(epoch FROM attempt_at - now())::float8 FROM mq_msgs WHERE id = $1",
    )
    .bind(job)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

async fn hold_a_batch_for_many_leases(table: &str, lease_must_stay_ahead: bool) {
    let db = TestDb::create().await;
    let server = Server::spawn(
        "serve",
        &db.url,
        &[
            "--retry-base-delay-ms",
            &LEASE_MS.to_string(),
            "--max-attempts",
            "5",
        ],
    )
    .await;
    let (body, ids) = new_batch(25);
    let batch = server.ingest(&body).await;

    // Hold the table first, then start two workers: one claims the batch and hangs.
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN EXCLUSIVE MODE"))
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut workers = vec![
        spawn_worker("worker-0", &db.url, &["--concurrency", "1"]).await,
        spawn_worker("worker-1", &db.url, &["--concurrency", "1"]).await,
    ];
    let claimed = db
        .wait_for_status(batch, "processing", Duration::from_secs(10))
        .await;
    assert_eq!(claimed.attempts, 1);
    wait_for(Duration::from_secs(10), "the worker to block", || async {
        (waiting_on(&db, table).await == 1).then_some(())
    })
    .await;

    let until = Instant::now() + HOLD;
    let mut samples = 0;
    let mut min_ahead = f64::MAX;
    while Instant::now() < until {
        let row = db.batch(batch).await;
        assert_eq!(
            (row.status.as_str(), row.attempts),
            ("processing", 1),
            "taken over after {samples} samples: {row:?}"
        );
        assert_eq!(waiting_on(&db, table).await, 1, "two workers on one batch");
        let (_, ahead) = lease(&db, batch).await.expect("the job is queued");
        min_ahead = min_ahead.min(ahead);
        if lease_must_stay_ahead {
            assert!(
                ahead > 0.0,
                "the lease ran out ({ahead:.3} s) while the worker was alive"
            );
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in &mut workers {
        w.assert_running();
    }
    eprintln!(
        "{table} held {HOLD:?} ({} leases): {samples} samples, no takeover; lease at least {min_ahead:.3} s ahead",
        HOLD.as_millis() / u128::from(LEASE_MS)
    );

    lock.rollback().await.unwrap();
    let done = db
        .wait_for_status(batch, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(
        (done.attempts, done.inserted, done.duplicates),
        (1, Some(25), Some(0)),
        "{done:?}"
    );
    let mut ledger = Ledger::default();
    ledger.accepted(batch, &ids);
    db.assert_stored_exactly_once(&ledger).await;
}

#[tokio::test]
async fn a_batch_hung_before_its_job_is_taken_keeps_its_lease_and_is_not_taken_over() {
    hold_a_batch_for_many_leases("mq_payloads", true).await;
}

#[tokio::test]
async fn a_batch_hung_while_writing_is_never_worked_by_two_workers() {
    hold_a_batch_for_many_leases("players", false).await;
}
