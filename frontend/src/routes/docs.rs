use actix_web::{get, HttpResponse};

use super::State;
use crate::error::ApiError;

/// The API description, kept in `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

#[get("/api/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

#[get("/metrics")]
pub async fn metrics(state: State) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.render().map_err(|e| {
        tracing::error!(error = %e, "metrics could not be rendered");
        ApiError::Internal
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}
