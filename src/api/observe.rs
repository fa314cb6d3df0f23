//! Around every request: its id, its tracing span, its access-log line and metrics, and
//! the conversion of any error into problem+json.

use std::time::Instant;

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;
use uuid::Uuid;

use super::problem;
use crate::metrics::{metrics, HttpLabels};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the request being served: the client's `X-Request-Id` when it is a sane
/// token, a new UUIDv7 otherwise. Handlers read it with `Data<&RequestId>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    fn from_header(value: Option<&HeaderValue>) -> Self {
        let sane =
            |v: &&str| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
        match value.and_then(|v| v.to_str().ok()).filter(sane) {
            Some(id) => Self(id.to_owned()),
            None => Self(Uuid::now_v7().to_string()),
        }
    }
}

/// The route template of a path, as a metrics label (bounded, unlike paths with ids).
fn route_label(path: &str) -> &'static str {
    let mut parts = path.trim_end_matches('/').split('/').skip(1);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some("events"), None, _) => "/v1/events",
        (Some("v1"), Some("events"), Some(_), None) => "/v1/events/{event_id}",
        (Some("v1"), Some("batches"), Some(_), None) => "/v1/batches/{batch_id}",
        (Some("healthz"), None, ..) => "/healthz",
        (Some("readyz"), None, ..) => "/readyz",
        (Some("metrics"), None, ..) => "/metrics",
        (Some("openapi.json"), None, ..) => "/openapi.json",
        (Some("docs"), ..) => "/docs",
        _ => "other",
    }
}

pub async fn observe<E: Endpoint>(next: E, mut request: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let request_id = RequestId::from_header(request.headers().get(REQUEST_ID_HEADER));
    let route = route_label(request.uri().path());
    let method = request.method().to_string();
    let span = tracing::info_span!("request", request_id = %request_id.0, %method, route);
    request.extensions_mut().insert(request_id.clone());

    let mut response = match next.call(request).instrument(span.clone()).await {
        Ok(response) => response.into_response(),
        Err(error) => span.in_scope(|| problem::problem_for_poem_error(error)),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16();
    metrics()
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status,
        })
        .inc();
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        )
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_labelled_by_template() {
        assert_eq!(route_label("/v1/events"), "/v1/events");
        assert_eq!(route_label("/v1/events/"), "/v1/events");
        assert_eq!(
            route_label("/v1/events/0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c7d"),
            "/v1/events/{event_id}"
        );
        assert_eq!(route_label("/v1/batches/x"), "/v1/batches/{batch_id}");
        assert_eq!(route_label("/docs/index.css"), "/docs");
        assert_eq!(route_label("/v1/events/a/b"), "other");
        assert_eq!(route_label("/wp-admin"), "other");
    }

    #[test]
    fn request_ids_from_clients_are_kept_when_sane() {
        let kept = RequestId::from_header(Some(&HeaderValue::from_static("req-123")));
        assert_eq!(kept.0, "req-123");
        let long = "x".repeat(129);
        for bad in ["", "has space", long.as_str()] {
            let replaced = RequestId::from_header(Some(&HeaderValue::from_str(bad).unwrap()));
            assert!(Uuid::parse_str(&replaced.0).is_ok(), "{bad:?} kept");
        }
    }
}
