use std::time::Duration;

use actix_web::{get, HttpResponse};
use rdkafka::producer::Producer;
use serde_json::json;

use super::State;
use crate::auth::Caller;
use crate::error::{unavailable, ApiError};

/// Liveness, with the original service's answer.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tags = ["health"],
    summary = "Liveness",
    description = "Answers as the original service did, without checking any backing service (see `/health/ready`).",
    responses((status = 200, description = "The process serves requests.", body = String, content_type = "text/plain")),
    security(()),
)]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Server is Running")
}

/// Readiness: 503 while MongoDB or Kafka cannot be reached.
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "ready",
    tags = ["health"],
    summary = "Readiness",
    description = "Checks MongoDB and Kafka. Object storage and the identity provider are not checked.",
    responses((status = 200, description = "MongoDB and Kafka answer.", body = crate::openapi::schemas::Readiness, content_type = "application/json", example = json!({"mongodb": "up", "kafka": "up"})), (status = 503, description = "MongoDB (ping, 3 s) or Kafka (metadata of the jobs topic, 2 s) does not answer.", body = crate::openapi::schemas::NotReady, content_type = "application/json")),
    security(()),
)]
#[get("/health/ready")]
pub async fn ready(state: State) -> HttpResponse {
    let mongo = tokio::time::timeout(Duration::from_secs(3), state.store.ping())
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let producer = state.producer.producer();
    let topic = state.kafka.jobs_topic.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(2))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let check = |r: &Result<(), String>| if r.is_ok() { "up" } else { "down" };
    let body = json!({"mongodb": check(&mongo), "kafka": check(&kafka)});
    if mongo.is_ok() && kafka.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        tracing::warn!(mongodb = ?mongo.err(), kafka = ?kafka.err(), "not ready");
        HttpResponse::ServiceUnavailable().json(json!({
            "error": "unavailable",
            "message": "a backing service is unreachable",
            "checks": body,
        }))
    }
}

/// The observer's last 10 observations, newest first.
#[utoipa::path(
    get,
    path = "/health/load",
    operation_id = "load",
    tags = ["health"],
    summary = "Latest observations of the load",
    description = "The observer's last 10 windows, read from MongoDB. Any signed-in user may read them.",
    responses((status = 200, description = "Up to 10 observations, newest first; empty before the observer has stored any.", body = Vec<common::Observation>, content_type = "application/json", example = json!([{"avgRateOfArrival": 3.0, "avgRateOfService": 2.0, "avgRateOfFinished": 2.0, "avgResponseTime": 4.75, "timestamp": 1772446532000_i64, "windowMs": 2000, "backlog": 5, "workers": 2, "partitions": 8, "decision": {"current": 2, "desired": 4, "reason": "3 waiting + 2 running, 0.60 jobs/s arriving, 5.0 s per job: 3.75 workers for arrivals at 80% utilisation + 0.25 to drain in 60 s => 4"}}])), (status = 401, response = crate::openapi::responses::Unauthorized), (status = 503, response = crate::openapi::responses::Unavailable)),
)]
#[get("/health/load")]
pub async fn load(state: State, _caller: Caller) -> Result<HttpResponse, ApiError> {
    let observations = state
        .store
        .latest_observations(10)
        .await
        .map_err(|e| unavailable("the observation store", e))?;
    Ok(HttpResponse::Ok().json(observations))
}
