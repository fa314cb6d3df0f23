//! Liveness and readiness probes.

use poem::web::Data;
use poem_openapi::payload::PlainText;
use poem_openapi::{ApiResponse, OpenApi};

use super::{ApiState, ApiTags};
use crate::db;

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database is reachable and its schema is current.
    #[oai(status = 200)]
    Ready(PlainText<&'static str>),
    /// Not ready: the database is unreachable or not migrated yet.
    #[oai(status = 503)]
    NotReady(PlainText<String>),
}

#[derive(ApiResponse)]
pub enum LiveResponse {
    /// The process is up and serving: `ok`.
    #[oai(status = 200)]
    Live(PlainText<&'static str>),
}

pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process is up
    ///
    /// For an orchestrator's liveness probe: answers `ok` whenever the process serves HTTP,
    /// without touching the database, so that a database outage does not get healthy API
    /// processes restarted. Needs no key.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> LiveResponse {
        LiveResponse::Live(PlainText("ok"))
    }

    /// Readiness: the database is reachable and migrated
    ///
    /// For an orchestrator's readiness probe or a load balancer's health check: `ready` when
    /// the database answers and its schema is current (every migration this binary knows is
    /// applied), 503 otherwise, with the reason. Needs no key.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&ApiState>) -> ReadyResponse {
        match db::schema_is_current(&state.pool).await {
            Ok(true) => ReadyResponse::Ready(PlainText("ready")),
            Ok(false) => ReadyResponse::NotReady(PlainText(
                "the database schema is not current: run `app migrate`".to_owned(),
            )),
            Err(e) => {
                ReadyResponse::NotReady(PlainText(format!("the database is unreachable: {e}")))
            }
        }
    }
}
