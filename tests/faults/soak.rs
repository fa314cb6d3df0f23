//! Soak (ignored by default; `just soak`): SOAK_SECS (default 600) of mixed valid and
//! invalid traffic while a worker is SIGKILLed every SOAK_KILL_EVERY_SECS (default 60).
//! At the end: stored events equal accepted events, the memory of the server and of the
//! worker that is never killed has stopped growing, and the queue tables are not
//! bloating. It runs on a cluster of its own with PostgreSQL's default settings
//! (autovacuum on), since the shared test server may run without autovacuum.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::helpers::*;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

const MIB: i64 = 1024 * 1024;

#[derive(Debug, sqlx::FromRow)]
struct TableStats {
    relname: String,
    n_live_tup: i64,
    n_dead_tup: i64,
    total_bytes: i64,
    autovacuums: i64,
}

async fn table_stats(db: &TestDb) -> Vec<TableStats> {
    sqlx::query_as(
        "SELECT relname::text, n_live_tup, n_dead_tup, pg_total_relation_size(relid) AS total_bytes,
                autovacuum_count AS autovacuums
         FROM pg_stat_user_tables
         WHERE relname IN ('mq_msgs', 'mq_payloads', 'batches', 'events')
         ORDER BY relname",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

fn print_stats(when: &str, stats: &[TableStats]) {
    eprintln!("tables {when}:");
    for t in stats {
        eprintln!(
            "  {:<12} live {:>9}  dead {:>9}  total {:>8.2} MiB  autovacuums {}",
            t.relname,
            t.n_live_tup,
            t.n_dead_tup,
            t.total_bytes as f64 / MIB as f64,
            t.autovacuums
        );
    }
}

async fn queue_bytes(db: &TestDb) -> i64 {
    db.scalar("SELECT pg_total_relation_size('mq_msgs') + pg_total_relation_size('mq_payloads')")
        .await
}

/// Whether a series has stopped growing: the peak of its last third is at most the peak of
/// its middle third plus `tolerance` (a fraction of it) plus `floor`.
fn stopped_growing(samples: &[i64], tolerance: f64, floor: i64) -> Result<(), String> {
    let third = samples.len() / 3;
    if third == 0 {
        return Err(format!("too few samples: {}", samples.len()));
    }
    let middle = *samples[third..2 * third].iter().max().unwrap();
    let last = *samples[2 * third..].iter().max().unwrap();
    let allowed = middle + (middle as f64 * tolerance) as i64 + floor;
    if last <= allowed {
        Ok(())
    } else {
        Err(format!(
            "peak of the last third {last} > {allowed} (middle third's peak {middle})"
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak: SOAK_SECS (default 600) long; run it with `just soak`"]
async fn soak() {
    let duration = env_secs("SOAK_SECS", 600);
    let kill_every = env_secs("SOAK_KILL_EVERY_SECS", 60);
    let sample_every = (duration / 60).max(Duration::from_secs(1));
    eprintln!(
        "soak: {duration:?}, a worker killed every {kill_every:?}, sampling every {sample_every:?}"
    );

    let cluster = Cluster::init();
    let db = TestDb::create_on(&cluster.server_url()).await;
    let mut server = Server::spawn(
        "serve",
        &db.url,
        &["--retry-base-delay-ms", "500", "--max-attempts", "20"],
    )
    .await;
    // One worker lives throughout (its memory is watched); the other is killed again and again.
    let mut steady = spawn_worker("steady-worker", &db.url, &[]).await;
    let mut victim = spawn_worker("victim-0", &db.url, &[]).await;
    let before = table_stats(&db).await;
    print_stats("before", &before);

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            spawn_client(
                server.http.clone(),
                server.url("/v1/events"),
                stop.clone(),
                TrafficOptions {
                    events_per_batch: 10,
                    invalid_every: Some(5),
                    outage_expected: false,
                    pause: Duration::from_millis(20),
                    deadline: started + duration + Duration::from_secs(60),
                },
            )
        })
        .collect();

    let mut server_rss = Vec::new();
    let mut worker_rss = Vec::new();
    let mut queue_sizes = Vec::new();
    let mut kills = 0;
    let mut next_kill = started + kill_every;
    let mut next_sample = started;
    while started.elapsed() < duration {
        let now = Instant::now();
        if now >= next_sample {
            server.proc.assert_running();
            steady.assert_running();
            server_rss.push(server.proc.memory_kib("VmRSS").unwrap() as i64);
            worker_rss.push(steady.memory_kib("VmRSS").unwrap() as i64);
            queue_sizes.push(queue_bytes(&db).await);
            next_sample += sample_every;
        }
        if now >= next_kill {
            victim.assert_running();
            victim.kill();
            kills += 1;
            victim = spawn_worker(&format!("victim-{kills}"), &db.url, &[]).await;
            next_kill += kill_every;
        }
        let next = next_sample.min(next_kill).min(started + duration);
        tokio::time::sleep_until(next.max(Instant::now() + Duration::from_millis(10))).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut traffic = Traffic::default();
    for client in clients {
        traffic.merge(client.await.unwrap());
    }
    eprintln!(
        "traffic: {:?}, {} transport errors; {kills} workers killed",
        traffic.statuses, traffic.transport_errors
    );
    assert!(
        traffic.unexpected.is_empty(),
        "{:?}",
        &traffic.unexpected[..traffic.unexpected.len().min(10)]
    );

    db.wait_until_drained(Duration::from_secs(300)).await;
    db.assert_stored_exactly_once(&traffic.ledger).await;
    eprintln!(
        "stored: {} batches, {} distinct events ({} sent) in {:?}",
        traffic.ledger.batches.len(),
        traffic.ledger.distinct.len(),
        traffic.ledger.sent,
        started.elapsed()
    );

    eprintln!("server VmRSS KiB: {server_rss:?}");
    eprintln!("steady worker VmRSS KiB: {worker_rss:?}");
    eprintln!(
        "queue tables (mq_msgs + mq_payloads) KiB: {:?}",
        queue_sizes.iter().map(|b| b / 1024).collect::<Vec<_>>()
    );
    // Statistics are flushed within a second or so of a transaction's end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = table_stats(&db).await;
    print_stats("after the drain", &after);

    let mut failures = Vec::new();
    if let Err(e) = stopped_growing(&server_rss, 0.10, 8 * 1024) {
        failures.push(format!("the server's memory keeps growing: {e}"));
    }
    if let Err(e) = stopped_growing(&worker_rss, 0.10, 8 * 1024) {
        failures.push(format!("the worker's memory keeps growing: {e}"));
    }
    if let Err(e) = stopped_growing(&queue_sizes, 0.25, 2 * MIB) {
        failures.push(format!("the queue tables keep growing: {e}"));
    }
    let queue_after = queue_bytes(&db).await;
    if queue_after > 32 * MIB {
        failures.push(format!(
            "the queue tables take {} MiB after the drain",
            queue_after / MIB
        ));
    }
    let live_jobs = db.jobs().await;
    if live_jobs != 0 {
        failures.push(format!("{live_jobs} jobs left"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
