//! Every error the API returns, as `application/problem+json` (RFC 9457), in one place:
//! our own errors ([`ApiError`]) and poem's (unknown route, wrong method, wrong content
//! type, unparsable path parameter), converted by [`problem_for_poem_error`] into ours, so
//! that every error has one of our problem types and says what to do in our words.
//!
//! Each operation documents its problems with a [`problem_set!`]: per status, a
//! description, the headers that come with it, and an example built from a real
//! [`ApiError`] (Swagger UI shows each status its own; `api::document` puts them in).

use poem::error::{MethodNotAllowedError, NotFoundError, ResponseError};
use poem::http::{header, StatusCode};
use poem::Response;
use poem_openapi::error::{ContentTypeError, ParsePathError};
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::{Example, ToJSON, Type};
use poem_openapi::{ApiResponse, Object};

use crate::domain::{BatchRejection, FieldError};
use crate::queue::QueueError;
use crate::rate_limit::OverLimit;
use crate::store::ReadError;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// What a 503 tells the client to wait before retrying, in seconds.
const RETRY_AFTER_SECS: u32 = 2;
/// The challenge of a 401 (RFC 6750): how to authenticate, and whether the key sent was bad.
const CHALLENGE: &str = "Bearer realm=\"game-events\"";
const CHALLENGE_INVALID: &str = "Bearer realm=\"game-events\", error=\"invalid_token\"";

/// A problem details object (RFC 9457).
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(example)]
pub struct Problem {
    /// The kind of problem, a URI reference: `/problems/` and one of `bad-request` (400),
    /// `unauthorized` (401), `forbidden` (403), `not-found` (404), `method-not-allowed` (405),
    /// `request-timeout` (408), `body-too-large` or `too-many-events` (413),
    /// `unsupported-media-type` (415), `invalid-events` (422), `rate-limited` (429),
    /// `unavailable` (503) or `internal` (500, a bug).
    #[oai(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// For 422: every invalid field of every invalid event.
    #[oai(skip_serializing_if_is_none)]
    pub errors: Option<Vec<InvalidField>>,
    /// For 413: the limit that was exceeded (bytes or events); for 429: the game's rate
    /// limit, in events per second.
    #[oai(skip_serializing_if_is_none)]
    pub limit: Option<u64>,
}

impl Example for Problem {
    fn example() -> Self {
        Self::example_error().problem()
    }
}

impl Problem {
    /// The error of the schema's example (a 422, the richest kind).
    fn example_error() -> ApiError {
        ApiError::InvalidEvents(vec![FieldError {
            index: Some(3),
            pointer: "/events/3/currency".to_owned(),
            reason: "may contain only the letters A to Z (found 'u')".to_owned(),
        }])
    }
}

/// One invalid value in a request.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct InvalidField {
    /// Index of the event in `events`; absent for the request's own fields.
    #[oai(skip_serializing_if_is_none)]
    pub index: Option<u32>,
    /// JSON Pointer (RFC 6901) to the value, such as `/events/3/player_id`.
    pub field: String,
    /// Why it is invalid.
    pub reason: String,
}

