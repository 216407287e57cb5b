use std::time::Duration;

use actix_web::{get, HttpResponse};
use rdkafka::producer::Producer;
use serde_json::json;

use super::State;
use crate::auth::Caller;
use crate::error::{unavailable, ApiError};

/// Liveness, with the original service's answer.
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Server is Running")
}

/// Readiness: 503 while MongoDB or Kafka cannot be reached.
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
#[get("/health/load")]
pub async fn load(state: State, _caller: Caller) -> Result<HttpResponse, ApiError> {
    let observations = state
        .store
        .latest_observations(10)
        .await
        .map_err(|e| unavailable("the observation store", e))?;
    Ok(HttpResponse::Ok().json(observations))
}
