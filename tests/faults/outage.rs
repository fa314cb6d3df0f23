//! The database stops (fast, then immediate) and comes back: the API answers 503 with
//! Retry-After quickly instead of hanging or failing with 500, recovers by itself, the
//! worker processes survive and resume, and nothing accepted is lost or stored twice.
//! The test runs its own throwaway cluster, so stopping it disturbs no other test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use tokio::time::Instant;

use crate::helpers::*;

/// How long a request may take to be refused while the database is down.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Checks the API's answers while the database is down.
async fn answers_503_quickly(server: &Server) {
    let (body, _) = new_batch(5);
    let requests = [
        (
            "POST /v1/events",
            server.http.post(server.url("/v1/events")).json(&body),
        ),
        ("GET /readyz", server.http.get(server.url("/readyz"))),
        (
            "GET /v1/batches/{id}",
            server
                .http
                .get(server.url(&format!("/v1/batches/{}", uuid::Uuid::now_v7())))
                .bearer_auth(&server.read_key),
        ),
    ];
    for (what, request) in requests {
        let started = Instant::now();
        let response = request
            .timeout(ANSWER_WITHIN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what} with the database down: no answer ({e})"));
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let text = response.text().await.unwrap_or_default();
        eprintln!("database down: {what} -> {status} in {elapsed:?} (Retry-After {retry_after:?})");
        assert_eq!(status, 503, "{what} with the database down: {text}");
        assert!(elapsed < ANSWER_WITHIN, "{what} took {elapsed:?}");
        if what.starts_with("POST") {
            assert!(retry_after.is_some_and(|s| s > 0), "{what}: no Retry-After");
            assert!(text.contains("/problems/unavailable"), "{text}");
        }
    }
    let healthz = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        healthz.status(),
        200,
        "liveness does not depend on the database"
    );
}

