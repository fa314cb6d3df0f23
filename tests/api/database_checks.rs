//! The database's CHECK constraints state the API's rules (src/domain/fields.rs) in SQL.
//! Each value below goes straight into its column, and the database must refuse it exactly
//! when the API's rule does: a value the API accepts but the database refuses would fail
//! its batch on every retry.

use app::domain::fields::{CustomEventName, LevelName, PlayerId, StringRule};
use sqlx::{Connection, PgConnection};

use crate::helpers::{TestApp, TestOptions};

/// Inserts each value with `insert` (`$1` is the value) and returns whether the database
/// took it. Foreign keys are off (replica role) so that only the CHECKs decide.
async fn database_accepts(conn: &mut PgConnection, insert: &str, values: &[String]) -> Vec<bool> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut accepted = Vec::with_capacity(values.len());
    for value in values {
        sqlx::query("SAVEPOINT v").execute(&mut *tx).await.unwrap();
        match sqlx::query(insert).bind(value).execute(&mut *tx).await {
            Ok(_) => accepted.push(true),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => {
                accepted.push(false)
            }
            Err(e) => panic!("inserting {value:?}: {e}"),
        }
        sqlx::query("ROLLBACK TO SAVEPOINT v")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    accepted
}

async fn assert_same_rule(insert: &str, rule: StringRule, values: Vec<String>) {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..TestOptions::default()
    })
    .await;
    let mut conn = app.pool.acquire().await.unwrap();
    let database = database_accepts(&mut conn, insert, &values).await;
    let mut disagreements = Vec::new();
    for (value, database) in values.iter().zip(database) {
        let api = rule.check(value).is_ok();
        if api != database {
            disagreements.push(format!("{value:?}: API {api}, database {database}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "the database and the API disagree on {} of {} values:\n{}",
        disagreements.len(),
        values.len(),
        disagreements.join("\n")
    );
    // Both sides of every bound are among the values.
    assert!(values.iter().any(|v| rule.check(v).is_ok()));
    assert!(values.iter().any(|v| rule.check(v).is_err()));
}

/// Names of `parts` parts joined by ':', every part but one of `len` characters `c`, and
/// that one of `odd_len`, at every position; plus stray colons.
fn hierarchical_values(max_parts: usize, max_part_chars: usize) -> Vec<String> {
    let mut values = vec![String::new(), ":".into(), "::".into()];
    for c in ['a', 'é', '界', ' '] {
        for parts in 1..=max_parts + 1 {
            for odd_len in [0, 1, max_part_chars, max_part_chars + 1] {
                for odd in 0..parts {
                    let name: Vec<String> = (0..parts)
                        .map(|i| {
                            let len = if i == odd { odd_len } else { 2 };
                            c.to_string().repeat(len)
                        })
                        .collect();
                    values.push(name.join(":"));
                }
            }
        }
    }
    for v in ["a:", ":a", "a::b", "a:b:", "world-1:stage-3"] {
        values.push(v.into());
    }
    values
}

#[tokio::test]
async fn player_id_check_matches_the_api_rule() {
    let mut values: Vec<String> = ["", "a", "player-42", "A.b_c:d-e", "a b", "é", "a/b", "a\n"]
        .into_iter()
        .map(String::from)
        .collect();
    for len in [63, 64, 65, 200] {
        values.push("p".repeat(len));
    }
    for c in (0x20u8..0x7f).map(char::from) {
        values.push(format!("x{c}"));
    }
    assert_same_rule(
        "INSERT INTO players (game_id, player_id, first_seen_at, last_seen_at, last_client_occurred_at)
         VALUES (1, $1, now(), now(), now())",
        PlayerId::RULE,
        values,
    )
    .await;
}

#[tokio::test]
async fn level_check_matches_the_api_rule() {
    assert_same_rule(
        "INSERT INTO progression_events (game_id, client_occurred_at, event_id, batch_id, status, level)
         VALUES (1, now(), gen_random_uuid(), gen_random_uuid(), 'start', $1)",
        LevelName::RULE,
        hierarchical_values(3, 64),
    )
    .await;
}

#[tokio::test]
async fn custom_event_name_check_matches_the_api_rule() {
    assert_same_rule(
        "INSERT INTO custom_events (game_id, client_occurred_at, event_id, batch_id, name) VALUES (1, now(), gen_random_uuid(), gen_random_uuid(), $1)",
        CustomEventName::RULE,
        hierarchical_values(5, 64),
    )
    .await;
}
