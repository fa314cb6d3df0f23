//! Graceful shutdown of real processes on SIGTERM and SIGINT: `serve` stops accepting
//! connections, finishes in-flight requests within its grace period and exits 0; `work`
//! stops claiming, finishes its running batches (or, past its grace period, abandons them
//! to be retried) and exits 0; `run` does both.
//!
//! Requests and batches are held in flight by locks the test holds: `batches` blocks
//! queueing a request, `players` blocks writing a batch.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::crash::waiting_on;
use crate::helpers::*;

/// Slack for a busy machine on top of a grace period.
const SLACK: Duration = Duration::from_secs(3);

async fn lock_table<'c>(conn: &'c mut PgConnection, table: &str) -> Transaction<'c, Postgres> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN EXCLUSIVE MODE"))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

async fn refuses_connections(addr: SocketAddr) {
    wait_for(
        Duration::from_secs(5),
        "new connections to be refused",
        || async {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

fn assert_exit_0(status: Option<ExitStatus>, proc: &Proc, within: Duration) {
    let status = status.unwrap_or_else(|| {
        panic!(
            "{} did not exit within {within:?}:\n{}",
            proc.name,
            proc.log_tail(30)
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "{} exited {status}:\n{}",
        proc.name,
        proc.log_tail(30)
    );
}

async fn serve_finishes_in_flight_requests(signal: i32) {
    let db = TestDb::create().await;
    let grace = Duration::from_secs(5);
    let mut server = Server::spawn("serve", &db.url, &["--shutdown-grace-secs", "5"]).await;
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    let lock = lock_table(&mut locker, "batches").await;

    let (body, ids) = new_batch(10);
    let in_flight = tokio::spawn(
        server
            .http
            .post(server.url("/v1/events"))
            .json(&body)
            .send(),
    );
    wait_for(
        Duration::from_secs(10),
        "the request to be queueing",
        || async { (waiting_on(&db, "batches").await == 1).then_some(()) },
    )
    .await;
    server.proc.signal(signal);
    refuses_connections(server.addr).await;
    server.proc.assert_running();

    lock.rollback().await.unwrap();
    let released = Instant::now();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    let batch_id = accepted_batch_id(response).await;
    let status = server.proc.wait_exit(grace + SLACK).await;
    assert_exit_0(status, &server.proc, grace + SLACK);
    eprintln!(
        "serve: in-flight request answered and exited {:?} after the release",
        released.elapsed()
    );
    let row = db.batch(batch_id).await;
    assert_eq!(
        (row.status.as_str(), row.accepted),
        ("queued", ids.len() as i32)
    );
    assert_eq!(db.counts().await.jobs, 1);
}

#[tokio::test]
async fn serve_finishes_in_flight_requests_on_sigterm_and_exits_0() {
    serve_finishes_in_flight_requests(libc::SIGTERM).await;
}

#[tokio::test]
async fn serve_finishes_in_flight_requests_on_sigint_and_exits_0() {
    serve_finishes_in_flight_requests(libc::SIGINT).await;
}

#[tokio::test]
async fn serve_cuts_off_requests_that_outlast_the_grace_period_without_queueing_them() {
    let db = TestDb::create().await;
    let grace = Duration::from_secs(1);
    let mut server = Server::spawn("serve", &db.url, &["--shutdown-grace-secs", "1"]).await;
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    let lock = lock_table(&mut locker, "batches").await;

    let (body, _) = new_batch(10);
    let in_flight = tokio::spawn(
        server
            .http
            .post(server.url("/v1/events"))
            .json(&body)
            .send(),
    );
    wait_for(
        Duration::from_secs(10),
        "the request to be queueing",
        || async { (waiting_on(&db, "batches").await == 1).then_some(()) },
    )
    .await;
    let signalled = Instant::now();
    server.proc.signal(libc::SIGTERM);
    let status = server.proc.wait_exit(grace + SLACK).await;
    assert_exit_0(status, &server.proc, grace + SLACK);
    let took = signalled.elapsed();
    assert!(
        took >= grace,
        "exited after {took:?}, before the grace period ran out"
    );
    let outcome = in_flight.await.unwrap();
    assert!(
        outcome.is_err(),
        "a cut-off request got an answer: {outcome:?}"
    );

    // Its database session, orphaned and still waiting, rolls back once released: the
    // client got no 202, and nothing was queued.
    lock.rollback().await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the orphaned session to end",
        || async {
            let sessions = db
                .scalar(
                    "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'game-events' AND datname = current_database()",
                )
                .await;
            (sessions == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        db.counts().await,
        Counts {
            batches: 0,
            jobs: 0,
            events: 0
        }
    );
}

async fn work_finishes_its_running_batch(signal: i32) {
    let db = TestDb::create().await;
    let server = Server::spawn("serve", &db.url, &[]).await;
    let mut worker = spawn_worker(
        "worker",
        &db.url,
        &["--concurrency", "4", "--worker-shutdown-grace-secs", "10"],
    )
    .await;
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    let lock = lock_table(&mut locker, "players").await;
    let (body, ids) = new_batch(10);
    let running = server.ingest(&body).await;
    db.wait_for_status(running, "processing", Duration::from_secs(10))
        .await;
    wait_for(
        Duration::from_secs(10),
        "the batch to be writing",
        || async { (waiting_on(&db, "players").await == 1).then_some(()) },
    )
    .await;

    worker.signal(signal);
    worker
        .wait_for_log("waiting for running batches", Duration::from_secs(5))
        .await;
    // It claims nothing new, though it has free slots.
    let (body, later_ids) = new_batch(10);
    let later = server.ingest(&body).await;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let row = db.batch(later).await;
        assert_eq!(
            (row.status.as_str(), row.attempts),
            ("queued", 0),
            "claimed while stopping"
        );
        worker.assert_running();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    lock.rollback().await.unwrap();
    let done = db
        .wait_for_status(running, "completed", Duration::from_secs(10))
        .await;
    assert_eq!((done.attempts, done.inserted), (1, Some(10)));
    let within = Duration::from_secs(5);
    let status = worker.wait_exit(within).await;
    assert_exit_0(status, &worker, within);
    let row = db.batch(later).await;
    assert_eq!((row.status.as_str(), row.attempts), ("queued", 0));

    // The batch it left is still there for the next worker.
    let _next = spawn_worker("next-worker", &db.url, &[]).await;
    db.wait_until_drained(Duration::from_secs(10)).await;
    let mut ledger = Ledger::default();
    ledger.accepted(running, &ids);
    ledger.accepted(later, &later_ids);
    db.assert_stored_exactly_once(&ledger).await;
}

#[tokio::test]
async fn work_finishes_its_running_batch_on_sigterm_claims_nothing_new_and_exits_0() {
    work_finishes_its_running_batch(libc::SIGTERM).await;
}

#[tokio::test]
async fn work_finishes_its_running_batch_on_sigint_claims_nothing_new_and_exits_0() {
    work_finishes_its_running_batch(libc::SIGINT).await;
}

#[tokio::test]
async fn work_abandons_a_batch_that_outlasts_the_grace_period_and_another_worker_stores_it() {
    let db = TestDb::create().await;
    let server = Server::spawn("serve", &db.url, &["--retry-base-delay-ms", "300"]).await;
    let mut worker = spawn_worker("worker", &db.url, &["--worker-shutdown-grace-secs", "1"]).await;
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    let lock = lock_table(&mut locker, "players").await;
    let (body, ids) = new_batch(10);
    let batch = server.ingest(&body).await;
    wait_for(
        Duration::from_secs(10),
        "the batch to be writing",
        || async { (waiting_on(&db, "players").await == 1).then_some(()) },
    )
    .await;

    let signalled = Instant::now();
    worker.signal(libc::SIGTERM);
    let within = Duration::from_secs(1) + SLACK;
    let status = worker.wait_exit(within).await;
    assert_exit_0(status, &worker, within);
    assert!(signalled.elapsed() >= Duration::from_secs(1));
    assert!(
        worker.log().contains("abandoned=1"),
        "{}",
        worker.log_tail(10)
    );

    lock.rollback().await.unwrap();
    let _next = spawn_worker("next-worker", &db.url, &[]).await;
    let done = db
        .wait_for_status(batch, "completed", Duration::from_secs(15))
        .await;
    assert_eq!((done.attempts, done.inserted), (2, Some(10)), "{done:?}");
    let mut ledger = Ledger::default();
    ledger.accepted(batch, &ids);
    db.assert_stored_exactly_once(&ledger).await;
}

/// `app run`: one signal stops both halves. An upload in progress (half its body sent)
/// is finished and answered, the running batch is finished, nothing new is claimed.
#[tokio::test]
async fn run_finishes_its_requests_and_its_batches_on_sigterm_and_exits_0() {
    let db = TestDb::create().await;
    let mut run = Server::spawn(
        "run",
        &db.url,
        &[
            "--shutdown-grace-secs",
            "10",
            "--worker-shutdown-grace-secs",
            "10",
        ],
    )
    .await;
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    let lock = lock_table(&mut locker, "players").await;
    let (body, ids) = new_batch(10);
    let running = run.ingest(&body).await;
    wait_for(
        Duration::from_secs(10),
        "the batch to be writing",
        || async { (waiting_on(&db, "players").await == 1).then_some(()) },
    )
    .await;

    // A request whose body is half uploaded.
    let (body, upload_ids) = new_batch(10);
    let body = body.to_string();
    let mut upload = tokio::net::TcpStream::connect(run.addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        run.addr,
        run.ingest_key,
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    upload.write_all(head.as_bytes()).await.unwrap();
    upload.write_all(first).await.unwrap();
    upload.flush().await.unwrap();
    // (Give the server a moment to read the head: there is nothing to poll for.)
    tokio::time::sleep(Duration::from_millis(200)).await;

    run.proc.signal(libc::SIGTERM);
    refuses_connections(run.addr).await;
    run.proc.assert_running();
    upload.write_all(rest).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), upload.read_to_end(&mut response))
        .await
        .expect("the upload is answered")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    let json: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let uploaded = json["batch_id"].as_str().unwrap().parse().unwrap();

    lock.rollback().await.unwrap();
    let done = db
        .wait_for_status(running, "completed", Duration::from_secs(10))
        .await;
    assert_eq!((done.attempts, done.inserted), (1, Some(10)));
    let within = Duration::from_secs(5);
    let status = run.proc.wait_exit(within).await;
    assert_exit_0(status, &run.proc, within);
    let row = db.batch(uploaded).await;
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("queued", 0),
        "claimed while stopping"
    );

    let _next = spawn_worker("next-worker", &db.url, &[]).await;
    db.wait_until_drained(Duration::from_secs(10)).await;
    let mut ledger = Ledger::default();
    ledger.accepted(running, &ids);
    ledger.accepted(uploaded, &upload_ids);
    db.assert_stored_exactly_once(&ledger).await;
}
