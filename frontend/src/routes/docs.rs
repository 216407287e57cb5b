use std::sync::OnceLock;

use actix_web::{get, HttpResponse};

use super::State;
use crate::error::ApiError;

/// The API description, generated from the code once per process.
fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(crate::openapi::json)
}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tags = ["operations"],
    summary = "This document",
    responses((status = 200, description = "The OpenAPI description of the API.", body = Object, content_type = "application/json")),
    security(()),
)]
#[get("/api/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tags = ["operations"],
    summary = "Prometheus metrics",
    description = "Not authenticated: restrict it at the network level if needed.",
    responses((status = 200, description = "Prometheus text exposition: `lanzadera_http_requests_total{route,method,status}`, `lanzadera_http_request_duration_seconds{route}` (histogram), `lanzadera_jobs_submitted_total`. `route` is the route pattern (e.g. `/auth/{user}/{password}`), never the concrete path.", body = String, content_type = "text/plain; version=0.0.4"), (status = 500, description = "The metrics could not be rendered.", body = crate::openapi::schemas::Error, content_type = "application/json", example = json!({"error": "internal", "message": "internal error; it has been logged"}))),
    security(()),
)]
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
