//! Every error the API returns, as `application/problem+json` (RFC 9457), in one place:
//! our own errors ([`ApiError`]) and poem's (unknown route, wrong method, wrong content
//! type, unparsable path parameter), converted by [`problem_for_poem_error`].

use poem::error::ResponseError;
use poem::http::{header, StatusCode};
use poem::Response;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
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
    /// URI reference that identifies the kind of problem.
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
        ApiError::InvalidEvents(vec![FieldError {
            index: Some(3),
            pointer: "/events/3/currency".to_owned(),
            reason: "may contain only the letters A to Z (found 'u')".to_owned(),
        }])
        .problem()
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
    fn problem(&self) -> Problem {
        let (slug, title) = match self {
            ApiError::BadRequest(_) => ("bad-request", "Bad request"),
            ApiError::Unauthorized { .. } => ("unauthorized", "Missing or invalid API key"),
            ApiError::Forbidden(_) => ("forbidden", "Not allowed with this API key"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
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

/// The response for any error that reaches the top of the app.
pub fn problem_for_poem_error(error: poem::Error) -> Response {
    if error.is::<ApiError>() {
        return error.into_response();
    }
    let status = error.status();
    let api_error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound(error.to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(error.to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge {
            limit_bytes: super::events::MAX_BODY_BYTES,
        },
        s if s.is_client_error() => {
            // 405 and other client errors keep their status, in problem form.
            let problem = Problem {
                problem_type: "about:blank".to_owned(),
                title: s.canonical_reason().unwrap_or("Client error").to_owned(),
                status: s.as_u16(),
                detail: error.to_string(),
                errors: None,
                limit: None,
            };
            return problem_response(&problem);
        }
        _ => ApiError::Internal(error.to_string().into()),
    };
    api_error.as_response()
}

/// Declares a set of problem responses that an operation documents; the value is an
/// [`ApiError`], whatever its status.
macro_rules! problem_set {
    ($(#[doc = $doc:literal])* $name:ident: $($status:literal => $description:literal),+ $(,)?) => {
        $(#[doc = $doc])*
        #[derive(Debug)]
        pub struct $name(pub ApiError);

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
                        headers: vec![],
                    }),+],
                }
            }

            fn register(registry: &mut Registry) {
                Problem::register(registry);
            }
        }
    };
}

problem_set!(
    /// The errors of `POST /v1/events`.
    IngestProblem:
    400 => "The body is not valid JSON.",
    401 => "No API key, or one that is unknown or revoked (see `WWW-Authenticate`).",
    403 => "A read key, or a browser origin this game does not accept.",
    408 => "The body did not all arrive in time (60 s after the head, by default); the connection is closed.",
    413 => "The body is over 1 MiB (decompressed), or carries more than 1000 events.",
    415 => "The body is not `application/json` (or `text/plain`, as `sendBeacon` sends it), or its `Content-Encoding` is neither identity nor gzip.",
    422 => "Some events are invalid; `errors` lists every invalid field. Nothing was queued.",
    429 => "The game's rate limit is used up; nothing was queued. Retry after `Retry-After` seconds.",
    503 => "The database is unavailable; retry after `Retry-After` seconds.",
);

problem_set!(
    /// The errors of lookups by id.
    LookupProblem:
    400 => "The id is not a UUID.",
    401 => "No API key, or one that is unknown or revoked (see `WWW-Authenticate`); read keys go in the `Authorization` header only.",
    403 => "An ingest key: reading needs a read key.",
    404 => "Nothing with this id in the key's game (an event is found once it has been processed).",
    503 => "The database is unavailable; retry after `Retry-After` seconds.",
);
