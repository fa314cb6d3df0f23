//! The ceiling: how fast this PostgreSQL stores the same events when nothing but the
//! write itself is done. The same rows (same ids, players, sessions, times) are written
//! with one `COPY … FROM STDIN` into a scratch table that has the columns, defaults,
//! CHECK constraints and indexes of `events`. It is an ordinary (logged) table, as
//! durable as `events`, and it is dropped afterwards. The clock runs from `BEGIN` to
//! `COMMIT`; the COPY data is prepared before, as the HTTP bodies are.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgPool};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::load::GenEvent;
use crate::domain::GameId;

/// The columns of `events`, in COPY order.
pub const COLUMNS: &str = "game_id, event_id, event_type, player_id, session_id, occurred_at, \
                           client_occurred_at, batch_id, received_at, processed_at";

/// The COPY data (text format) for `events` of game `game`, cut into batches at
/// `bounds`, each batch with a fresh UUIDv7 batch id, as received and processed at `at`.
pub fn copy_data(
    events: &[GenEvent],
    bounds: &[usize],
    game: GameId,
    at: OffsetDateTime,
) -> Vec<u8> {
    let ts = |t: OffsetDateTime| t.format(&Rfc3339).expect("formattable");
    let at = ts(at);
    let mut out = String::with_capacity(events.len() * 200);
    for w in bounds.windows(2) {
        let batch_id = Uuid::now_v7();
        for e in &events[w[0]..w[1]] {
            let occurred = ts(e.occurred_at);
            // The generator's values need no escaping, but stay correct if one ever does.
            let fields: [&dyn std::fmt::Display; 10] = [
                &game,
                &e.event_id,
                &e.detail.type_name(),
                &e.player_id,
                &e.session_id,
                &occurred,
                &occurred,
                &batch_id,
                &at,
                &at,
            ];
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    out.push('\t');
                }
                push_escaped(&mut out, &field.to_string());
            }
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// Appends `value` escaped for COPY's text format.
pub fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The result of the COPY.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    pub rows: u64,
    pub elapsed: Duration,
}

/// Creates the scratch table, times one COPY of `data` (`rows` rows) into it from BEGIN
/// to COMMIT, and drops the table, also when the COPY fails.
pub async fn measure(pool: &PgPool, data: &[u8], rows: u64) -> anyhow::Result<Ceiling> {
    let table = format!("bench_ceiling_{}", std::process::id());
    let mut conn = pool.acquire().await?;
    sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE {table} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
    ))
    .execute(&mut *conn)
    .await?;
    let result = copy_into(&mut conn, &table, data).await;
    let dropped = sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&mut *conn)
        .await;
    let (copied, elapsed) = result?;
    dropped?;
    anyhow::ensure!(copied == rows, "COPY stored {copied} rows, expected {rows}");
    Ok(Ceiling { rows, elapsed })
}

async fn copy_into(
    conn: &mut sqlx::PgConnection,
    table: &str,
    data: &[u8],
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let mut copy = tx
        .copy_in_raw(&format!("COPY {table} ({COLUMNS}) FROM STDIN"))
        .await?;
    for chunk in data.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    let copied = copy.finish().await?;
    tx.commit().await?;
    Ok((copied, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::super::load::{IdKind, Workload};
    use super::*;

    #[test]
    fn escaping_covers_the_text_formats_specials() {
        let mut s = String::new();
        push_escaped(&mut s, "a\\b\tc\nd\re");
        assert_eq!(s, "a\\\\b\\tc\\nd\\re");
    }

    #[test]
    fn one_row_per_event_with_ten_columns_and_one_batch_id_per_request() {
        let now = time::macros::datetime!(2026-11-25 14:00:00 UTC);
        let w = Workload::generate(250, 100, 10, 1, now, IdKind::V7);
        let data = copy_data(&w.events, &w.bounds, GameId(3), now);
        let text = std::str::from_utf8(&data).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), 250);
        assert!(rows.iter().all(|r| r.len() == 10));
        let batches: std::collections::HashSet<&str> = rows.iter().map(|r| r[7]).collect();
        assert_eq!(batches.len(), 3);
        let first = &rows[0];
        assert_eq!(first[0], "3");
        assert_eq!(first[1], w.events[0].event_id.to_string());
        assert_eq!(first[2], "session_start");
        assert!(first[3].starts_with("player-"));
        assert_eq!(first[8], "2026-11-25T14:00:00Z");
    }
}
