//! The SQL of the event tables: writing a processed batch, recording a queued one, and
//! reading both back.

pub mod read;
pub mod write;

pub use read::{BatchRecord, ReadError, StoredEvent};
pub use write::{write_batch, WriteOutcome};

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::ValidBatch;

/// Records a newly accepted batch as queued (in the caller's transaction, beside its job).
pub async fn insert_queued_batch(
    conn: &mut PgConnection,
    batch_id: Uuid,
    batch: &ValidBatch,
    request_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO batches (batch_id, accepted, sent_at, received_at, request_id)
         VALUES ($1, $2, $3, $4, $5)",
        batch_id,
        batch.events.len() as i32,
        batch.sent_at,
        batch.received_at,
        request_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}
