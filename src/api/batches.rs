//! `/v1/batches`: where a queued batch is.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::ReadKey;
use super::events::EXAMPLE_BATCH_ID;
use super::problem::{ApiError, BatchLookupProblem};
use super::{ApiState, ApiTags};
use crate::store::{self, BatchRecord};

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum BatchState {
    /// Waiting for a worker (or for its next attempt, after a failure).
    Queued,
    /// A worker is on it.
    Processing,
    /// Its events are stored.
    Completed,
    /// Every attempt failed; `app failed retry` requeues it.
    Failed,
}

/// Absent fields do not apply yet (`inserted` before completion) or at all (`last_error`
/// when no attempt failed); they are left out rather than sent as null.
#[derive(Debug, Object)]
#[oai(example, skip_serializing_if_is_none)]
pub struct BatchStatus {
    /// The batch's id, as in the 202 that queued it.
    pub batch_id: Uuid,
    pub status: BatchState,
    /// Events in the batch.
    pub accepted: u32,
    /// Events this batch stored (once completed).
    pub inserted: Option<u32>,
    /// Events that were stored before, by this batch or another (once completed).
    pub duplicates: Option<u32>,
    /// Processing attempts started so far.
    pub attempts: u32,
    /// The error of the last failed attempt, if any.
    pub last_error: Option<String>,
    /// When the API accepted the batch.
    pub received_at: OffsetDateTime,
    /// When a worker stored its events (once completed).
    pub completed_at: Option<OffsetDateTime>,
    /// The id of the request that queued the batch (its `X-Request-Id`).
    pub request_id: Option<String>,
}

impl Example for BatchStatus {
    fn example() -> Self {
        let received_at = time::macros::datetime!(2026-11-01 17:31:00.012 UTC);
        Self {
            batch_id: EXAMPLE_BATCH_ID,
            status: BatchState::Completed,
            accepted: 7,
            inserted: Some(7),
            duplicates: Some(0),
            attempts: 1,
            last_error: None,
            received_at,
            completed_at: Some(received_at + time::Duration::milliseconds(38)),
            request_id: Some("01937f3b-0a1b-7c2d-9e3f-405162738495".to_owned()),
        }
    }
}

impl TryFrom<BatchRecord> for BatchStatus {
    type Error = ApiError;
    fn try_from(r: BatchRecord) -> Result<Self, ApiError> {
        let status = match r.status.as_str() {
            "queued" => BatchState::Queued,
            "processing" => BatchState::Processing,
            "completed" => BatchState::Completed,
            "failed" => BatchState::Failed,
            other => return Err(ApiError::Internal(format!("batch status {other:?}").into())),
        };
        let count = |v: i32| u32::try_from(v).unwrap_or(0);
        Ok(Self {
            batch_id: r.batch_id,
            status,
            accepted: count(r.accepted),
            inserted: r.inserted.map(count),
            duplicates: r.duplicates.map(count),
            attempts: count(r.attempts),
            last_error: r.last_error,
            received_at: r.received_at,
            completed_at: r.completed_at,
            request_id: r.request_id,
        })
    }
}

/// The refusal of a batch that does not exist (or is not in the key's game).
pub(super) fn no_such_batch(batch_id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no batch has the id {batch_id}"))
}

#[derive(ApiResponse)]
pub enum GetBatchResponse {
    /// Where the batch is.
    #[oai(status = 200)]
    Found(Json<BatchStatus>),
}

pub struct BatchesApi;

#[OpenApi(tag = "ApiTags::Batches")]
impl BatchesApi {
    /// Follow a batch
    ///
    /// Where the batch is: queued, processing, completed (with how many of its events
    /// were new and how many duplicates) or failed (with the last error).
    ///
    /// Needs a read key; finds only batches of the key's game.
    #[oai(
        path = "/v1/batches/:batch_id",
        method = "get",
        operation_id = "get_batch"
    )]
    async fn get(
        &self,
        state: Data<&ApiState>,
        key: ReadKey,
        batch_id: Path<Uuid>,
    ) -> Result<GetBatchResponse, BatchLookupProblem> {
        match store::read::batch(&state.pool, key.0.game.id, batch_id.0).await? {
            Some(record) => Ok(GetBatchResponse::Found(Json(BatchStatus::try_from(
                record,
            )?))),
            None => Err(no_such_batch(batch_id.0).into()),
        }
    }
}
