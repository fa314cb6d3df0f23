//! The queue under concurrency and failure.

use std::collections::HashSet;
use std::time::Duration;

use app::config::RetrySettings;
use app::queue::failed::{self, Selection};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn two_workers_store_every_event_of_200_concurrent_batches_exactly_once() {
    let mut app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;

    // 200 batches of 25 events over 20 players and 40 sessions, so that batches contend
    // for the same player and session rows; one event in five is also sent in the next
    // batch, so that batches race to store the same events.
    let players: Vec<String> = (0..20).map(|i| format!("player-{i}")).collect();
    let sessions: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    let mut bodies = Vec::new();
    let mut previous: Vec<Value> = Vec::new();
    let mut distinct = HashSet::new();
    let mut total = 0;
    for b in 0..200 {
        let mut events: Vec<Value> = (0..20)
            .map(|i| {
                let id = Uuid::now_v7();
                distinct.insert(id);
                custom_event(id, &players[(b + i) % 20], sessions[(b * 3 + i) % 40])
            })
            .collect();
        events.extend(previous.iter().take(5).cloned());
        previous = events[..20].to_vec();
        total += events.len();
        bodies.push(json!({ "events": events }));
    }

    // Queue them all concurrently, then let two workers race through them.
    let batch_ids: Vec<Uuid> =
        futures_util::future::join_all(bodies.iter().map(|body| app.ingest(body))).await;
    assert_eq!(app.queued_jobs().await, 200);
    app.start_worker().await;
    app.start_worker().await;

    wait_for(
        Duration::from_secs(60),
        "every batch to complete",
        || async {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM batches WHERE status <> 'completed'")
                    .fetch_one(&app.pool)
                    .await
                    .unwrap();
            (left == 0).then_some(())
        },
    )
    .await;

    assert_eq!(app.count("events").await, distinct.len() as i64);
    assert_eq!(app.count("custom_events").await, distinct.len() as i64);
    assert_references_hold(&mut app.pool.acquire().await.unwrap()).await;
    let (inserted, duplicates, attempts): (i64, i64, i64) =
        sqlx::query_as("SELECT sum(inserted), sum(duplicates), sum(attempts) FROM batches")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        inserted,
        distinct.len() as i64,
        "each event inserted by exactly one batch"
    );
    assert_eq!(inserted + duplicates, total as i64);
    assert_eq!(
        attempts, 200,
        "no batch needed a second attempt (no deadlock, no lost claim)"
    );
    assert_eq!(app.count("players").await, 20);
    assert_eq!(app.count("sessions").await, 40);
    assert_eq!(app.queued_jobs().await, 0);
    for id in batch_ids {
        assert_eq!(app.batch(id).await["status"], "completed");
    }
}

