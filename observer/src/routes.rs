//! The observer's small HTTP surface: liveness, and the desired replica
//! count for KEDA's metrics-api scaler (`valueLocation: desiredReplicas`)
//! or anything else that polls.

use std::sync::RwLock;

use actix_web::{get, web, HttpResponse, Responder};
use serde::Serialize;

use crate::leadership::{Leadership, Standing};
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

/// Every observer serves its decision, so KEDA may poll any of them;
/// `leader` tells which one actuates.
#[derive(Serialize)]
struct DesiredAnswer {
    #[serde(flatten)]
    desired: Desired,
    #[serde(flatten)]
    standing: Standing,
}

#[get("/metrics/desired")]
async fn desired(
    state: web::Data<RwLock<Desired>>,
    leadership: web::Data<Leadership>,
) -> impl Responder {
    let desired = match state.read() {
        Ok(d) => d.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    HttpResponse::Ok().json(DesiredAnswer {
        desired,
        standing: leadership.standing(),
    })
}
