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

#[utoipa::path(
    post,
    path = "/api/addJob",
    operation_id = "addJob",
    tags = ["jobs", "compatibility"],
    summary = "Submit a job (compatibility route)",
    description = "Same as `POST /api/jobs`, answering 200 `{\"jobId\"}` as the original service did.",
    request_body(content = crate::openapi::schemas::JobSubmission, content_type = "application/json", description = "A JSON job. The `Content-Type` header is not checked; the body is read as JSON. Bodies over `LZ_MAX_BODY_BYTES` (default 1 MiB) answer 413."),
    responses((status = 200, description = "Recorded and queued.", body = crate::openapi::schemas::JobAccepted, content_type = "application/json"), (status = 400, response = crate::openapi::responses::BadSubmission), (status = 401, response = crate::openapi::responses::Unauthorized), (status = 413, response = crate::openapi::responses::PayloadTooLarge), (status = 503, response = crate::openapi::responses::Unavailable)),
)]
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
#[utoipa::path(
    get,
    path = "/api/status",
    operation_id = "statusAll",
    tags = ["jobs", "compatibility"],
    summary = "All the caller's jobs (compatibility route)",
    description = "The original service's listing. Prefer the paged `GET /api/jobs`.",
    responses((status = 200, description = "The caller's jobs, newest first, at most 1000, unpaged.", body = Vec<crate::routes::jobs::JobView>, content_type = "application/json", example = json!([{"id": "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f", "status": "succeeded", "outputFiles": ["http://127.0.0.1:8080/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/files/result.csv", "http://127.0.0.1:8080/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/files/plots/speed%20up.png"], "files": ["result.csv", "plots/speed up.png"], "logs": {"stdout": "http://127.0.0.1:8080/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/logs?stream=stdout", "stderr": "http://127.0.0.1:8080/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/logs?stream=stderr"}, "owner": "0b9d3f7e-51a2-4c8e-a3f0-7d2c1e9b8a64", "username": "alice", "url": "https://***@git.example.com/alice/heat-sim.git", "args": ["--steps", "1000", "--title", "two words"], "config": "{\"grid\":64}", "submittedAt": "2026-03-02T10:15:30.120Z", "startedAt": "2026-03-02T10:15:30.480Z", "finishedAt": "2026-03-02T10:15:42.903Z", "exitCode": 0, "error": null, "elapsedSeconds": 12.423, "workerId": "worker-7c9f", "attempt": 1}])), (status = 401, response = crate::openapi::responses::Unauthorized), (status = 503, response = crate::openapi::responses::Unavailable)),
)]
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

#[utoipa::path(
    get,
    path = "/api/status/{id}",
    operation_id = "statusOne",
    tags = ["jobs", "compatibility"],
    summary = "One job (compatibility route)",
    description = "Same as `GET /api/jobs/{id}`.",
    params(("id" = String, Path, description = "The job id (a UUID). Anything that is not a UUID answers 404, like an unknown id.", example = "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f")),
    responses(crate::openapi::responses::OneJob),
)]
#[get("/api/status/{id}")]
pub async fn status_one(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    show(&state, &caller, &req, &id).await
}

#[utoipa::path(
    get,
    path = "/api/deleteJob/{id}",
    operation_id = "deleteJobCompat",
    tags = ["jobs", "compatibility"],
    summary = "Cancel a job (compatibility route)",
    description = "Same as `DELETE /api/jobs/{id}`, with the original service's method and path.",
    params(("id" = String, Path, description = "The job id (a UUID). Anything that is not a UUID answers 404, like an unknown id.", example = "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f")),
    responses(crate::openapi::responses::CancelAnswers),
)]
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
#[utoipa::path(
    get,
    path = "/api/results/{id}/{file}",
    operation_id = "results",
    tags = ["files", "compatibility"],
    summary = "Download an output file or a log (compatibility route)",
    description = "The original service's download. `{file}` is an output file's path as in `GET /api/jobs/{id}/files/{path}`; `stdout.log` and `stderr.log` name the run's logs unless the job wrote output files with those names.",
    params(("id" = String, Path, description = "The job id (a UUID). Anything that is not a UUID answers 404, like an unknown id.", example = "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f"), ("file" = String, Path, description = "An output file's path relative to `output/` (may span several URL segments), or `stdout.log` / `stderr.log`.", example = "result.csv")),
    responses(crate::openapi::responses::OutputFile),
)]
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
#[utoipa::path(
    get,
    path = "/auth/{user}/{password}",
    operation_id = "loginInPath",
    tags = ["auth", "compatibility"],
    summary = "Log in (compatibility route)",
    description = "The original service's login. The password travels in the URL, where proxies and browser histories may keep it: prefer `POST /auth/token`. Percent-encode both segments.",
    params(("user" = String, Path, example = "alice"), ("password" = String, Path, example = "alice-pass")),
    responses((status = 200, response = crate::openapi::responses::Token), (status = 401, response = crate::openapi::responses::LoginRefused), (status = 503, response = crate::openapi::responses::Unavailable)),
    security(()),
)]
#[get("/auth/{user}/{password}")]
pub async fn login_in_path(
    oidc: web::Data<Oidc>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, password) = path.into_inner();
    super::auth::login(&oidc, &user, &password).await
}
