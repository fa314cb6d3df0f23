//! Partitions and retention (migration 9): events land in a partition per game and UTC
//! day whatever their day, a resend is stored once across a partition boundary, old days
//! go by dropping partitions, and what nothing refers to any more is pruned.

use std::time::Duration;

use app::config::RetentionSettings;
use app::domain::GameId;
use app::maintenance::{self, RETENTION_LOCK};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::helpers::*;

const WITHIN: Duration = Duration::from_secs(20);

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

async fn test_game(app: &TestApp) -> GameId {
    GameId(
        sqlx::query_scalar("SELECT game_id FROM games WHERE name = $1")
            .bind(TEST_GAME)
            .fetch_one(&app.pool)
            .await
            .unwrap(),
    )
}

/// Posts `events` as one batch and waits for it to be stored; returns the batch's status.
async fn store(app: &TestApp, events: &[Value]) -> Value {
    let batch_id = app.ingest(&json!({ "events": events })).await;
    app.wait_for_status(batch_id, "completed", WITHIN).await
}

async fn event_status(app: &TestApp, event_id: Uuid) -> (u16, Value) {
    app.get_json(&format!("/v1/events/{event_id}")).await
}

/// One retention pass as of `now`, with `default_days` for games without their own.
async fn retention_pass(
    app: &TestApp,
    default_days: Option<u32>,
    now: OffsetDateTime,
) -> maintenance::RetentionReport {
    maintenance::retention_pass(&app.pool, default_days, now)
        .await
        .unwrap()
}

async fn partition_days(app: &TestApp) -> Vec<Date> {
    sqlx::query_scalar("SELECT day FROM event_partitions ORDER BY day")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_resend_across_a_partition_boundary_is_stored_once() {
    let app = TestApp::spawn().await;
    let midnight = today().midnight().assume_utc();
    let before = midnight - time::Duration::milliseconds(1);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = [
        full_event("progression", a, "p-1", SESSION, &rfc3339(before)),
        full_event("purchase", b, "p-1", SESSION, &rfc3339(midnight)),
    ];

    let first = store(&app, &batch).await;
    assert_eq!(
        (first["inserted"].clone(), first["duplicates"].clone()),
        (json!(2), json!(0))
    );
    // Each in its own day's partition.
    let days: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT event_id, tableoid::regclass::text FROM events ORDER BY client_occurred_at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(days.len(), 2);
    assert_ne!(days[0].1, days[1].1, "both in one partition: {days:?}");

    // The client resends the batch as it was (it never saw the 202): nothing new.
    let resent = store(&app, &batch).await;
    assert_eq!(
        (resent["inserted"].clone(), resent["duplicates"].clone()),
        (json!(0), json!(2))
    );
    assert_eq!(app.count("events").await, 2);
    assert_eq!(app.count("progression_events").await, 1);
    assert_eq!(app.count("purchase_events").await, 1);

    // The same id with another occurred_at, on the other side of midnight, is another
    // event (README, "Idempotency"): stored, and the id still names the first.
    let moved = store(
        &app,
        &[full_event(
            "progression",
            a,
            "p-1",
            SESSION,
            &rfc3339(midnight),
        )],
    )
    .await;
    assert_eq!(moved["inserted"], 1);
    assert_eq!(app.count("events").await, 3);
    let (status, event) = event_status(&app, a).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(
        OffsetDateTime::parse(event["event"]["occurred_at"].as_str().unwrap(), &Rfc3339).unwrap(),
        before
    );
    assert_references_hold(&mut app.pool.acquire().await.unwrap()).await;
}

#[tokio::test]
async fn a_backfill_months_old_gets_its_partition_on_demand_and_is_sealed() {
    let app = TestApp::spawn().await;
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(120);
    let id = Uuid::new_v4();
    assert!(!partition_days(&app).await.contains(&long_ago.date()));

    store(
        &app,
        &[full_event("custom", id, "p-1", SESSION, &rfc3339(long_ago))],
    )
    .await;
    assert!(partition_days(&app).await.contains(&long_ago.date()));
    let (status, event) = event_status(&app, id).await;
    assert_eq!(status, 200, "{event}");

    // Every partition skips autovacuum's insert-triggered passes ...
    let options: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT c.relname::text, c.reloptions FROM pg_inherits AS i
         JOIN pg_class AS c ON c.oid = i.inhrelid WHERE c.relkind = 'r'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(options.len() >= 8, "{options:?}");
    for (table, options) in &options {
        assert!(
            options
                .iter()
                .flatten()
                .any(|o| o == "autovacuum_vacuum_insert_threshold=-1"),
            "{table}: {options:?}"
        );
    }
    // ... and a day that is over is vacuumed and frozen once, by a retention pass, even
    // when nothing is dropped.
    let report = retention_pass(&app, None, OffsetDateTime::now_utc()).await;
    assert_eq!(report.days_dropped, 0);
    assert!(report.days_sealed >= 1, "{report:?}");
    let sealed: Option<OffsetDateTime> =
        sqlx::query_scalar("SELECT sealed_at FROM event_partitions WHERE day = $1")
            .bind(long_ago.date())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(sealed.is_some());
    let frozen: i32 = sqlx::query_scalar(
        "SELECT c.relallvisible FROM pg_class AS c
         WHERE c.relname = event_partition_name('events', $1, $2)",
    )
    .bind(test_game(&app).await.0)
    .bind(long_ago.date())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        frozen, 1,
        "the day's one page is all-visible after its vacuum"
    );
    // Today is not over: not sealed.
    let today_sealed: Option<OffsetDateTime> = sqlx::query_scalar(
        "SELECT sealed_at FROM event_partitions WHERE game_id = $1 AND day = $2",
    )
    .bind(test_game(&app).await.0)
    .bind(today())
    .fetch_optional(&app.pool)
    .await
    .unwrap()
    .flatten();
    assert_eq!(today_sealed, None);
}

