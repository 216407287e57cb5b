//! One module per resource; handlers are thin: they parse the request,
//! call one workflow (`crate::jobs`) and shape the answer. `configure` is
//! the one list of routes.

pub mod auth;
pub mod compat;
pub mod docs;
pub mod files;
pub mod health;
pub mod jobs;
pub mod methods;

use actix_web::{web, HttpRequest};
use common::settings::{JobPolicy, KafkaSettings};
use futures::StreamExt;
use s3::Bucket;

use crate::error::ApiError;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::store::JobStore;

/// What every handler may use.
pub struct AppState {
    pub jobs: Jobs,
    /// For the readiness probe and the load observations.
    pub store: JobStore,
    pub producer: common::kafka::Publisher,
    pub kafka: KafkaSettings,
    pub bucket: Box<Bucket>,
    pub policy: JobPolicy,
    pub public_url: Option<String>,
    pub max_body_bytes: usize,
    pub metrics: Metrics,
}

impl AppState {
    /// Where download links point: the configured public URL, or the
    /// address the client used.
    pub fn base_url(&self, req: &HttpRequest) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => {
                let info = req.connection_info();
                format!("{}://{}", info.scheme(), info.host())
            }
        }
    }
}

pub type State = web::Data<AppState>;

/// Every route the API serves. Registered through `utoipa_actix_web`, each
/// must carry its `#[utoipa::path]`, so the document lists every route.
/// (Order matters only where patterns overlap: none do.)
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(health::health)
        .service(health::ready)
        .service(health::load)
        .service(auth::login_with_body)
        .service(auth::sign_in_config)
        .service(jobs::create_job)
        .service(jobs::list_jobs)
        .service(jobs::get_job)
        .service(jobs::delete_job)
        .service(files::job_file)
        .service(files::job_logs)
        .service(docs::openapi)
        .service(docs::metrics)
        .service(compat::add_job)
        .service(compat::status_all)
        .service(compat::status_one)
        .service(compat::delete_job)
        .service(compat::results)
        .service(compat::login_in_path);
}

/// Reads the request body up to `limit` bytes, answering 413 beyond.
pub async fn read_limited(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::BadRequest(format!("the request body could not be read: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub async fn parse_json_body(
    payload: web::Payload,
    limit: usize,
) -> Result<serde_json::Value, ApiError> {
    let body = read_limited(payload, limit).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}