/// Posts until the API accepts again; every answer before must be a 503.
async fn recovers(server: &Server, ledger: &mut Ledger, within: Duration) {
    let started = Instant::now();
    let mut refusals = 0;
    loop {
        let (body, ids) = new_batch(5);
        let response = server
            .post(&body)
            .await
            .expect("an answer while recovering");
        match response.status().as_u16() {
            202 => {
                ledger.accepted(accepted_batch_id(response).await, &ids);
                break;
            }
            503 => {
                ledger.unsure(&ids);
                refusals += 1;
            }
            other => panic!(
                "while recovering: {other} {}",
                response.text().await.unwrap_or_default()
            ),
        }
        assert!(
            started.elapsed() < within,
            "the API did not recover within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let readyz = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    eprintln!(
        "recovered {:?} after the restart ({refusals} 503s before)",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_rides_out_a_database_outage_and_loses_nothing() {
    let cluster = Cluster::init();
    let db = TestDb::create_on(&cluster.server_url()).await;
    let mut server = Server::spawn(
        "serve",
        &db.url,
        &[
            "--acquire-timeout-ms",
            "2000",
            "--retry-base-delay-ms",
            "300",
            "--max-attempts",
            "20",
        ],
    )
    .await;
    let mut worker = spawn_worker("worker", &db.url, &["--acquire-timeout-ms", "2000"]).await;
    let worker_pid = worker.pid();
    let mut ledger = Ledger::default();

    // Before: batches stored, and a burst queued just before the stop.
    for _ in 0..5 {
        let (body, ids) = new_batch(20);
        ledger.accepted(server.ingest(&body).await, &ids);
    }
    db.wait_until_drained(Duration::from_secs(30)).await;
    for _ in 0..10 {
        let (body, ids) = new_batch(50);
        ledger.accepted(server.ingest(&body).await, &ids);
    }

    // 1. A fast stop (sessions are terminated, new ones refused).
    let log_before = worker.log().lines().count();
    cluster.stop("fast");
    answers_503_quickly(&server).await;
    server.proc.assert_running();
    worker.assert_running();
    cluster.start();
    recovers(&server, &mut ledger, Duration::from_secs(30)).await;
    let outage_log: Vec<String> = worker
        .log()
        .lines()
        .skip(log_before)
        .map(str::to_owned)
        .collect();
    eprintln!("the worker during the outage:\n{}", outage_log.join("\n"));
    assert!(
        outage_log
            .iter()
            .any(|l| l.contains("ERROR") || l.contains("WARN")),
        "the worker logged nothing about the outage"
    );

    // 2. An immediate stop (a crash, as far as PostgreSQL knows) under load.
    let stop = Arc::new(AtomicBool::new(false));
    let client = spawn_client(
        server.http.clone(),
        server.url("/v1/events"),
        stop.clone(),
        TrafficOptions {
            events_per_batch: 30,
            invalid_every: None,
            outage_expected: true,
            pause: Duration::from_millis(5),
            deadline: Instant::now() + Duration::from_secs(90),
        },
    );
    wait_for(Duration::from_secs(10), "load to be processed", || async {
        let completed = db
            .scalar("SELECT count(*) FROM batches WHERE status = 'completed'")
            .await;
        (completed > 30).then_some(())
    })
    .await;
    cluster.stop("immediate");
    answers_503_quickly(&server).await;
    cluster.start();
    recovers(&server, &mut ledger, Duration::from_secs(30)).await;
    // Keep the load up a little after the recovery, then stop it.
    wait_for(
        Duration::from_secs(30),
        "load after the restart",
        || async {
            let completed_since = db
                .scalar(
                    "SELECT count(*) FROM batches WHERE completed_at > now() - interval '1 second'",
                )
                .await;
            (completed_since > 5).then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let traffic = client.await.unwrap();
    eprintln!(
        "client during the immediate stop: {:?}, {} transport errors",
        traffic.statuses, traffic.transport_errors
    );
    assert!(traffic.unexpected.is_empty(), "{:?}", traffic.unexpected);
    ledger.merge(traffic.ledger);

    // Everything accepted before, during and after is stored, once; the same worker
    // process did it.
    db.wait_until_drained(Duration::from_secs(60)).await;
    db.assert_stored_exactly_once(&ledger).await;
    worker.assert_running();
    server.proc.assert_running();
    assert_eq!(worker.pid(), worker_pid);
    eprintln!(
        "{} batches accepted ({} requests with an unknown outcome)",
        ledger.batches.len(),
        ledger.unsure_requests
    );
}

/// After a long outage, with no new traffic to wake anyone, the worker picks up the
/// batches that were queued before the outage by itself, promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_long_outage_the_worker_resumes_the_queue_without_new_traffic() {
    resumes_after_an_outage(Duration::from_secs(20), "1000").await;
}

/// sqlxmq's poll loop panics (debug builds) after 64 consecutive failed polls, which
/// left a live worker that never claimed again; the worker's supervisor restarts it.
/// With 100 ms acquire timeouts that takes about 70 s of outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "about 100 s: an outage longer than 64 failed polls"]
async fn after_an_outage_longer_than_64_failed_polls_the_worker_still_resumes() {
    resumes_after_an_outage(Duration::from_secs(90), "100").await;
}

async fn resumes_after_an_outage(outage: Duration, acquire_timeout_ms: &str) {
    const RESUME_WITHIN: Duration = Duration::from_secs(10);
    let cluster = Cluster::init();
    let db = TestDb::create_on(&cluster.server_url()).await;
    let server = Server::spawn(
        "serve",
        &db.url,
        &["--retry-base-delay-ms", "300", "--max-attempts", "20"],
    )
    .await;
    let mut worker = spawn_worker(
        "worker",
        &db.url,
        &[
            "--acquire-timeout-ms",
            acquire_timeout_ms,
            "--concurrency",
            "4",
        ],
    )
    .await;
    let worker_pid = worker.pid();

    // Three batches in the worker's hands, blocked mid-write, when the database stops.
    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE players IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut ledger = Ledger::default();
    for _ in 0..3 {
        let (body, ids) = new_batch(10);
        ledger.accepted(server.ingest(&body).await, &ids);
    }
    // All three claimed, and the worker blocked writing them (in one group transaction
    // or several, as its processors happened to take them).
    wait_for(
        Duration::from_secs(10),
        "the worker to claim all three and block on them",
        || async {
            let processing: i64 =
                sqlx::query_scalar("SELECT count(*) FROM batches WHERE status = 'processing'")
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            let blocked = crate::crash::waiting_on(&db, "players").await >= 1;
            (processing == 3 && blocked).then_some(())
        },
    )
    .await;
    cluster.stop("fast");
    drop(lock);
    drop(locker);

    // A long outage: its length, not a condition, is the point.
    tokio::time::sleep(outage).await;
    worker.assert_running();
    cluster.start();
    let restarted = Instant::now();

    // Nobody posts anything: the worker must notice by itself.
    let resumed =
        tokio::time::timeout(RESUME_WITHIN, db.wait_until_drained(RESUME_WITHIN * 2)).await;
    let stuck: Vec<(String, i32)> =
        sqlx::query_as("SELECT status, attempts FROM batches WHERE status <> 'completed'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(
        resumed.is_ok(),
        "{} batches still not completed {RESUME_WITHIN:?} after the database came back: {stuck:?}\n{}",
        stuck.len(),
        worker.log_tail(15)
    );
    eprintln!(
        "the queue drained {:?} after the restart",
        restarted.elapsed()
    );
    worker.assert_running();
    assert_eq!(worker.pid(), worker_pid);
    db.assert_stored_exactly_once(&ledger).await;
}
