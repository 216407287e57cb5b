//! The original service's routes, kept so that its clients (and its
//! Postman collection) keep working. Each delegates to the same workflow as
//! its better-shaped equivalent and only keeps the old shape of the answer.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde_json::json;

use super::files::{log_file, output_file};
use super::jobs::{cancelled, parse_submission, show, JobView};
use super::State;
use crate::auth::{Caller, Oidc};
use crate::error::ApiError;
use crate::jobs::ListFilter;
use common::LogStream;

/// The original route returns this many jobs at most, newest first.
const STATUS_CAP: i64 = 1000;

#[post("/api/addJob")]
pub async fn add_job(
    state: State,
    caller: Caller,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let spec = parse_submission(&state, payload).await?;
    let id = state.jobs.submit(caller, spec).await?;
    Ok(HttpResponse::Ok().json(json!({"jobId": id})))
}

/// Every job of the caller, unpaged.
#[get("/api/status")]
pub async fn status_all(
    state: State,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let filter = ListFilter {
        status: None,
        skip: 0,
        limit: STATUS_CAP,
    };
    let page = state.jobs.list(&caller, filter).await?;
    let base = state.base_url(&req);
    let views: Vec<JobView> = page
        .records
        .into_iter()
        .map(|r| JobView::new(r, &base))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[get("/api/status/{id}")]
pub async fn status_one(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    show(&state, &caller, &req, &id).await
}

#[get("/api/deleteJob/{id}")]
pub async fn delete_job(
    state: State,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(cancelled(state.jobs.cancel(&caller, &id).await?))
}

/// An output file, or `stdout.log` / `stderr.log` for the logs unless the
/// job wrote outputs with those names.
#[get("/api/results/{id}/{file:.*}")]
pub async fn results(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, file) = path.into_inner();
    let record = state.jobs.get(&caller, &id).await?;
    match LogStream::parse(&file) {
        Some(stream) if file.ends_with(".log") && !record.output_files.contains(&file) => {
            log_file(&state, &record, stream).await
        }
        _ => output_file(&state, &record, &file).await,
    }
}

/// Password login with the credentials in the path (they end up in access
/// logs: `POST /auth/token` is the route to use).
#[get("/auth/{user}/{password}")]
pub async fn login_in_path(
    oidc: web::Data<Oidc>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, password) = path.into_inner();
    super::auth::login(&oidc, &user, &password).await
}
