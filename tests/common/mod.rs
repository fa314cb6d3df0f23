//! Helpers shared by the test crates (`tests/api`, `tests/faults`), included in each with
//! `#[path = "../common/mod.rs"] mod common;`.

#![allow(dead_code)] // each crate uses a different part

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tokio::time::Instant;
use uuid::Uuid;

/// The server that tests create their databases on; trust or password `postgres`.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".to_owned())
}

/// How long a test waits for the test server when it creates a database, as a service
/// would at start-up: it rides out a moment of too many connections while tests run in
/// parallel.
pub const DATABASE_WAIT: Duration = Duration::from_secs(app::config::DEFAULT_DATABASE_WAIT_SECS);

/// Polls `check` until it returns `Some`, or panics after `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub const SESSION: &str = "0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c00";

/// One valid event of `event_type`, with every optional field set.
pub fn full_event(
    event_type: &str,
    event_id: Uuid,
    player_id: &str,
    session_id: &str,
    occurred_at: &str,
) -> Value {
    let mut event = json!({
        "type": event_type,
        "event_id": event_id,
        "player_id": player_id,
        "session_id": session_id,
        "occurred_at": occurred_at,
    });
    let own = match event_type {
        "session_start" => {
            json!({"platform": "android", "app_version": "2.3.1", "device": "Pixel 8", "country": "SE"})
        }
        "session_end" => json!({"duration_seconds": 1860}),
        "progression" => {
            json!({"status": "complete", "level": "world-1:stage-3", "score": 12500, "attempt": 2})
        }
        "purchase" => {
            json!({"item_id": "gem_pack", "item_type": "bundle", "amount_minor": 499, "currency": "EUR", "transaction_id": "GPA.1234"})
        }
        "resource" => {
            json!({"flow": "source", "currency": "gold", "amount": 250.5, "item_type": "reward", "item_id": "daily"})
        }
        "custom" => {
            json!({"name": "tutorial:step:done", "value": 3.5, "properties": {"step": 3, "hints": ["a", "b"]}})
        }
        "error" => {
            json!({"severity": "critical", "message": "NullReferenceException\n  at Shop.Open()"})
        }
        other => panic!("no event type {other}"),
    };
    event
        .as_object_mut()
        .unwrap()
        .extend(own.as_object().unwrap().clone());
    event
}

/// A small valid event that happened a minute ago (so in a partition the service made
/// ahead of need), with a property so that the jsonb column is written too.
pub fn custom_event(event_id: Uuid, player_id: &str, session_id: Uuid) -> Value {
    json!({
        "type": "custom",
        "event_id": event_id,
        "player_id": player_id,
        "session_id": session_id,
        "occurred_at": a_minute_ago(),
        "name": "test:load",
        "properties": {"n": 1},
    })
}

/// RFC 3339, UTC, a minute before now.
pub fn a_minute_ago() -> String {
    let at = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

pub const EVENT_TYPES: [&str; 7] = [
    "session_start",
    "session_end",
    "progression",
    "purchase",
    "resource",
    "custom",
    "error",
];

/// Drops database `name` on `server`, from a `Drop` (which cannot await): see
/// [`admin_blocking`].
pub fn drop_database_blocking(server: &str, name: &str) {
    admin_blocking(
        server,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
}

/// Runs `statement` on `server`'s `postgres` database from a `Drop` (which cannot await):
/// a runtime of its own, on a thread of its own. Best effort, and bounded: a server that
/// does not answer within 5 s leaves the object behind rather than hanging the test.
pub fn admin_blocking(server: &str, statement: String) {
    let admin = format!("{server}/postgres");
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let connect = PgConnection::connect(&admin);
            if let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
                let _ = sqlx::query(&statement).execute(&mut conn).await;
            }
        });
    })
    .join();
}

