//! Around every request: its id, its tracing span, its access-log line and metrics, and
//! the conversion of any error into problem+json.

use std::time::Instant;

use poem::http::{header, HeaderValue, StatusCode, Uri};
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;
use uuid::Uuid;

use super::auth::KEY_PARAM;
use super::cors::INGEST_METHODS;
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

/// A route: its template (a metrics label, bounded unlike paths with ids) and the
/// methods it answers (the `Allow` of a 405).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    template: &'static str,
    methods: &'static str,
}

const fn route(template: &'static str, methods: &'static str) -> Option<Route> {
    Some(Route { template, methods })
}

/// The route of a path, if it is one of ours.
fn route_of(path: &str) -> Option<Route> {
    let mut parts = path.trim_end_matches('/').split('/').skip(1);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some("events"), None, _) => route("/v1/events", INGEST_METHODS),
        (Some("v1"), Some("events"), Some(_), None) => route("/v1/events/{event_id}", "GET"),
        (Some("v1"), Some("batches"), Some(_), None) => route("/v1/batches/{batch_id}", "GET"),
        (Some("healthz"), None, ..) => route("/healthz", "GET"),
        (Some("readyz"), None, ..) => route("/readyz", "GET"),
        (Some("metrics"), None, ..) => route("/metrics", "GET"),
        (Some("openapi.json"), None, ..) => route("/openapi.json", "GET"),
        (Some("docs"), ..) => route("/docs", "GET"),
        _ => None,
    }
}

fn route_label(path: &str) -> &'static str {
    route_of(path).map_or("other", |r| r.template)
}

/// The request's path and query for the access log, with the value of an API key in the
/// query (`?key=`, from browsers' sendBeacon) replaced, so that no key is ever logged.
fn loggable_uri(uri: &Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name == KEY_PARAM => format!("{KEY_PARAM}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", redacted.join("&"))
}

pub async fn observe<E: Endpoint>(next: E, mut request: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let request_id = RequestId::from_header(request.headers().get(REQUEST_ID_HEADER));
    let path = request.uri().path().to_owned();
    let route = route_label(&path);
    let method = request.method().to_string();
    let uri = loggable_uri(request.uri());
    let span = tracing::info_span!("request", request_id = %request_id.0, %method, route, %uri);
    request.extensions_mut().insert(request_id.clone());

    let mut response = match next.call(request).instrument(span.clone()).await {
        Ok(response) => response.into_response(),
        Err(error) => span.in_scope(|| problem::problem_for_poem_error(error)),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(route) = route_of(&path) {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(route.methods));
        }
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
    fn the_routes_allow_what_the_openapi_document_declares() {
        let spec: serde_json::Value = serde_json::from_str(&crate::api::openapi().spec()).unwrap();
        let paths = spec["paths"].as_object().unwrap();
        for (template, operations) in paths {
            let mut declared: Vec<String> = operations
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_ascii_uppercase())
                .collect();
            if template == "/v1/events" {
                // OPTIONS is CORS's (api/cors.rs), outside the document.
                declared.push("OPTIONS".to_owned());
            }
            declared.sort();
            let route = route_of(template).unwrap_or_else(|| panic!("no route for {template}"));
            assert_eq!(route.template, template);
            let mut allowed: Vec<&str> = route.methods.split(", ").collect();
            allowed.sort();
            assert_eq!(allowed, declared, "{template}");
        }
    }

    #[test]
    fn keys_in_the_query_are_redacted_from_the_log() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(loggable_uri(&uri("/v1/events")), "/v1/events");
        assert_eq!(
            loggable_uri(&uri("/v1/events?key=AbC123&x=1")),
            "/v1/events?key=[redacted]&x=1"
        );
        assert_eq!(
            loggable_uri(&uri("/v1/events?x=1&key=AbC123&key=Z")),
            "/v1/events?x=1&key=[redacted]&key=[redacted]"
        );
        assert_eq!(loggable_uri(&uri("/v1/events?keys=1")), "/v1/events?keys=1");
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
