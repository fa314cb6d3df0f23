//! `/v1/events`: ingesting batches, reading stored events.

use poem::web::Data;
use poem::{Request, RequestBody};
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{Example, Type};
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::{IngestKey, ReadKey};
use super::body;
use super::observe::RequestId;
use super::problem::{ApiError, EventLookupProblem, IngestProblem};
use super::{ApiState, ApiTags};
use crate::domain::{examples, read_batch, BodyRejection, Event, ValidBatch, MAX_EVENTS_PER_BATCH};
use crate::store;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A batch of events from one client. Optional fields, here and in the events, may be left
/// out or sent as `null`: both mean absent.
#[derive(Debug, Object)]
#[oai(rename = "EventBatch", example)]
struct EventBatchSchema {
    /// When the client sent the request, by its own clock: the device's current time, never a
    /// fixed or stored value. Given, every event's `occurred_at` is shifted by the server's
    /// time of receipt minus `sent_at`, which puts it on the server's clock; an event that is
    /// then more than one hour in the future, or before 2000-01-01T00:00:00Z, is invalid
    /// (422). Without it, `occurred_at` is checked as sent.
    #[oai(nullable)]
    sent_at: Option<OffsetDateTime>,
    /// 1 to 1000 events. Unknown fields are rejected, so that a typo is an error instead
    /// of lost data.
    #[oai(validator(min_items = 1, max_items = 1000))]
    events: Vec<Event>,
}

impl Example for EventBatchSchema {
    fn example() -> Self {
        let batch = examples::example_batch();
        Self {
            sent_at: batch.sent_at,
            events: batch.events,
        }
    }
}

/// The body of `POST /v1/events`: documented as [`EventBatchSchema`], read by
/// [`read_batch`], which reports every invalid event at once (poem-openapi's own
/// parsing stops at the first error).
pub struct IngestBody(pub ValidBatch);

impl Payload for IngestBody {
    const CONTENT_TYPE: &'static str = "application/json";

    /// JSON, and plain text holding JSON: what `navigator.sendBeacon` sends a string as
    /// (a browser sends `text/plain` without a CORS preflight). Any charset but UTF-8 is
    /// refused rather than misread.
    fn check_content_type(content_type: &str) -> bool {
        let Ok(mime) = content_type.parse::<mime::Mime>() else {
            return false;
        };
        let json = mime.type_() == mime::APPLICATION && mime.subtype() == mime::JSON;
        let text = mime.type_() == mime::TEXT && mime.subtype() == mime::PLAIN;
        let utf8 = mime
            .get_param(mime::CHARSET)
            .is_none_or(|charset| charset == mime::UTF_8);
        (json || text) && utf8
    }

    fn schema_ref() -> MetaSchemaRef {
        EventBatchSchema::schema_ref()
    }

    fn register(registry: &mut Registry) {
        EventBatchSchema::register(registry);
    }
}

impl ParsePayload for IngestBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let received_at = OffsetDateTime::now_utc();
        let bytes = body::read_limited(request, body, MAX_BODY_BYTES).await?;
        let batch = read_batch(&bytes, received_at).map_err(|rejection| match rejection {
            BodyRejection::NotJson(e) => not_json(e),
            BodyRejection::Batch(rejection) => ApiError::from(rejection),
        })?;
        Ok(Self(batch))
    }
}

/// The refusal of a body that does not parse as JSON.
pub(super) fn not_json(error: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("the body is not valid JSON: {error}"))
}

/// The refusal of a read of an event that is not stored (or not in the key's game).
pub(super) fn no_such_event(event_id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no stored event has the id {event_id}"))
}

// The macro recurses by its bare name, so it must be in scope.
use poem_openapi::impl_apirequest_for_payload;
impl_apirequest_for_payload!(IngestBody);

/// The batch was queued durably.
#[derive(Debug, Object)]
#[oai(example)]
pub struct BatchAccepted {
    /// Follow the batch at `/v1/batches/{batch_id}`.
    pub batch_id: Uuid,
    /// Events in the batch.
    pub accepted: u32,
}

impl Example for BatchAccepted {
    fn example() -> Self {
        Self {
            batch_id: EXAMPLE_BATCH_ID,
            accepted: 7,
        }
    }
}

/// The batch id used in the documentation's examples.
pub const EXAMPLE_BATCH_ID: Uuid = uuid::uuid!("01937f3b-0a1c-7e2f-8a3b-4c5d6e7f8091");
/// An event id of the documentation's examples, for a 404.
pub const EXAMPLE_EVENT_ID: Uuid = uuid::uuid!("01937f3a-5c2e-7d41-9b6a-3e4f5a6b7c99");

