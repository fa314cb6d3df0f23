//! The HTTP API: one module per resource, one place for errors ([`problem`]).

pub mod auth;
pub mod batches;
mod body;
mod cors;
pub mod events;
pub mod health;
pub mod observe;
pub mod problem;

use poem::middleware::{NormalizePath, TrailingSlash};
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::{OpenApiService, Tags};
use std::sync::Arc;

use sqlx::PgPool;

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

/// The OpenAPI description of the API (served at /openapi.json, printed by `app openapi`).
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
}

/// The whole HTTP app.
pub fn app(state: ApiState) -> impl Endpoint {
    let service = openapi();
    let docs = service.swagger_ui();
    let spec = service.spec_endpoint();
    Route::new()
        .nest("/", service)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .at("/metrics", crate::metrics::endpoint(state.pool.clone()))
        .with(NormalizePath::new(TrailingSlash::Trim))
        .data(state)
        .around(cors::cors)
        .around(observe::observe)
}
