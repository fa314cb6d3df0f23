//! The HTTP API: one module per resource, one place for errors ([`problem`]).

pub mod auth;
pub mod batches;
mod body;
mod cors;
pub mod document;
pub mod events;
pub mod health;
pub mod observe;
pub mod problem;

use poem::endpoint::make_sync;
use poem::middleware::{NormalizePath, TrailingSlash};
use poem::web::Html;
use poem::{Endpoint, EndpointExt, Response, Route};
use poem_openapi::{ContactObject, LicenseObject, OpenApiService, ServerObject, Tags};
use std::sync::Arc;

use sqlx::PgPool;

use self::document::{ApiDocument, DocumentError};
use crate::auth::KeyCache;
use crate::queue::Queue;
use crate::rate_limit::RateLimiter;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub pool: PgPool,
    pub queue: Queue,
    pub keys: KeyCache,
    pub limits: Arc<RateLimiter>,
    /// How long games without their own retention keep their events (`None`: forever).
    pub retention_days: Option<u32>,
}

#[derive(Tags)]
pub enum ApiTags {
    /// Send events, read stored events.
    Events,
    /// Follow queued batches.
    Batches,
    /// Probes for orchestrators.
    Health,
}

type Apis = (events::EventsApi, batches::BatchesApi, health::HealthApi);

/// The API as poem-openapi describes it: its routes, and the document before
/// [`document`]'s adjustments (use [`api_document`] for the document).
pub fn openapi() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (events::EventsApi, batches::BatchesApi, health::HealthApi),
        "Game events API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Ingests game telemetry: sessions, level progression, purchases, virtual-currency \
         flows, custom and error events. Batches are validated, queued durably in \
         PostgreSQL and stored by workers; every error is `application/problem+json`.",
    )
    // Relative: the document is served by the API it describes, wherever that is, and
    // generated clients get a base URL they resolve against the document's.
    .server(ServerObject::new("/").description("The API that serves this document."))
    .contact(ContactObject::new().name("The game events team"))
    // Cargo.toml's `license`.
    .license(LicenseObject::new("MIT").url("https://opensource.org/licenses/MIT"))
}

/// The OpenAPI document, as served at `/openapi.json` and printed by `app openapi`.
pub fn api_document() -> Result<ApiDocument, DocumentError> {
    ApiDocument::adjust(&openapi().spec())
}

/// Swagger UI's page with `document` in place of poem-openapi's own (which the page embeds
/// verbatim), or `None` if it does not embed it.
fn swagger_page(
    service: &OpenApiService<Apis, ()>,
    poem_spec: &str,
    document: &str,
) -> Option<String> {
    let page = service.swagger_ui_html();
    page.contains(poem_spec)
        .then(|| page.replacen(poem_spec, document, 1))
}

/// The whole HTTP app.
pub fn app(state: ApiState) -> impl Endpoint {
    let service = openapi();
    let poem_spec = service.spec();
    // Swagger UI's page embeds the document; it gets the adjusted one.
    let (spec, docs) = match ApiDocument::adjust(&poem_spec) {
        Ok(document) => {
            let docs = swagger_page(&service, &poem_spec, &document.json).unwrap_or_else(|| {
                tracing::error!(
                    "Swagger UI's page does not embed the document: it shows poem-openapi's"
                );
                service.swagger_ui_html()
            });
            (document.json, docs)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot adjust the OpenAPI document: serving poem-openapi's");
            (poem_spec, service.swagger_ui_html())
        }
    };
    Route::new()
        .nest("/", service)
        .at("/docs", make_sync(move |_| Html(docs.clone())))
        .at(
            "/openapi.json",
            make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(spec.clone())
            }),
        )
        .at("/metrics", crate::metrics::endpoint(state.pool.clone()))
        .with(NormalizePath::new(TrailingSlash::Trim))
        .data(state)
        .around(cors::cors)
        .around(observe::observe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swagger_ui_shows_the_adjusted_document() {
        let service = openapi();
        let poem_spec = service.spec();
        let document = api_document().unwrap();
        let page = swagger_page(&service, &poem_spec, &document.json).unwrap();
        assert!(page.contains(&document.json));
        assert!(!page.contains(&poem_spec));
    }
}
