//! A real `pg_dump --format=custom` of the service's database while four clients keep
//! posting: the dump succeeds and is a usable archive (`pg_restore --list` lists the
//! event tables and their data), every request is accepted (a dump refuses nothing),
//! and everything accepted is stored exactly once. Nothing about speed is asserted: the
//! accepted and stored events per second before, during and after the dump are printed
//! (`--nocapture` shows them).
//!
//! A dump of a real database runs for minutes or hours, holding one snapshot and an
//! ACCESS SHARE lock on every table throughout; the test database is small, so its dump
//! would be over in a moment. The test makes it last by construction rather than by luck:
//! a table of its own, `dump_gate`, created after every table of the service (pg_dump
//! locks tables in the order they were created), which the test holds exclusively. So
//! pg_dump takes its snapshot, locks every table of the service and then waits at the
//! gate for as long as the test likes, and meanwhile a batch of today and a backfill
//! (a day without partitions, which the worker makes beside the dump's locks: migration
//! 9) must be accepted and stored. Released, the gate is also ballast: a few tens of MiB
//! that pg_dump copies and compresses under the load, as it would a real database.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::*;

/// One client per batch size; each posts, waits for the answer and posts again.
const BATCH_SIZES: [usize; 4] = [20, 30, 40, 50];
/// Events stored before the load starts, so that the event tables are not empty.
const PRELOAD_BATCHES: usize = 5;
const PRELOAD_EVENTS: usize = 1000;
/// Rows of the gate table (about 33 MiB, a second or two of pg_dump's work here).
const GATE_ROWS: u32 = 500_000;
const BEFORE: Duration = Duration::from_secs(3);
/// At least this long pg_dump waits at the gate, its snapshot taken and tables locked.
const HOLD: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(2);
/// The tables the service writes on every batch: pg_dump must hold them at the gate.
const SERVICE_TABLES: [&str; 4] = ["batches", "events", "mq_msgs", "mq_payloads"];

/// One answered request.
struct Answer {
    at: Instant,
    status: u16,
    events: usize,
}

/// What one poster saw.
#[derive(Default)]
struct Posted {
    ledger: Ledger,
    answers: Vec<Answer>,
    /// Anything but a 202, and transport errors.
    unexpected: Vec<String>,
}

/// A client that posts batches of `size` new events until `stop`, keeping the time of
/// every answer. (`spawn_client` of helpers.rs keeps no times.)
fn spawn_poster(
    http: reqwest::Client,
    url: String,
    size: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Posted> {
    tokio::spawn(async move {
        let mut posted = Posted::default();
        while !stop.load(Ordering::Relaxed) {
            let (body, ids) = new_batch(size);
            match http.post(&url).json(&body).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    posted.answers.push(Answer {
                        at: Instant::now(),
                        status,
                        events: size,
                    });
                    if status == 202 {
                        posted
                            .ledger
                            .accepted(accepted_batch_id(response).await, &ids);
                    } else {
                        let text = response.text().await.unwrap_or_default();
                        let shown: String = text.chars().take(300).collect();
                        posted.unexpected.push(format!("{status}: {shown}"));
                    }
                }
                Err(e) => posted.unexpected.push(format!("transport error: {e}")),
            }
        }
        posted
    })
}

/// A batch of `n` new custom events that happened `days_ago` days ago.
fn batch_of_days_ago(n: usize, days_ago: i64) -> (Value, Vec<Uuid>) {
    let at = time::OffsetDateTime::now_utc() - time::Duration::days(days_ago);
    let occurred_at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let session = Uuid::now_v7();
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut event = custom_event(*id, "player-backfill", session);
            event["occurred_at"] = json!(occurred_at);
            event
        })
        .collect();
    (json!({ "events": events }), ids)
}

/// pg_dump as a child process, its stderr in a file; killed on drop if still running.
struct PgDump {
    child: Child,
    stderr: PathBuf,
}