/// Asserts that every reference in the database holds: no row refers to a row that is
/// missing. Workers may skip PostgreSQL's per-row checks (`store::trust_own_references`),
/// and the partitioned event tables declare no foreign keys at all (migration 9), relying
/// on the worker's writes to satisfy them by construction; this checks the result: one
/// anti-join per declared foreign key, whatever the schema declares, and then the event
/// tables' own references (see [`assert_event_references_hold`]).
pub async fn assert_references_hold(conn: &mut PgConnection) {
    // (name, referencing table, referenced table, their columns, in pairs)
    type ForeignKey = (String, String, String, Vec<String>, Vec<String>);
    let keys: Vec<ForeignKey> = sqlx::query_as(
        "SELECT c.conname::text, c.conrelid::regclass::text, c.confrelid::regclass::text,
                array_agg(quote_ident(fk.attname) ORDER BY k.n),
                array_agg(quote_ident(pk.attname) ORDER BY k.n)
         FROM pg_constraint AS c
         CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(fk_col, pk_col, n)
         JOIN pg_attribute AS fk ON fk.attrelid = c.conrelid AND fk.attnum = k.fk_col
         JOIN pg_attribute AS pk ON pk.attrelid = c.confrelid AND pk.attnum = k.pk_col
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
         GROUP BY c.oid, c.conname, c.conrelid, c.confrelid",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    // Sessions to players; players, batches, keys and partitions to games.
    assert!(keys.len() >= 5, "foreign keys found: {keys:?}");
    for (name, child, parent, fk_cols, pk_cols) in keys {
        let not_null = fk_cols
            .iter()
            .map(|c| format!("c.{c} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let matches = fk_cols
            .iter()
            .zip(&pk_cols)
            .map(|(f, p)| format!("p.{p} = c.{f}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let orphans: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {child} AS c
             WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE {matches})"
        ))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(
            orphans, 0,
            "{child} rows break foreign key {name} to {parent}"
        );
    }
    assert_event_references_hold(conn).await;
}

/// The detail tables, by the event type whose fields each holds.
pub const DETAIL_TABLES: [(&str, &str); 7] = [
    ("session_start", "session_start_events"),
    ("session_end", "session_end_events"),
    ("progression", "progression_events"),
    ("purchase", "purchase_events"),
    ("resource", "resource_events"),
    ("custom", "custom_events"),
    ("error", "error_events"),
];

/// Asserts the references of the event tables, which declare no foreign keys: every event
/// has its player, its session, its batch and exactly its one detail row, in the table of
/// its type; and every detail row has its event, of that type.
pub async fn assert_event_references_hold(conn: &mut PgConnection) {
    let checks: Vec<(String, String)> = [
        (
            "events without their player".to_owned(),
            "SELECT count(*) FROM events AS e WHERE NOT EXISTS
               (SELECT 1 FROM players AS p WHERE p.game_id = e.game_id AND p.player_id = e.player_id)"
                .to_owned(),
        ),
        (
            "events without their session".to_owned(),
            "SELECT count(*) FROM events AS e WHERE NOT EXISTS
               (SELECT 1 FROM sessions AS s WHERE s.game_id = e.game_id AND s.session_id = e.session_id)"
                .to_owned(),
        ),
        (
            "events without their batch".to_owned(),
            "SELECT count(*) FROM events AS e WHERE NOT EXISTS
               (SELECT 1 FROM batches AS b WHERE b.batch_id = e.batch_id AND b.game_id = e.game_id)"
                .to_owned(),
        ),
    ]
    .into_iter()
    .chain(DETAIL_TABLES.iter().flat_map(|(event_type, table)| {
        // The detail row's key: its event's game, batch, id and time as sent.
        let matches = "d.game_id = e.game_id AND d.batch_id = e.batch_id \
                       AND d.event_id = e.event_id AND d.client_occurred_at = e.client_occurred_at";
        [
            (
                format!("{event_type} events without their row in {table}"),
                format!(
                    "SELECT count(*) FROM events AS e WHERE e.event_type = '{event_type}'
                     AND NOT EXISTS (SELECT 1 FROM {table} AS d WHERE {matches})"
                ),
            ),
            (
                format!("{table} rows without their {event_type} event"),
                format!(
                    "SELECT count(*) FROM {table} AS d WHERE NOT EXISTS
                       (SELECT 1 FROM events AS e WHERE {matches} AND e.event_type = '{event_type}')"
                ),
            ),
        ]
    }))
    .collect();
    for (what, sql) in checks {
        let broken: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(broken, 0, "{what}");
    }
}
