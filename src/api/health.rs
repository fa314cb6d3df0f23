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

pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process is up
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// Readiness: the database is reachable and migrated
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
