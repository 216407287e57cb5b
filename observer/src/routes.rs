//! The observer's small HTTP surface: liveness, and the desired replica
//! count for KEDA's metrics-api scaler (`valueLocation: desiredReplicas`)
//! or anything else that polls.

use std::sync::RwLock;

use actix_web::{get, web, HttpResponse, Responder};

use crate::observer::Desired;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health).service(desired);
}

#[get("/health")]
async fn health() -> impl Responder {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("Observer is running")
}

#[get("/metrics/desired")]
async fn desired(state: web::Data<RwLock<Desired>>) -> impl Responder {
    let current = match state.read() {
        Ok(d) => d.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    HttpResponse::Ok().json(current)
}
