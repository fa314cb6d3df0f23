//! Workers SIGKILLed mid-batch, again and again, under load: nothing accepted is lost,
//! nothing is stored twice, and a killed batch is claimed again once its lease runs out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::*;

/// The lease of a first attempt (and the first retry delay), short so that a killed
/// batch comes back quickly; it doubles with each attempt.
const LEASE_MS: u64 = 300;
const KILLS: usize = 12;

fn random_below(n: u64) -> u64 {
    (Uuid::new_v4().as_u128() % u128::from(n)) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sigkilled_mid_batch_again_and_again_lose_nothing_and_store_nothing_twice() {
    let db = TestDb::create().await;
    let lease = LEASE_MS.to_string();
    // Enough attempts that kills cannot use them up: a batch would need 20 kills.
    let server = Server::spawn(
        "serve",
        &db.url,
        &["--retry-base-delay-ms", &lease, "--max-attempts", "20"],
    )
    .await;
    let worker_args = ["--concurrency", "2"];
    let mut ledger = Ledger::default();

    // 1. Deterministically mid-batch: the test holds the players table, so the worker
    // blocks inside its transaction, after taking the job. Kill it there.
    let mut worker = spawn_worker("worker-a", &db.url, &worker_args).await;
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE players IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let (body, ids) = new_batch(20);
    let held = server.ingest(&body).await;
    ledger.accepted(held, &ids);
    let row = db
        .wait_for_status(held, "processing", Duration::from_secs(10))
        .await;
    assert_eq!(row.attempts, 1);
    wait_for(
        Duration::from_secs(10),
        "the worker to block on the players lock",
        || async { (waiting_on(&db, "players").await == 1).then_some(()) },
    )
    .await;
    worker.kill();
    // The killed worker's database session is still blocked; release it. It then finds
    // its client gone and rolls back, which puts the job back.
    lock.rollback().await.unwrap();
    let mut worker = spawn_worker("worker-b", &db.url, &worker_args).await;
    let row = db
        .wait_for_status(held, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(
        (row.attempts, row.inserted, row.duplicates),
        (2, Some(20), Some(0)),
        "the killed attempt left nothing behind and the second stored everything: {row:?}"
    );
    worker.kill();

    // 2. Under load: two clients keep posting while workers are SIGKILLed at random
    // moments (each time some batch is being processed) and restarted.
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let clients: Vec<_> = (0..2)
        .map(|_| {
            spawn_client(
                server.http.clone(),
                server.url("/v1/events"),
                stop.clone(),
                TrafficOptions {
                    events_per_batch: 40,
                    invalid_every: None,
                    outage_expected: false,
                    pause: Duration::ZERO,
                    deadline,
                },
            )
        })
        .collect();
    let mut workers = vec![
        spawn_worker("worker-0", &db.url, &worker_args).await,
        spawn_worker("worker-1", &db.url, &worker_args).await,
    ];
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(150 + random_below(450))).await;
        wait_for(
            Duration::from_secs(10),
            "a batch to be processing",
            || async {
                let processing = db
                    .scalar("SELECT count(*) FROM batches WHERE status = 'processing'")
                    .await;
                (processing > 0).then_some(())
            },
        )
        .await;
        let victim = random_below(2) as usize;
        workers[victim].assert_running();
        workers[victim].kill();
        workers[victim] =
            spawn_worker(&format!("worker-{victim}-{kill}"), &db.url, &worker_args).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut traffic = Traffic::default();
    for client in clients {
        traffic.merge(client.await.unwrap());
    }
    assert!(traffic.unexpected.is_empty(), "{:?}", traffic.unexpected);
    ledger.merge(traffic.ledger);

    db.wait_until_drained(Duration::from_secs(90)).await;
    for w in &mut workers {
        w.assert_running();
    }
    db.assert_stored_exactly_once(&ledger).await;
    let (retried, max_attempts): (i64, Option<i32>) =
        sqlx::query_as("SELECT count(*) FILTER (WHERE attempts > 1), max(attempts) FROM batches")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    eprintln!(
        "{} batches, {} distinct events ({} sent) accepted; {KILLS} kills under load; \
         {retried} batches needed more than one attempt (at most {max_attempts:?})",
        ledger.batches.len(),
        ledger.distinct.len(),
        ledger.sent
    );
    assert!(
        ledger.batches.len() > KILLS,
        "too little load to mean anything"
    );
}

/// How many sessions wait for a lock on `table`.
pub async fn waiting_on(db: &TestDb, table: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass",
    )
    .bind(table)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}
