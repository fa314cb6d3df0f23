//! Migrations that change stored data keep it: rows written under the older schema read
//! the same under the new one.

use std::borrow::Cow;

use app::db::{EmbeddedMigration, MIGRATIONS};
use app::domain::{Event, GameId};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use crate::common::{assert_event_references_hold, drop_database_blocking, server_url};

/// Migration 14: detail tables keyed by (game, batch, event id, time as sent).
const DETAIL_KEYS_BY_BATCH: i64 = 20261205000014;

/// A fresh database, migrated up to (not including) `version`.
struct OldDatabase {
    name: String,
    pool: PgPool,
}

impl OldDatabase {
    async fn before(version: i64) -> Self {
        let name = format!("test_{}", Uuid::new_v4().simple());
        let url = format!("{}/{name}", server_url());
        Postgres::create_database(&url).await.unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        let older = MIGRATIONS
            .iter()
            .filter(|m| m.version < version)
            .map(EmbeddedMigration::migration)
            .collect::<Vec<_>>();
        Migrator {
            migrations: Cow::Owned(older),
            ..Migrator::DEFAULT
        }
        .run(&pool)
        .await
        .unwrap();
        Self { name, pool }
    }
}

impl Drop for OldDatabase {
    fn drop(&mut self) {
        drop_database_blocking(&server_url(), &self.name);
    }
}

#[tokio::test]
async fn detail_rows_stored_before_migration_14_take_their_events_batch() {
    let db = OldDatabase::before(DETAIL_KEYS_BY_BATCH).await;
    let pool = &db.pool;
    // Two batches of one game, as the worker stored them under migration 13's schema:
    // each event with its player, session, batch and detail row keyed by (game, time, id).
    let (batch_a, batch_b) = (Uuid::now_v7(), Uuid::now_v7());
    let (progression, custom, purchase) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let session = Uuid::new_v4();
    // The events' occurred_at as their client sent it: the partition key.
    let sent = "date_trunc('second', now()) - interval '1 minute'";
    sqlx::raw_sql(&format!(
        "INSERT INTO games (name) VALUES ('old-game');
         SELECT event_partition_ensure(1, (now() AT TIME ZONE 'UTC')::date);
         INSERT INTO batches (batch_id, game_id, status, accepted, inserted, duplicates, received_at, completed_at)
         VALUES ('{batch_a}', 1, 'completed', 2, 2, 0, now(), now()),
                ('{batch_b}', 1, 'completed', 1, 1, 0, now(), now());
         INSERT INTO players (game_id, player_id, first_seen_at, last_seen_at, last_client_occurred_at)
         VALUES (1, 'p1', now(), now(), now());
         INSERT INTO sessions (game_id, session_id, player_id, first_seen_at, last_seen_at, last_client_occurred_at)
         VALUES (1, '{session}', 'p1', now(), now(), now());
         INSERT INTO events (game_id, event_id, client_occurred_at, event_type, player_id, session_id,
                             occurred_at, batch_id, received_at, processed_at)
         SELECT 1, id, {sent}, kind, 'p1', '{session}',
                now(), batch, now(), now()
         FROM (VALUES ('{progression}'::uuid, 'progression', '{batch_a}'::uuid),
                      ('{custom}', 'custom', '{batch_a}'),
                      ('{purchase}', 'purchase', '{batch_b}')) AS v(id, kind, batch);
         INSERT INTO progression_events (game_id, client_occurred_at, event_id, status, level, score)
         VALUES (1, {sent}, '{progression}', 'complete', 'world-1:2', 900);
         INSERT INTO custom_events (game_id, client_occurred_at, event_id, name, value)
         VALUES (1, {sent}, '{custom}', 'shop:open', 2.5);
         INSERT INTO purchase_events (game_id, client_occurred_at, event_id, item_id, item_type, amount_minor, currency)
         VALUES (1, {sent}, '{purchase}', 'gems', 'pack', 499, 'EUR');"
    ))
    .execute(pool)
    .await
    .unwrap();

    app::db::migrate(pool).await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    assert_event_references_hold(&mut conn).await;
    for (table, event, batch) in [
        ("progression_events", progression, batch_a),
        ("custom_events", custom, batch_a),
        ("purchase_events", purchase, batch_b),
    ] {
        let stored: Uuid =
            sqlx::query_scalar(&format!("SELECT batch_id FROM {table} WHERE event_id = $1"))
                .bind(event)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert_eq!(stored, batch, "{table}'s row of event {event}");
        let key: String = sqlx::query_scalar(&format!(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = '{table}'::regclass AND indisprimary"
        ))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert!(
            key.ends_with("(game_id, batch_id, event_id, client_occurred_at)"),
            "{table}'s key: {key}"
        );
    }

    // Read back through the service's own query, fields and all.
    let read = |id| app::store::read::event(pool, GameId(1), id);
    match read(progression).await.unwrap().expect("stored").event {
        Event::Progression(p) => {
            assert_eq!(p.level.as_str(), "world-1:2");
            assert_eq!(p.score.map(|s| s.get()), Some(900));
        }
        other => panic!("a progression event, not {other:?}"),
    }
    match read(custom).await.unwrap().expect("stored").event {
        Event::Custom(c) => assert_eq!(c.name.as_str(), "shop:open"),
        other => panic!("a custom event, not {other:?}"),
    }
    let purchase_read = read(purchase).await.unwrap().expect("stored");
    assert_eq!(purchase_read.batch_id, batch_b);
    match purchase_read.event {
        Event::Purchase(p) => assert_eq!(p.amount_minor.get(), 499),
        other => panic!("a purchase event, not {other:?}"),
    }
}
