//! CORS for `POST /v1/events`, so that browser games on any origin can send events.
//!
//! Ingest keys are publishable, so any origin may send by default: answers carry
//! `Access-Control-Allow-Origin: *`, and never credentials (cookies are not how this API
//! authenticates). A game that lists its origins (`app games origins`) has events from
//! other origins refused with 403 by the ingest key's check (`api::auth`), which sees the
//! key; a preflight carries no key, so it is answered the same for every game. Only
//! `/v1/events` is cross-origin: the reads take secret keys, which belong on a backend.

use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

use super::problem;

/// How long a browser may cache a preflight's answer, in seconds (Chromium caps it at 2 h).
const MAX_AGE_SECS: u32 = 7200;
/// The request headers a browser game may send: the body's type and encoding, the key,
/// and a request id of its own.
const ALLOWED_HEADERS: &str = "authorization, content-type, content-encoding, x-request-id";
/// The response headers a page may read: where the batch is, the request's id, how long
/// to wait after a 429 or 503, and a 401's challenge.
const EXPOSED_HEADERS: &str = "location, x-request-id, retry-after, www-authenticate";
/// The methods of `/v1/events`, for `Allow`.
pub const INGEST_METHODS: &str = "OPTIONS, POST";

fn is_ingest_path(path: &str) -> bool {
    path.trim_end_matches('/') == "/v1/events"
}

pub async fn cors<E: Endpoint>(next: E, request: Request) -> poem::Result<Response> {
    if !is_ingest_path(request.uri().path()) {
        return next.call(request).await.map(IntoResponse::into_response);
    }
    if request.method() == Method::OPTIONS {
        return Ok(options(&request));
    }
    let from_browser = request.headers().contains_key(header::ORIGIN);
    let result = next.call(request).await;
    if !from_browser {
        return result.map(IntoResponse::into_response);
    }
    // The page must be able to read errors too (a 422's `errors`, a 429's Retry-After),
    // so the error becomes its response here, where the headers can be added.
    let mut response = match result {
        Ok(response) => response.into_response(),
        Err(error) => problem::problem_for_poem_error(error),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    Ok(response)
}

/// `OPTIONS /v1/events`: a CORS preflight, or a plain question of what the path allows.
fn options(request: &Request) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static(INGEST_METHODS));
    let preflight = request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECS.into());
    }
    response
}