/// Makes every batch holding an event of `player_id` fail in the database. The trigger is
/// ENABLE ALWAYS: the worker's transactions run in the replica role, where ordinary
/// triggers do not fire (`store::trust_own_references`).
async fn poison(app: &TestApp, player_id: &str) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION poison() RETURNS trigger AS $$
         BEGIN RAISE EXCEPTION 'poisoned player %', NEW.player_id; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW
         WHEN (NEW.player_id = '{player_id}') EXECUTE FUNCTION poison();
         ALTER TABLE events ENABLE ALWAYS TRIGGER poison;"
    ))
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_failing_batch_is_retried_with_backoff_ends_failed_and_can_be_requeued() {
    let base_ms = 200;
    let retry = RetrySettings {
        max_attempts: 3,
        retry_base_delay_ms: base_ms,
    };
    let app = TestApp::spawn_with(TestOptions {
        workers: 1,
        retry,
        ..Default::default()
    })
    .await;
    poison(&app, "poison").await;

    let event_id = Uuid::now_v7();
    let poisoned = app
        .ingest(&json!({ "events": [custom_event(event_id, "poison", Uuid::now_v7())] }))
        .await;
    // A healthy batch queued behind it is not held up.
    let healthy = queue_one_event(&app, "fine").await;

    // Watch the attempts start; each retry waits at least the doubled backoff. Polling
    // starts right after queueing, so each start is seen within a poll of when it happened.
    let mut started = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let batch = app.batch(poisoned).await;
        let attempts = batch["attempts"].as_u64().unwrap() as usize;
        while attempts > started.len() {
            started.push(Instant::now());
        }
        if attempts >= 2 {
            assert_eq!(
                app.batch(healthy).await["status"],
                "completed",
                "held up by the poisoned batch"
            );
        }
        if batch["status"] == "failed" {
            break batch;
        }
        assert!(
            Instant::now() < deadline,
            "the batch did not fail in time: {batch}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(failed["attempts"], 3);
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("poisoned player poison"),
        "{failed}"
    );
    assert_eq!(started.len(), 3);
    let poll_slack = Duration::from_millis(50);
    assert!(started[1] - started[0] + poll_slack >= Duration::from_millis(base_ms));
    assert!(started[2] - started[1] + poll_slack >= Duration::from_millis(2 * base_ms));

    // It stays failed: no further attempt, and the job is still in the database.
    tokio::time::sleep(Duration::from_millis(4 * base_ms)).await;
    assert_eq!(app.batch(poisoned).await["attempts"], 3);
    assert_eq!(app.queued_jobs().await, 1);
    let listed = failed::list(&app.pool).await.unwrap();
    assert_eq!(
        listed.iter().map(|b| b.batch_id).collect::<Vec<_>>(),
        [poisoned]
    );

    // Fix the cause, requeue through the CLI, and it is stored.
    sqlx::query("DROP TRIGGER poison ON events")
        .execute(&app.pool)
        .await
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_app"))
        .args(["failed", "retry", &poisoned.to_string()])
        .env("DATABASE_URL", &app.db_settings.database_url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("requeued {poisoned}")));
    let done = app
        .wait_for_status(poisoned, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["inserted"], 1);
    assert_eq!(done["attempts"], 4);
    let (status, _) = app.get_json(&format!("/v1/events/{event_id}")).await;
    assert_eq!(status, 200);
    assert!(failed::list(&app.pool).await.unwrap().is_empty());
}

#[tokio::test]
async fn failed_retry_leaves_batches_that_did_not_fail_alone() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let queued = queue_one_event(&app, "p").await;
    let retry = RetrySettings {
        max_attempts: 2,
        retry_base_delay_ms: 100,
    };
    let requeued = failed::retry(
        &app.pool,
        &Selection::Only(vec![queued, Uuid::now_v7()]),
        retry,
    )
    .await
    .unwrap();
    assert!(requeued.is_empty());
    assert!(failed::retry(&app.pool, &Selection::All, retry)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(app.batch(queued).await["status"], "queued");
}

async fn claim(conn: &mut PgConnection) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT id FROM mq_poll(NULL, 10) WHERE id IS NOT NULL")
        .fetch_all(conn)
        .await
        .unwrap()
}

/// Queues a batch of one event of `player`.
async fn queue_one_event(app: &TestApp, player: &str) -> Uuid {
    app.ingest(&json!({ "events": [custom_event(Uuid::now_v7(), player, Uuid::now_v7())] }))
        .await
}

/// Another session holding rows, as a worker does while it stores or completes a job.
struct RowHolder(PgConnection);

impl RowHolder {
    /// Locks the rows of `rows` (`TABLE WHERE …`) `FOR UPDATE` in an open transaction.
    async fn lock(database_url: &str, rows: &str) -> Self {
        let mut conn = PgConnection::connect(database_url).await.unwrap();
        sqlx::raw_sql(&format!("BEGIN; SELECT 1 FROM {rows} FOR UPDATE"))
            .execute(&mut conn)
            .await
            .unwrap();
        Self(conn)
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
    }
}