#[tokio::test]
async fn partitions_are_made_ahead_once_by_concurrent_processes() {
    let app = TestApp::spawn().await;
    // A game gets the days around today when it is made; these are days to come.
    let from = today() + time::Duration::days(10);
    let games: i64 = app.count("games").await;
    let made: Vec<usize> = futures_util::future::join_all(
        (0..4).map(|_| maintenance::make_partitions_ahead(&app.pool, from)),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    // Every (game, day) made by exactly one of them: yesterday to the day after tomorrow.
    assert_eq!(made.iter().sum::<usize>() as i64, games * 4, "{made:?}");
    let days = partition_days(&app).await;
    for offset in -1..=2 {
        let day = from + time::Duration::days(offset);
        assert!(days.contains(&day), "{day} missing from {days:?}");
    }
    // Each (game, day) has its partition of each event table, attached.
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits AS i, event_partitions AS p,
                unnest(event_partitioned_tables()) AS parent
         WHERE i.inhrelid = to_regclass(event_partition_name(parent, p.game_id, p.day))
           AND i.inhparent = to_regclass(parent)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(tables as usize, 8 * days.len());
    // A second round makes nothing.
    let again = maintenance::make_partitions_ahead(&app.pool, from)
        .await
        .unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn retention_drops_old_days_keeps_the_rest_and_prunes_what_nothing_refers_to() {
    let app = TestApp::spawn().await;
    let now = OffsetDateTime::now_utc();
    let old_session = Uuid::now_v7().to_string();
    let old: Vec<Value> = EVENT_TYPES
        .iter()
        .map(|t| {
            full_event(
                t,
                Uuid::new_v4(),
                "old-player",
                &old_session,
                &rfc3339(now - time::Duration::days(30)),
            )
        })
        .collect();
    let recent: Vec<Value> = EVENT_TYPES
        .iter()
        .map(|t| full_event(t, Uuid::new_v4(), "player", SESSION, &a_minute_ago()))
        .collect();
    // Accepted while the game kept everything.
    store(&app, &old).await;
    store(&app, &recent).await;
    let id_of = |e: &Value| -> Uuid { e["event_id"].as_str().unwrap().parse().unwrap() };
    let old_day = (now - time::Duration::days(30)).date();
    assert!(partition_days(&app).await.contains(&old_day));

    // The game now keeps a week.
    app::store::games::set_retention(&app.pool, &TEST_GAME.parse().unwrap(), Some(7))
        .await
        .unwrap();
    let report = retention_pass(&app, None, now).await;
    assert_eq!(report.days_dropped, 1, "{report:?}");
    assert!(!partition_days(&app).await.contains(&old_day));
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class
         WHERE relname = ANY(SELECT event_partition_name(t, $1, $2)
                             FROM unnest(event_partitioned_tables()) AS t)",
    )
    .bind(test_game(&app).await.0)
    .bind(old_day)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        leftovers, 0,
        "the day's tables are dropped, not only detached"
    );

    // The old events are gone, from every table and from the API; the recent untouched.
    assert_eq!(app.count("events").await, 7);
    for (_, table) in DETAIL_TABLES {
        assert_eq!(app.count(table).await, 1, "{table}");
    }
    for event in &old {
        assert_eq!(event_status(&app, id_of(event)).await.0, 404);
    }
    for event in &recent {
        let (status, stored) = event_status(&app, id_of(event)).await;
        assert_eq!(status, 200, "{stored}");
        assert_eq!(stored["event"]["type"], event["type"]);
    }
    // The old player and session, last seen with the dropped events, are pruned; the
    // recent ones are kept, and every reference holds.
    assert_eq!(
        (report.players, report.sessions, report.batches),
        (1, 1, 0),
        "{report:?}"
    );
    let players: Vec<String> = sqlx::query_scalar("SELECT player_id FROM players")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(players, ["player"]);
    assert_eq!(app.count("sessions").await, 1);
    assert_references_hold(&mut app.pool.acquire().await.unwrap()).await;

    // Forty days on, nothing of today is kept: events, batches, sessions and players.
    let later = now + time::Duration::days(40);
    let report = retention_pass(&app, None, later).await;
    assert!(report.days_dropped >= 1, "{report:?}");
    assert_eq!(report.batches, 2, "{report:?}");
    assert_eq!((report.sessions, report.players), (1, 1), "{report:?}");
    for table in ["events", "batches", "sessions", "players"] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
    for event in &recent {
        assert_eq!(event_status(&app, id_of(event)).await.0, 404);
    }
    // A pass with nothing to do does nothing.
    let again = retention_pass(&app, None, later).await;
    assert_eq!(
        (again.days_dropped, again.batches, again.players),
        (0, 0, 0)
    );
}

