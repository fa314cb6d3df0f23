//! The SQL of the event tables: writing a processed batch, recording a queued one, and
//! reading both back.

mod copy;
pub mod games;
pub mod partitions;
pub mod read;
pub mod retention;
pub mod write;

pub use read::{BatchRecord, ReadError, StoredEvent};
pub use write::{
    may_trust_own_references, trust_own_references, write_batches, BatchToWrite, WriteOutcome,
};

use sqlx::PgConnection;
use uuid::Uuid;

use time::OffsetDateTime;

use crate::domain::GameId;

/// A newly accepted batch, as recorded when it is queued.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedBatch {
    pub batch_id: Uuid,
    pub game_id: GameId,
    pub accepted: i32,
    pub sent_at: Option<OffsetDateTime>,
    pub received_at: OffsetDateTime,
    pub request_id: String,
}

/// Records newly accepted batches as queued, in one statement (in the caller's
/// transaction, beside their jobs).
pub async fn insert_queued_batches(
    conn: &mut PgConnection,
    batches: &[&QueuedBatch],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO batches (batch_id, game_id, accepted, sent_at, received_at, request_id)
         SELECT * FROM UNNEST($1::uuid[], $6::int[], $2::int[], $3::timestamptz[], $4::timestamptz[], $5::text[])",
        &batches.iter().map(|b| b.batch_id).collect::<Vec<_>>(),
        &batches.iter().map(|b| b.accepted).collect::<Vec<_>>(),
        &batches.iter().map(|b| b.sent_at).collect::<Vec<_>>() as &[Option<OffsetDateTime>],
        &batches.iter().map(|b| b.received_at).collect::<Vec<_>>(),
        &batches.iter().map(|b| b.request_id.as_str()).collect::<Vec<_>>() as &[&str],
        &batches.iter().map(|b| b.game_id.0).collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}