impl PgDump {
    fn spawn(database_url: &str, file: &Path, dir: &Path) -> Self {
        let program = pg_program("pg_dump");
        let stderr = dir.join("pg_dump.stderr");
        let child = Command::new(&program)
            .arg("--format=custom")
            .arg(format!("--file={}", file.display()))
            .arg(format!("--dbname={database_url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("create pg_dump's stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Self { child, stderr }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait pg_dump")
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("pg_dump exited early ({status}):\n{}", self.stderr());
        }
    }
}

impl Drop for PgDump {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How pg_dump's session stands in the test's database: whether it waits for the gate,
/// whether it holds a snapshot (its xmin), and which of `SERVICE_TABLES` it has locked.
async fn pg_dump_session(db: &TestDb) -> (bool, bool, Vec<String>) {
    sqlx::query_as(
        "SELECT coalesce(bool_or(NOT l.granted AND l.relation = 'dump_gate'::regclass), false),
                coalesce(bool_or(a.backend_xmin IS NOT NULL), false),
                coalesce(array_agg(l.relation::regclass::text ORDER BY l.relation::regclass::text)
                    FILTER (WHERE l.granted AND l.relation::regclass::text = ANY($1)), '{}')
         FROM pg_stat_activity AS a
         JOIN pg_locks AS l ON l.pid = a.pid AND l.locktype = 'relation'
                           AND l.database = (SELECT oid FROM pg_database
                                             WHERE datname = current_database())
         WHERE a.application_name = 'pg_dump' AND a.datname = current_database()",
    )
    .bind(&SERVICE_TABLES[..])
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// Requests and events accepted (answered 202) in `[from, to)`.
fn accepted_between(answers: &[Answer], from: Instant, to: Instant) -> (usize, usize) {
    answers
        .iter()
        .filter(|a| a.status == 202 && a.at >= from && a.at < to)
        .fold((0, 0), |(requests, events), a| {
            (requests + 1, events + a.events)
        })
}

fn per_sec(n: i64, from: Instant, to: Instant) -> f64 {
    n as f64 / (to - from).as_secs_f64()
}

async fn stored_events(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM events").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_during_load_succeeds_and_loses_nothing() {
    let db = TestDb::create().await;
    let mut server = Server::spawn("serve", &db.url, &[]).await;
    let mut worker = spawn_worker("worker", &db.url, &[]).await;
    let mut ledger = Ledger::default();

    // Events already stored (today's partitions made and written), then the gate: the
    // newest table, so the last that pg_dump locks.
    for _ in 0..PRELOAD_BATCHES {
        let (body, ids) = new_batch(PRELOAD_EVENTS);
        ledger.accepted(server.ingest(&body).await, &ids);
    }
    db.wait_until_drained(Duration::from_secs(60)).await;
    sqlx::query(&format!(
        "CREATE TABLE dump_gate AS
         SELECT g AS id, md5(g::text) AS filler FROM generate_series(1, {GATE_ROWS}) AS g"
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    let mut gate_conn = PgConnection::connect(&db.url).await.unwrap();
    let mut gate = gate_conn.begin().await.unwrap();
    sqlx::query("LOCK TABLE dump_gate IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *gate)
        .await
        .unwrap();

    // Load from here to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let posters: Vec<_> = BATCH_SIZES
        .iter()
        .map(|&size| {
            spawn_poster(
                server.http.clone(),
                server.url("/v1/events"),
                size,
                stop.clone(),
            )
        })
        .collect();
    let load_started = Instant::now();
    let stored_at_load = stored_events(&db).await;
    tokio::time::sleep(BEFORE).await;

    // The dump starts, takes its snapshot, locks the service's tables and waits at the gate.
    let dir = TempDir::new("dump");
    let file = dir.path().join("game_events.dump");
    let stored_at_dump = stored_events(&db).await;
    let dump_started = Instant::now();
    let mut dump = PgDump::spawn(&db.url, &file, dir.path());
    let held = wait_for(
        Duration::from_secs(30),
        "pg_dump to lock the tables and wait at the gate",
        || {
            dump.assert_running();
            let db = &db;
            async move {
                let (waiting, snapshot, tables) = pg_dump_session(db).await;
                waiting.then_some((snapshot, tables))
            }
        },
    )
    .await;
    let gate_reached = Instant::now();
    assert_eq!(
        held,
        (true, SERVICE_TABLES.map(str::to_owned).to_vec()),
        "(snapshot, locked tables) of pg_dump at the gate: it must have taken its snapshot \
         and locked the service's tables before the gate, the table created last"
    );

    // While pg_dump holds them, batches are accepted and stored: one of today's events,
    // and one of ten days ago, whose partitions do not exist yet.
    let (body, ids) = new_batch(20);
    let today = server.ingest(&body).await;
    ledger.accepted(today, &ids);
    let (body, ids) = batch_of_days_ago(20, 10);
    let backfill = server.ingest(&body).await;
    ledger.accepted(backfill, &ids);
    for batch in [today, backfill] {
        let row = db
            .wait_for_status(batch, "completed", Duration::from_secs(20))
            .await;
        assert_eq!(row.inserted, Some(20), "batch {batch}: {row:?}");
    }
    dump.assert_running();
    assert!(
        pg_dump_session(&db).await.0,
        "pg_dump still waits at the gate"
    );
    let stored_while_held = Instant::now() - gate_reached;
    tokio::time::sleep_until(gate_reached + HOLD).await;

    // Released, pg_dump copies everything (the gate's rows too) under the load.
    gate.rollback().await.unwrap();
    drop(gate_conn);
    let released = Instant::now();
    let stored_at_release = stored_events(&db).await;
    let status = wait_for(Duration::from_secs(120), "pg_dump to finish", || {
        let exited = dump.exited();
        async move { exited }
    })
    .await;
    let dump_ended = Instant::now();
    let stored_at_dump_end = stored_events(&db).await;

    // Load goes on a little after the dump, then stops.
    tokio::time::sleep(AFTER).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    let mut unexpected = Vec::new();
    for poster in posters {
        let posted = poster.await.unwrap();
        ledger.merge(posted.ledger);
        answers.extend(posted.answers);
        unexpected.extend(posted.unexpected);
    }
    let load_ended = Instant::now();
    let stored_at_end = stored_events(&db).await;

    // The report.
    let dump_bytes = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let phases = [
        (
            "before",
            load_started,
            dump_started,
            stored_at_load,
            stored_at_dump,
        ),
        (
            "during",
            dump_started,
            dump_ended,
            stored_at_dump,
            stored_at_dump_end,
        ),
        (
            "  held at the gate",
            dump_started,
            released,
            stored_at_dump,
            stored_at_release,
        ),
        (
            "  copying",
            released,
            dump_ended,
            stored_at_release,
            stored_at_dump_end,
        ),
        (
            "after",
            dump_ended,
            load_ended,
            stored_at_dump_end,
            stored_at_end,
        ),
    ];
    eprintln!(
        "pg_dump during load ({} clients, batches of {BATCH_SIZES:?} events): {status}, \
         {:.1} MiB in {:.2?} (held at the gate {:.2?}, copying {:.2?}); both batches posted \
         at the gate stored {stored_while_held:.2?} after it was reached",
        BATCH_SIZES.len(),
        dump_bytes as f64 / (1024.0 * 1024.0),
        dump_ended - dump_started,
        released - dump_started,
        dump_ended - released,
    );
    eprintln!(
        "  {:<18} {:>8} {:>9} {:>10} {:>15} {:>13}",
        "phase", "seconds", "requests", "accepted", "accepted ev/s", "stored ev/s"
    );
    for (name, from, to, stored_from, stored_to) in phases {
        let (requests, events) = accepted_between(&answers, from, to);
        eprintln!(
            "  {name:<18} {:>8.2} {requests:>9} {events:>10} {:>15.0} {:>13.0}",
            (to - from).as_secs_f64(),
            per_sec(events as i64, from, to),
            per_sec(stored_to - stored_from, from, to),
        );
    }

    // The dump: complete, and an archive that pg_restore reads, with the event tables in it.
    assert!(
        status.success(),
        "pg_dump failed ({status}):\n{}",
        dump.stderr()
    );
    assert!(dump_bytes > 0, "the dump file is empty");
    let listing = Command::new(pg_program("pg_restore"))
        .arg("--list")
        .arg(&file)
        .output()
        .expect("run pg_restore --list");
    let toc = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.status.success(),
        "pg_restore --list: {}",
        String::from_utf8_lossy(&listing.stderr)
    );
    // Entries look like `215; 1259 16391 TABLE public events postgres`.
    let entries: Vec<Vec<&str>> = toc
        .lines()
        .filter(|l| !l.starts_with(';'))
        .map(|l| l.split_whitespace().skip(3).collect())
        .collect();
    let has = |kind: &[&str], table: &dyn Fn(&str) -> bool| {
        entries.iter().any(|e| {
            e.len() == kind.len() + 3
                && e[..kind.len()] == *kind
                && e[kind.len()] == "public"
                && table(e[kind.len() + 1])
        })
    };
    for table in ["events", "batches", "custom_events"] {
        assert!(
            has(&["TABLE"], &|t| t == table),
            "no table {table} in the dump:\n{toc}"
        );
    }
    for (kind, table) in [
        (["TABLE", "DATA"], "events_g"),
        (["TABLE", "DATA"], "dump_gate"),
    ] {
        assert!(
            has(&kind, &|t| t.starts_with(table)),
            "no data of {table}* in the dump:\n{toc}"
        );
    }

    // The load: nothing refused, nothing lost, nothing stored twice.
    assert!(
        unexpected.is_empty(),
        "requests not accepted during the test: {:?}",
        &unexpected[..unexpected.len().min(10)]
    );
    db.wait_until_drained(Duration::from_secs(60)).await;
    db.assert_stored_exactly_once(&ledger).await;
    server.proc.assert_running();
    worker.assert_running();
    eprintln!(
        "{} batches, {} events accepted and stored exactly once",
        ledger.batches.len(),
        ledger.distinct.len()
    );
}