#[derive(ApiResponse)]
pub enum IngestResponse {
    /// Queued; the batch and all its events are durable. Workers store the events shortly.
    #[oai(status = 202)]
    Accepted(
        Json<BatchAccepted>,
        /// Where to follow the batch: `/v1/batches/{batch_id}`.
        #[oai(header = "Location")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum GetEventResponse {
    /// The event, as it was sent and as it was stored.
    #[oai(status = 200)]
    Found(Json<StoredEvent>),
}

/// A stored event: `event` is the event as it was sent (`occurred_at` as the client
/// stated it, in UTC); the other fields are what the service added.
#[derive(Debug, Object)]
#[oai(example)]
pub struct StoredEvent {
    // No doc comment here: poem-openapi would wrap the `$ref` in an `allOf` to attach it,
    // which client generators (openapi-python-client) reject.
    pub event: Event,
    /// The batch it came in.
    pub batch_id: Uuid,
    /// `occurred_at` translated to the server's clock, using the batch's `sent_at`.
    pub corrected_occurred_at: OffsetDateTime,
    /// When the API accepted its batch.
    pub received_at: OffsetDateTime,
    /// When a worker stored it.
    pub processed_at: OffsetDateTime,
}

impl Example for StoredEvent {
    fn example() -> Self {
        let batch = examples::example_batch();
        let event = batch.events[2].clone();
        Self {
            corrected_occurred_at: batch.clock_skew().correct(event.header().occurred_at),
            event,
            batch_id: EXAMPLE_BATCH_ID,
            received_at: batch.received_at,
            processed_at: batch.received_at + time::Duration::milliseconds(38),
        }
    }
}

impl From<store::StoredEvent> for StoredEvent {
    fn from(s: store::StoredEvent) -> Self {
        Self {
            event: s.event,
            batch_id: s.batch_id,
            corrected_occurred_at: s.corrected_occurred_at,
            received_at: s.received_at,
            processed_at: s.processed_at,
        }
    }
}

pub struct EventsApi;

#[OpenApi(tag = "ApiTags::Events")]
impl EventsApi {
    /// Ingest a batch of events
    ///
    /// Validates every event and queues the batch. The 202 is sent only once the batch is
    /// durable. Either the whole batch is queued or, if any event is invalid, none of it
    /// (422 lists every invalid field). An event whose `event_id` was stored before is
    /// counted as a duplicate and not stored again, so a client may safely resend a batch
    /// whose response it did not receive.
    ///
    /// Needs an ingest key of the game the events belong to. Browsers may send the key as
    /// `?key=` and the batch as `text/plain` (what `navigator.sendBeacon` does); the batch
    /// is the same JSON either way.
    #[oai(path = "/v1/events", method = "post", operation_id = "ingest_events")]
    async fn ingest(
        &self,
        state: Data<&ApiState>,
        request_id: Data<&RequestId>,
        key: IngestKey,
        body: IngestBody,
    ) -> Result<IngestResponse, IngestProblem> {
        let game = &key.0.game;
        let accepted = body.0.events.len();
        debug_assert!(accepted <= MAX_EVENTS_PER_BATCH);
        // Refused, not accepted and then dropped by retention.
        if let Some(days) = game.retention_days.or(state.retention_days) {
            let too_old = crate::domain::retention::events_past_retention(&body.0, days);
            if !too_old.is_empty() {
                return Err(ApiError::InvalidEvents(too_old).into());
            }
        }
        state.limits.take(game, accepted)?;
        let batch_id = state
            .queue
            .enqueue(game.id, &body.0, &request_id.0 .0)
            .await?;
        let metrics = crate::metrics::metrics();
        metrics.events_accepted.inc_by(accepted as u64);
        metrics.batches_queued.inc();
        tracing::info!(%batch_id, accepted, game = %game.name, "batch queued");
        Ok(IngestResponse::Accepted(
            Json(BatchAccepted {
                batch_id,
                accepted: accepted as u32,
            }),
            format!("/v1/batches/{batch_id}"),
        ))
    }

    /// Read a stored event
    ///
    /// Needs a read key; finds only events of the key's game. 404 until a worker has
    /// stored it.
    #[oai(
        path = "/v1/events/:event_id",
        method = "get",
        operation_id = "get_event"
    )]
    async fn get(
        &self,
        state: Data<&ApiState>,
        key: ReadKey,
        event_id: Path<Uuid>,
    ) -> Result<GetEventResponse, EventLookupProblem> {
        match store::read::event(&state.pool, key.0.game.id, event_id.0).await? {
            Some(stored) => Ok(GetEventResponse::Found(Json(stored.into()))),
            None => Err(no_such_event(event_id.0).into()),
        }
    }
}