impl From<FieldError> for InvalidField {
    fn from(e: FieldError) -> Self {
        Self {
            index: e.index.map(|i| i as u32),
            field: e.pointer,
            reason: e.reason,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{detail}")]
    Unauthorized {
        detail: String,
        /// Whether a key was sent (and was bad), as opposed to none at all.
        key_presented: bool,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("this path does not answer this method; `Allow` lists the methods it answers")]
    MethodNotAllowed,
    #[error("the request body is larger than the limit of {limit_bytes} bytes")]
    BodyTooLarge { limit_bytes: usize },
    #[error("a request may carry at most {limit} events, this one has {count}")]
    TooManyEvents { count: usize, limit: usize },
    #[error(
        "the request body was not received in full within {limit:?} of its head; the connection is closed"
    )]
    RequestTimeout { limit: std::time::Duration },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{} invalid field(s) in the request; nothing of it was queued", .0.len())]
    InvalidEvents(Vec<FieldError>),
    #[error("this game's rate limit of {} events per second (burst {}) is used up; \
             nothing of this request was queued: retry after {} s",
            .0.limit.events_per_sec, .0.limit.burst, .0.retry_after_secs())]
    RateLimited(OverLimit),
    #[error("the database is unavailable; retry shortly")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// The unsupported-media-type refusal of a body's `Content-Type` (`None`: there is none).
    pub fn unsupported_content_type(content_type: Option<&str>) -> Self {
        let what = match content_type {
            Some(content_type) => format!("the Content-Type {content_type:?} is not supported"),
            None => "the request has no Content-Type".to_owned(),
        };
        ApiError::UnsupportedMediaType(format!(
            "{what}: send the batch as application/json (or as text/plain holding the same \
             JSON, as navigator.sendBeacon does), in UTF-8"
        ))
    }

    /// The refusal of a path whose id is not a UUID.
    pub fn path_id_not_uuid() -> Self {
        ApiError::BadRequest(
            "the id in the path must be a UUID, such as 0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c7d"
                .to_owned(),
        )
    }

    pub(crate) fn problem(&self) -> Problem {
        let (slug, title) = match self {
            ApiError::BadRequest(_) => ("bad-request", "Bad request"),
            ApiError::Unauthorized { .. } => ("unauthorized", "Missing or invalid API key"),
            ApiError::Forbidden(_) => ("forbidden", "Not allowed with this API key"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            ApiError::BodyTooLarge { .. } => ("body-too-large", "Request body too large"),
            ApiError::TooManyEvents { .. } => ("too-many-events", "Too many events"),
            ApiError::RequestTimeout { .. } => ("request-timeout", "Request timeout"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::InvalidEvents(_) => ("invalid-events", "Invalid events"),
            ApiError::RateLimited(_) => ("rate-limited", "Rate limit exceeded"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("internal", "Internal server error"),
        };
        Problem {
            problem_type: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: self.status().as_u16(),
            detail: self.to_string(),
            errors: match self {
                ApiError::InvalidEvents(errors) => {
                    Some(errors.iter().cloned().map(Into::into).collect())
                }
                _ => None,
            },
            limit: match self {
                ApiError::BodyTooLarge { limit_bytes } => Some(*limit_bytes as u64),
                ApiError::TooManyEvents { limit, .. } => Some(*limit as u64),
                ApiError::RateLimited(over) => Some(u64::from(over.limit.events_per_sec)),
                _ => None,
            },
        }
    }

    /// Database errors that mean "not reachable right now" become 503; others are bugs.
    pub fn from_database(error: &sqlx::Error) -> Self {
        let unavailable = match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
            // Class 08: connection exceptions; 57P: the server is shutting down or starting.
            sqlx::Error::Database(e) => e
                .code()
                .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
            _ => false,
        };
        if unavailable {
            ApiError::Unavailable(error.to_string())
        } else {
            ApiError::Internal(error.to_string().into())
        }
    }
}

impl From<BatchRejection> for ApiError {
    fn from(rejection: BatchRejection) -> Self {
        match rejection {
            BatchRejection::TooManyEvents { count, limit } => {
                ApiError::TooManyEvents { count, limit }
            }
            BatchRejection::Invalid(errors) => ApiError::InvalidEvents(errors),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Database(e) => ApiError::from_database(&e),
            QueueError::Closed => ApiError::Unavailable("the service is shutting down".to_owned()),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl From<OverLimit> for ApiError {
    fn from(over: OverLimit) -> Self {
        ApiError::RateLimited(over)
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Database(e) => ApiError::from_database(&e),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from_database(&e)
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } | ApiError::TooManyEvents { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidEvents(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        match self {
            ApiError::Unavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            ApiError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
        let mut response = problem_response(&self.problem());
        let headers = response.headers_mut();
        match self {
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
            }
            ApiError::RateLimited(over) => {
                headers.insert(header::RETRY_AFTER, over.retry_after_secs().into());
            }
            ApiError::Unauthorized { key_presented, .. } => {
                let challenge = if *key_presented {
                    CHALLENGE_INVALID
                } else {
                    CHALLENGE
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(challenge),
                );
            }
            _ => {}
        }
        if matches!(self, ApiError::RequestTimeout { .. }) {
            // The rest of the body may still be on its way: the connection cannot carry
            // another request.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

fn problem_response(problem: &Problem) -> Response {
    let body = problem.to_json().map(|v| v.to_string()).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type(PROBLEM_JSON)
        .body(body)
}

/// The response for any error that reaches the top of the app: ours as they are, poem's
/// (routing, content type, path parameters) as the [`ApiError`] that says the same.
pub fn problem_for_poem_error(error: poem::Error) -> Response {
    if error.is::<ApiError>() {
        return error.into_response();
    }
    let status = error.status();
    let api_error = if error.is::<NotFoundError>() {
        ApiError::NotFound(
            "there is nothing at this path: /openapi.json lists the API's paths".to_owned(),
        )
    } else if error.is::<MethodNotAllowedError>() {
        ApiError::MethodNotAllowed
    } else if error.is::<ParsePathError>() {
        // poem-openapi's words name its internal parameter (`param0`) and type.
        ApiError::path_id_not_uuid()
    } else if let Some(content_type) = error.downcast_ref::<ContentTypeError>() {
        match content_type {
            ContentTypeError::NotSupported { content_type } => {
                ApiError::unsupported_content_type(Some(content_type))
            }
            ContentTypeError::ExpectContentType => ApiError::unsupported_content_type(None),
        }
    } else {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound(error.to_string()),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(error.to_string()),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge {
                limit_bytes: super::events::MAX_BODY_BYTES,
            },
            s if s.is_client_error() => ApiError::BadRequest(error.to_string()),
            _ => ApiError::Internal(error.to_string().into()),
        }
    };
    api_error.as_response()
}

/// The headers that come with every problem of a status, as the document declares them.
fn problem_headers(status: u16) -> Vec<MetaHeader> {
    let header = |name: &str, description: &str, schema| MetaHeader {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required: true,
        deprecated: false,
        schema,
    };
    match status {
        401 => vec![header(
            "WWW-Authenticate",
            "The challenge: `Bearer realm=\"game-events\"`, with `error=\"invalid_token\"` when a key was sent.",
            String::schema_ref(),
        )],
        429 | 503 => vec![header(
            "Retry-After",
            "Seconds to wait before retrying.",
            u32::schema_ref(),
        )],
        _ => vec![],
    }
}

/// Declares a set of problem responses that an operation documents, each status with its
/// description and an example [`ApiError`]; the value is an [`ApiError`], whatever its status.
macro_rules! problem_set {
    ($(#[doc = $doc:literal])* $name:ident: $($status:literal => $description:literal, $example:expr);+ $(;)?) => {
        $(#[doc = $doc])*
        #[derive(Debug)]
        pub struct $name(pub ApiError);

        impl $name {
            /// One example problem per documented status.
            pub fn examples() -> Vec<(u16, Problem)> {
                vec![$(($status, ApiError::problem(&$example))),+]
            }
        }

        impl<E: Into<ApiError>> From<E> for $name {
            fn from(e: E) -> Self {
                Self(e.into())
            }
        }

        impl From<$name> for poem::Error {
            fn from(e: $name) -> Self {
                poem::Error::from(e.0)
            }
        }

        impl ApiResponse for $name {
            fn meta() -> MetaResponses {
                MetaResponses {
                    responses: vec![$(MetaResponse {
                        description: $description,
                        status: Some($status),
                        status_range: None,
                        content: vec![MetaMediaType {
                            content_type: PROBLEM_JSON,
                            schema: Problem::schema_ref(),
                        }],
                        headers: problem_headers($status),
                    }),+],
                }
            }

            fn register(registry: &mut Registry) {
                Problem::register(registry);
            }
        }
    };
}

/// A rate-limit refusal for the examples: 20 events a second, a 1000-event burst used up.
fn example_over_limit() -> OverLimit {
    OverLimit {
        retry_after: std::time::Duration::from_millis(1500),
        limit: crate::auth::RateLimit {
            events_per_sec: 20,
            burst: 1000,
        },
    }
}

fn example_unavailable() -> ApiError {
    ApiError::Unavailable("pool timed out while waiting for an open connection".to_owned())
}

problem_set!(
    /// The errors of `POST /v1/events`.
    IngestProblem:
    400 => "The body is not valid JSON.",
        super::events::not_json("EOF while parsing a list at line 1 column 11");
    401 => "No API key, or one that is unknown or revoked (see `WWW-Authenticate`).",
        super::auth::missing_ingest_key();
    403 => "A read key, or a browser origin this game does not accept.",
        super::auth::read_key_sends_no_events();
    408 => "The body did not all arrive in time (60 s after the head, by default); the connection is closed.",
        ApiError::RequestTimeout { limit: std::time::Duration::from_secs(60) };
    413 => "The body is over 1 MiB (decompressed), or carries more than 1000 events.",
        ApiError::TooManyEvents { count: 1200, limit: crate::domain::MAX_EVENTS_PER_BATCH };
    415 => "The body is not `application/json` (or `text/plain`, as `sendBeacon` sends it), or its `Content-Encoding` is neither identity nor gzip.",
        ApiError::unsupported_content_type(Some("application/x-www-form-urlencoded"));
    422 => "Some events are invalid; `errors` lists every invalid field. Nothing was queued.",
        Problem::example_error();
    429 => "The game's rate limit is used up; nothing was queued. Retry after `Retry-After` seconds.",
        ApiError::RateLimited(example_over_limit());
    503 => "The database is unavailable; retry after `Retry-After` seconds.",
        example_unavailable();
);

problem_set!(
    /// The errors of `GET /v1/events/{event_id}`.
    EventLookupProblem:
    400 => "The id is not a UUID.", ApiError::path_id_not_uuid();
    401 => "No API key, or one that is unknown or revoked (see `WWW-Authenticate`); read keys go in the `Authorization` header only.",
        super::auth::missing_read_key();
    403 => "An ingest key: reading needs a read key.", super::auth::ingest_key_reads_nothing();
    404 => "No event with this id in the key's game (an event is found once it has been processed).",
        super::events::no_such_event(super::events::EXAMPLE_EVENT_ID);
    503 => "The database is unavailable; retry after `Retry-After` seconds.", example_unavailable();
);

problem_set!(
    /// The errors of `GET /v1/batches/{batch_id}`.
    BatchLookupProblem:
    400 => "The id is not a UUID.", ApiError::path_id_not_uuid();
    401 => "No API key, or one that is unknown or revoked (see `WWW-Authenticate`); read keys go in the `Authorization` header only.",
        super::auth::missing_read_key();
    403 => "An ingest key: reading needs a read key.", super::auth::ingest_key_reads_nothing();
    404 => "No batch with this id in the key's game.",
        super::batches::no_such_batch(super::events::EXAMPLE_BATCH_ID);
    503 => "The database is unavailable; retry after `Retry-After` seconds.", example_unavailable();
);
