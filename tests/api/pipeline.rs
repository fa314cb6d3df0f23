//! Events in, through the queue, into the tables, and back out.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

const WITHIN: Duration = Duration::from_secs(20);

fn every_type_batch(player: &str) -> (Value, Vec<Value>) {
    let events: Vec<Value> = EVENT_TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            full_event(
                t,
                Uuid::now_v7(),
                player,
                SESSION,
                &format!("2026-06-01T10:00:0{i}+02:00"),
            )
        })
        .collect();
    // The client's clock runs 30 s behind: its sent_at is 30 s before our receipt.
    let sent_at = (time::OffsetDateTime::now_utc() - time::Duration::seconds(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    (json!({ "sent_at": sent_at, "events": events }), events)
}

#[tokio::test]
async fn a_batch_of_every_event_type_is_stored_as_the_expected_rows() {
    let app = TestApp::spawn().await;
    let (body, events) = every_type_batch("player-1");

    let response = app.post_events(&body).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["accepted"], 7);
    let batch_id: Uuid = accepted["batch_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(location, format!("/v1/batches/{batch_id}"));

    let batch = app.wait_for_status(batch_id, "completed", WITHIN).await;
    assert_eq!(batch["accepted"], 7);
    assert_eq!(batch["inserted"], 7);
    assert_eq!(batch["duplicates"], 0);
    assert_eq!(batch["attempts"], 1);
    assert!(batch["completed_at"].is_string());

    // Exactly the expected rows in every table.
    assert_eq!(app.count("events").await, 7);
    assert_eq!(app.count("players").await, 1);
    assert_eq!(app.count("sessions").await, 1);
    for table in [
        "session_start_events",
        "session_end_events",
        "progression_events",
        "purchase_events",
        "resource_events",
        "custom_events",
        "error_events",
    ] {
        assert_eq!(app.count(table).await, 1, "{table}");
    }
    assert_eq!(app.count("batches").await, 1);
    assert_eq!(
        app.queued_jobs().await,
        0,
        "the job is gone once its batch is stored"
    );

    // The session carries the start's device fields and the end's duration; its times and
    // the player's are the events' times corrected by the client's 30 s lag.
    #[derive(sqlx::FromRow)]
    struct Session {
        player_id: String,
        platform: String,
        app_version: String,
        device: Option<String>,
        country: Option<String>,
        duration_seconds: Option<i32>,
        start_corrected: bool,
        end_corrected: bool,
    }
    // The skew is measured with real clocks, so times are compared to within 2 s.
    let session: Session = sqlx::query_as(
        "SELECT player_id, platform, app_version, device, country, duration_seconds,
                abs(extract(epoch FROM started_at - timestamptz '2026-06-01T08:00:30Z')) < 2 AS start_corrected,
                abs(extract(epoch FROM ended_at - timestamptz '2026-06-01T08:00:31Z')) < 2 AS end_corrected
         FROM sessions",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(session.player_id, "player-1");
    assert_eq!(
        (session.platform.as_str(), session.app_version.as_str()),
        ("android", "2.3.1")
    );
    assert_eq!(
        (
            session.device.as_deref(),
            session.country.as_deref(),
            session.duration_seconds
        ),
        (Some("Pixel 8"), Some("SE"), Some(1860))
    );
    assert!(
        session.start_corrected && session.end_corrected,
        "started_at and ended_at are corrected"
    );
    let skew_ok: bool = sqlx::query_scalar(
        "SELECT bool_and(abs(extract(epoch FROM occurred_at - client_occurred_at) - 30) < 2) FROM events",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        skew_ok,
        "occurred_at is client_occurred_at shifted by the clock skew"
    );
    let player_span: (bool, bool) = sqlx::query_as(
        "SELECT p.first_seen_at = (SELECT min(occurred_at) FROM events),
                p.last_seen_at = (SELECT max(occurred_at) FROM events)
         FROM players p",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(player_span, (true, true));

    // Each event reads back in the shape it was sent in.
    for sent in &events {
        let (status, stored) = app
            .get_json(&format!(
                "/v1/events/{}",
                sent["event_id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(status, 200, "{stored}");
        let mut expected = sent.clone();
        // Stored instants come back in UTC: 10:00:0N+02:00 is 08:00:0NZ.
        let occurred = sent["occurred_at"]
            .as_str()
            .unwrap()
            .replace("T10:", "T08:")
            .replace("+02:00", "Z");
        expected["occurred_at"] = json!(occurred);
        assert_eq!(stored["event"], expected);
        assert_eq!(stored["batch_id"], batch_id.to_string());
        assert!(stored["received_at"].is_string() && stored["processed_at"].is_string());
        assert!(stored["corrected_occurred_at"].is_string());
    }
    assert_references_hold(&mut app.pool.acquire().await.unwrap()).await;
}

#[tokio::test]
async fn the_same_batch_sent_again_stores_nothing_new_and_reports_duplicates() {
    let app = TestApp::spawn().await;
    let (body, _) = every_type_batch("player-2");
    let first = app.ingest(&body).await;
    app.wait_for_status(first, "completed", WITHIN).await;
    let snapshot = |app: &TestApp| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT concat_ws('|',
                    (SELECT string_agg(concat_ws(',', player_id, first_seen_at, last_seen_at, xmin), ';') FROM players),
                    (SELECT string_agg(concat_ws(',', session_id, started_at, ended_at, last_seen_at, xmin), ';') FROM sessions),
                    (SELECT count(*) FROM events), (SELECT count(*) FROM custom_events))",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let before = snapshot(&app).await;

    let second = app.ingest(&body).await;
    assert_ne!(first, second);
    let batch = app.wait_for_status(second, "completed", WITHIN).await;
    assert_eq!(batch["inserted"], 0);
    assert_eq!(batch["duplicates"], 7);
    // Not even rewritten: the rows keep their transaction ids (xmin).
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_batch_of_stored_and_new_events_stores_the_new_ones_with_their_details_only() {
    let app = TestApp::spawn().await;
    let (mut first_body, mut first_events) = every_type_batch("player-3");
    // A time finer than PostgreSQL's microseconds: the first copy is written by COPY and
    // the resend checked by an INSERT, and both must cut it the same way.
    first_events[0]["occurred_at"] = json!("2026-06-01T10:00:00.123456789+02:00");
    first_body["events"][0] = first_events[0].clone();
    let first = app.ingest(&first_body).await;
    app.wait_for_status(first, "completed", WITHIN).await;

    // The first batch again, with one new event of every type after it.
    let (new_body, new_events) = every_type_batch("player-4");
    let mut events = first_events.clone();
    events.extend(new_events.iter().cloned());
    let mixed = app
        .ingest(&json!({ "sent_at": new_body["sent_at"], "events": events }))
        .await;
    let batch = app.wait_for_status(mixed, "completed", WITHIN).await;
    assert_eq!(batch["inserted"], new_events.len());
    assert_eq!(batch["duplicates"], first_events.len());

    let stored_by = |id: Uuid| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>("SELECT batch_id FROM events WHERE event_id = $1")
                .bind(id)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    for e in &first_events {
        let id: Uuid = e["event_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(stored_by(id).await, vec![first], "{e}");
    }
    for e in &new_events {
        let id: Uuid = e["event_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(stored_by(id).await, vec![mixed], "{e}");
    }
    // One detail row per event, and each player once.
    let (events, details, players): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events),
                (SELECT (SELECT count(*) FROM session_start_events) + (SELECT count(*) FROM session_end_events)
                      + (SELECT count(*) FROM progression_events) + (SELECT count(*) FROM purchase_events)
                      + (SELECT count(*) FROM resource_events) + (SELECT count(*) FROM custom_events)
                      + (SELECT count(*) FROM error_events)),
                (SELECT count(*) FROM players)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let expected = (first_events.len() + new_events.len()) as i64;
    assert_eq!((events, details, players), (expected, expected, 2));
    assert_references_hold(&mut app.pool.acquire().await.unwrap()).await;
}

#[tokio::test]
async fn events_are_not_found_before_they_are_processed() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let event_id = Uuid::now_v7();
    let batch_id = app
        .ingest(&json!({ "events": [custom_event(event_id, "p", Uuid::now_v7())] }))
        .await;
    let (status, problem) = app.get_json(&format!("/v1/events/{event_id}")).await;
    assert_eq!(status, 404);
    assert_eq!(problem["status"], 404);
    assert_eq!(app.batch(batch_id).await["status"], "queued");

    let mut app = app;
    app.start_worker().await;
    app.wait_for_status(batch_id, "completed", WITHIN).await;
    let (status, _) = app.get_json(&format!("/v1/events/{event_id}")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_earliest_session_start_and_latest_session_end_win_whatever_the_arrival_order() {
    let app = TestApp::spawn().await;
    let session = Uuid::now_v7().to_string();
    let start = |at: &str, platform: &str| {
        let mut e = full_event("session_start", Uuid::now_v7(), "p", &session, at);
        e["platform"] = json!(platform);
        e
    };
    let end = |at: &str, duration: i32| {
        let mut e = full_event("session_end", Uuid::now_v7(), "p", &session, at);
        e["duration_seconds"] = json!(duration);
        e
    };
    // Later start and earlier end arrive first...
    let b1 = app.ingest(&json!({ "events": [start("2026-06-01T10:05:00Z", "web"), end("2026-06-01T11:00:00Z", 100)] })).await;
    app.wait_for_status(b1, "completed", WITHIN).await;
    // ...then the real start and the real end, in one batch with a middle event.
    let b2 = app
        .ingest(&json!({ "events": [
            start("2026-06-01T10:00:00Z", "ios"),
            end("2026-06-01T12:00:00Z", 7200),
            end("2026-06-01T11:30:00Z", 5400),
        ] }))
        .await;
    app.wait_for_status(b2, "completed", WITHIN).await;

    let row: (String, i32, bool, bool) = sqlx::query_as(
        "SELECT platform, duration_seconds, started_at = '2026-06-01T10:00:00Z', ended_at = '2026-06-01T12:00:00Z' FROM sessions",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(row, ("ios".to_owned(), 7200, true, true));
}

/// A login role of its own, dropped with the value (after the test's database, which holds
/// its privileges: declare it before the `TestApp`).
struct TestRole(String);

impl Drop for TestRole {
    fn drop(&mut self) {
        admin_blocking(&server_url(), format!("DROP ROLE IF EXISTS {}", self.0));
    }
}

#[tokio::test]
async fn a_worker_whose_role_may_not_skip_foreign_key_checks_has_them_checked_and_stores_all() {
    let role = TestRole(format!("worker_{}", Uuid::new_v4().simple()));
    let mut app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for statement in [
        format!("CREATE ROLE {} LOGIN PASSWORD '{}'", role.0, role.0),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
            role.0
        ),
        // The queue's backpressure signal is a sequence (migration 10).
        format!(
            "GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}",
            role.0
        ),
    ] {
        sqlx::query(&statement).execute(&app.pool).await.unwrap();
    }
    let options: sqlx::postgres::PgConnectOptions = app.db_settings.database_url.parse().unwrap();
    let role_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .connect_lazy_with(options.username(&role.0).password(&role.0));

    // The tests' own role is a superuser, which may skip the checks; this one may not.
    assert!(app::store::may_trust_own_references(&app.pool)
        .await
        .unwrap());
    assert!(!app::store::may_trust_own_references(&role_pool)
        .await
        .unwrap());

    // Its worker has PostgreSQL check each key, and stores the batch all the same.
    app.start_worker_on(role_pool).await;
    let (body, events) = every_type_batch("player-1");
    let batch_id = app.ingest(&body).await;
    let batch = app.wait_for_status(batch_id, "completed", WITHIN).await;
    assert_eq!(batch["inserted"], events.len());
    assert_references_hold(&mut app.pool.acquire().await.unwrap()).await;
}