/// Players and sessions carry server times, partitions client times. A player whose
/// device's clock ran 25 days fast, playing offline, was last seen (on the server's
/// clock) 30 days ago, but its event is in the partition of five days ago: it is pruned
/// when that day is dropped, not before.
#[tokio::test]
async fn a_player_is_pruned_when_the_day_of_its_newest_event_is_dropped_not_before() {
    let app = TestApp::spawn().await;
    let now = OffsetDateTime::now_utc();
    let session = Uuid::now_v7().to_string();
    let event_id = Uuid::new_v4();
    let batch_id = app
        .ingest(&json!({
            "sent_at": rfc3339(now + time::Duration::days(25)),
            "events": [full_event("custom", event_id, "offline-player", &session,
                                  &rfc3339(now - time::Duration::days(5)))],
        }))
        .await;
    app.wait_for_status(batch_id, "completed", WITHIN).await;
    let last_seen: OffsetDateTime =
        sqlx::query_scalar("SELECT last_seen_at FROM players WHERE player_id = 'offline-player'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(last_seen < now - time::Duration::days(29), "{last_seen}");

    app::store::games::set_retention(&app.pool, &TEST_GAME.parse().unwrap(), Some(10))
        .await
        .unwrap();
    // Last seen before the retention, but its event is kept: so are the player and session.
    let report = retention_pass(&app, None, now).await;
    assert_eq!((report.players, report.sessions), (0, 0), "{report:?}");
    assert_eq!(event_status(&app, event_id).await.0, 200);
    assert_eq!(app.count("players").await, 1);
    assert_eq!(app.count("sessions").await, 1);

    // Eight days on, the day of its event is past the retention: all three go.
    let report = retention_pass(&app, None, now + time::Duration::days(8)).await;
    assert!(report.days_dropped >= 1, "{report:?}");
    assert_eq!(event_status(&app, event_id).await.0, 404);
    assert_eq!((report.players, report.sessions), (1, 1), "{report:?}");
    assert_eq!(app.count("players").await, 0);
    assert_eq!(app.count("sessions").await, 0);
}

#[tokio::test]
async fn the_default_retention_applies_to_games_without_their_own() {
    let app = TestApp::spawn().await;
    let now = OffsetDateTime::now_utc();
    let event = full_event(
        "custom",
        Uuid::new_v4(),
        "p",
        SESSION,
        &rfc3339(now - time::Duration::days(10)),
    );
    store(&app, &[event]).await;
    let kept = retention_pass(&app, Some(30), now).await;
    assert_eq!((kept.days_dropped, app.count("events").await), (0, 1));
    let dropped = retention_pass(&app, Some(5), now).await;
    assert_eq!((dropped.days_dropped, app.count("events").await), (1, 0));
    // A game's own retention wins over the default.
    store(
        &app,
        &[full_event(
            "custom",
            Uuid::new_v4(),
            "p",
            SESSION,
            &rfc3339(now - time::Duration::days(10)),
        )],
    )
    .await;
    app::store::games::set_retention(&app.pool, &TEST_GAME.parse().unwrap(), Some(365))
        .await
        .unwrap();
    let own = retention_pass(&app, Some(5), now).await;
    assert_eq!((own.days_dropped, app.count("events").await), (0, 1));
}

#[tokio::test]
async fn one_retention_pass_runs_at_a_time() {
    let app = TestApp::spawn().await;
    let mut holder = app.pool.acquire().await.unwrap();
    for (lock, skipped) in [("pg_advisory_lock", true), ("pg_advisory_unlock", false)] {
        sqlx::query(&format!("SELECT {lock}($1)"))
            .bind(RETENTION_LOCK)
            .execute(&mut *holder)
            .await
            .unwrap();
        let report = retention_pass(&app, Some(1), OffsetDateTime::now_utc()).await;
        assert_eq!(report.skipped, skipped, "after {lock}");
    }
}

#[tokio::test]
async fn events_older_than_the_retention_are_refused_and_nothing_is_queued() {
    let app = TestApp::spawn_with(TestOptions {
        retention: RetentionSettings {
            days: Some(3),
            ..RetentionSettings::default()
        },
        ..TestOptions::default()
    })
    .await;
    let now = OffsetDateTime::now_utc();
    let response = app
        .post_events(&json!({"events": [
            full_event("custom", Uuid::new_v4(), "p", SESSION, &a_minute_ago()),
            full_event("custom", Uuid::new_v4(), "p", SESSION,
                       &rfc3339(now - time::Duration::days(4))),
        ]}))
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{problem}");
    assert_eq!(errors[0]["field"], "/events/1/occurred_at");
    assert_eq!(app.queued_jobs().await, 0);
    assert_eq!(app.count("batches").await, 0);
}