#[tokio::test]
async fn a_claim_skips_jobs_locked_by_another_worker_instead_of_waiting() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let first = queue_one_event(&app, "p").await;
    let second = queue_one_event(&app, "p").await;

    // Another worker holds the first job's row (as while it completes the job).
    let holder = RowHolder::lock(
        &app.db_settings.database_url,
        &format!("mq_msgs WHERE id = '{first}'"),
    )
    .await;

    // A claim that waited would hit the statement timeout.
    let mut claimer = PgConnection::connect(&app.db_settings.database_url)
        .await
        .unwrap();
    sqlx::query("SET statement_timeout = '2s'")
        .execute(&mut claimer)
        .await
        .unwrap();
    assert_eq!(claim(&mut claimer).await, [second]);
    assert_eq!(app.batch(second).await["status"], "processing");
    assert_eq!(app.batch(first).await["status"], "queued");
    holder.release().await;
    assert_eq!(claim(&mut claimer).await, [first]);
    assert!(
        claim(&mut claimer).await.is_empty(),
        "claimed jobs are leased, not claimable again"
    );
}

#[tokio::test]
async fn a_worker_lost_during_the_final_attempt_leaves_a_failed_batch_not_a_stranded_one() {
    let retry = RetrySettings {
        max_attempts: 1,
        retry_base_delay_ms: 100,
    };
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        retry,
        ..Default::default()
    })
    .await;
    let batch_id = queue_one_event(&app, "p").await;

    // A worker claims the batch and dies without a word.
    let mut conn = PgConnection::connect(&app.db_settings.database_url)
        .await
        .unwrap();
    assert_eq!(claim(&mut conn).await, [batch_id]);
    assert_eq!(app.batch(batch_id).await["status"], "processing");

    // Once the lease has run out, the next poll notices.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(claim(&mut conn).await.is_empty());
    let batch = app.batch(batch_id).await;
    assert_eq!(batch["status"], "failed");
    assert!(
        batch["last_error"]
            .as_str()
            .unwrap()
            .contains("final attempt"),
        "{batch}"
    );

    // And it can be requeued and stored.
    let mut app = app;
    failed::retry(&app.pool, &Selection::All, retry)
        .await
        .unwrap();
    app.start_worker().await;
    app.wait_for_status(batch_id, "completed", Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn a_poison_batch_in_a_group_fails_alone() {
    let retry = RetrySettings {
        max_attempts: 2,
        retry_base_delay_ms: 100,
    };
    let mut app = TestApp::spawn_with(TestOptions {
        workers: 0,
        retry,
        ..Default::default()
    })
    .await;
    poison(&app, "poison").await;
    // Queued while no worker runs, so that the worker claims them together.
    let mut healthy = Vec::new();
    for i in 0..20 {
        let player = if i == 7 { "poison" } else { "fine" };
        let id = queue_one_event(&app, player).await;
        if i != 7 {
            healthy.push(id);
        }
    }
    app.start_worker().await;
    wait_for(
        Duration::from_secs(20),
        "the poisoned batch to fail",
        || async {
            let failed: i64 =
                sqlx::query_scalar("SELECT count(*) FROM batches WHERE status = 'failed'")
                    .fetch_one(&app.pool)
                    .await
                    .unwrap();
            (failed == 1).then_some(())
        },
    )
    .await;
    for id in healthy {
        let batch = app.batch(id).await;
        assert_eq!(batch["status"], "completed");
        assert_eq!(
            batch["attempts"], 1,
            "a healthy batch paid for its poisoned neighbour: {batch}"
        );
    }
    assert_eq!(app.count("events").await, 19);
}

#[tokio::test]
async fn the_worker_vacuums_the_queue_tables() {
    let app = TestApp::spawn().await;
    let body = json!({"events": [custom_event(Uuid::now_v7(), "player-1", Uuid::now_v7())]});
    let batch_id = app.ingest(&body).await;
    app.wait_for_status(batch_id, "completed", Duration::from_secs(10))
        .await;
    // vacuum_count counts VACUUM commands, not autovacuum's runs.
    wait_for(
        Duration::from_secs(10),
        "the worker to vacuum mq_msgs and mq_payloads",
        || async {
            let vacuumed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_user_tables
                 WHERE relname IN ('mq_msgs', 'mq_payloads') AND vacuum_count > 0",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap();
            (vacuumed == 2).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_claim_that_took_every_due_job_tells_the_runner_to_wait_for_the_next() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        queue_one_event(&app, "p").await;
    }
    let mut conn = PgConnection::connect(&app.db_settings.database_url)
        .await
        .unwrap();
    // (job, seconds until the runner should poll again)
    let poll = |batch_size: i32| {
        sqlx::query_as::<_, (Option<Uuid>, f64)>(
            "SELECT id, extract(epoch FROM wait_time)::float8 FROM mq_poll(NULL, $1)",
        )
        .bind(batch_size)
    };

    // Two of three due jobs: there may be more, so poll again at once.
    let full = poll(2).fetch_all(&mut conn).await.unwrap();
    assert_eq!(full.len(), 2);
    assert!(
        full.iter().all(|&(id, wait)| id.is_some() && wait == 0.0),
        "{full:?}"
    );

    // The last one, of up to ten: nothing else is due until a lease runs out (1 s).
    let partial = poll(10).fetch_all(&mut conn).await.unwrap();
    assert_eq!(partial.len(), 1);
    let (id, wait) = partial[0];
    assert!(id.is_some());
    assert!((0.5..=1.0).contains(&wait), "wait {wait} s");
}

#[tokio::test]
async fn leases_are_renewed_in_one_call_once_half_has_run_out_and_locked_jobs_are_skipped() {
    let retry = RetrySettings {
        max_attempts: 3,
        retry_base_delay_ms: 400,
    };
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        retry,
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        queue_one_event(&app, "p").await;
    }
    let mut conn = PgConnection::connect(&app.db_settings.database_url)
        .await
        .unwrap();
    let held = claim(&mut conn).await;
    assert_eq!(held.len(), 3);
    let renew = || {
        sqlx::query_as::<_, (i64, f64)>(
            "SELECT renewed, extract(epoch FROM shortest_lease)::float8 FROM mq_renew_leases($1)",
        )
        .bind(&held)
    };
    let lease_left = |id: Uuid| {
        sqlx::query_scalar::<_, f64>(
            "SELECT extract(epoch FROM attempt_at - now())::float8 FROM mq_msgs WHERE id = $1",
        )
        .bind(id)
    };

    // Fresh leases (400 ms) are left alone.
    assert_eq!(renew().fetch_one(&mut conn).await.unwrap(), (0, 0.4));

    // Once more than half a lease has passed, all are renewed by one call, except the
    // one whose row another transaction holds (as while its worker stores it).
    let holder = RowHolder::lock(
        &app.db_settings.database_url,
        &format!("mq_msgs WHERE id = '{}'", held[0]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (renewed, _) = renew().fetch_one(&mut conn).await.unwrap();
    assert_eq!(renewed, 2);
    for &id in &held[1..] {
        let left = lease_left(id).fetch_one(&mut conn).await.unwrap();
        assert!(left > 0.3, "renewed to a whole lease, {left} s left");
    }
    let left = lease_left(held[0]).fetch_one(&mut conn).await.unwrap();
    assert!(left < 0.2, "the locked job keeps its lease, {left} s left");
    holder.release().await;
}

#[tokio::test]
async fn a_batch_blocked_while_storing_does_not_hold_up_the_next_ones() {
    let app = TestApp::spawn().await;
    let first = queue_one_event(&app, "blocked").await;
    app.wait_for_status(first, "completed", Duration::from_secs(10))
        .await;

    // Another transaction holds the player's row: the next batch of that player waits
    // for it in the middle of being stored.
    let holder = RowHolder::lock(
        &app.db_settings.database_url,
        "players WHERE player_id = 'blocked'",
    )
    .await;
    let blocked = queue_one_event(&app, "blocked").await;
    app.wait_for_status(blocked, "processing", Duration::from_secs(10))
        .await;

    // The worker goes on claiming and storing other batches meanwhile.
    for player in ["free-1", "free-2"] {
        let other = queue_one_event(&app, player).await;
        app.wait_for_status(other, "completed", Duration::from_secs(10))
            .await;
    }
    assert_eq!(app.batch(blocked).await["status"], "processing");

    holder.release().await;
    app.wait_for_status(blocked, "completed", Duration::from_secs(10))
        .await;
}
