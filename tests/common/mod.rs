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

/// A small valid event, with a property so that the jsonb column is written too.
pub fn custom_event(event_id: Uuid, player_id: &str, session_id: Uuid) -> Value {
    json!({
        "type": "custom",
        "event_id": event_id,
        "player_id": player_id,
        "session_id": session_id,
        "occurred_at": "2026-01-01T00:00:00Z",
        "name": "test:load",
        "properties": {"n": 1},
    })
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

/// Asserts that every foreign key in the database holds: no row references a row that is
/// missing. Workers may skip PostgreSQL's per-row checks (`store::trust_own_references`),
/// relying on their writes to satisfy the keys by construction; this checks the result,
/// one anti-join per foreign key, whatever the schema declares.
pub async fn assert_foreign_keys_hold(conn: &mut PgConnection) {
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
    // The event tables' eleven (four on events and sessions, one per detail table), and
    // sqlxmq's own.
    assert!(keys.len() >= 11, "foreign keys found: {keys:?}");
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
}
