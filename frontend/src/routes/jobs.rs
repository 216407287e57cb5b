//! The job resource: `/api/jobs` and `/api/jobs/{id}`. The original
//! routes, which answer the same things in their old shapes, are in
//! `compat.rs`.

use actix_web::{delete, get, http::header, post, web, HttpRequest, HttpResponse};
use common::{timestamp, JobId, JobRecord, JobSpec, JobState};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{parse_json_body, State};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::jobs::{Cancelled, ListFilter};

/// Characters kept as they are in a download link's path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A job record as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    id: JobId,
    status: JobState,
    /// Download URLs of the output files.
    output_files: Vec<String>,
    /// The output files' paths relative to `output/`.
    files: Vec<String>,
    /// Download URLs of the run's logs (once the job ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    logs: Option<serde_json::Value>,
    owner: String,
    username: String,
    url: String,
    args: Vec<String>,
    config: Option<String>,
    #[serde(with = "timestamp")]
    submitted_at: chrono::DateTime<chrono::Utc>,
    #[serde(with = "timestamp::option")]
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(with = "timestamp::option")]
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    exit_code: Option<i32>,
    error: Option<String>,
    elapsed_seconds: Option<f64>,
    worker_id: Option<String>,
    attempt: u32,
}

pub fn file_url(base: &str, id: JobId, path: &str) -> String {
    let encoded: Vec<String> = path
        .split('/')
        .map(|seg| utf8_percent_encode(seg, SEGMENT).to_string())
        .collect();
    format!("{base}/api/jobs/{id}/files/{}", encoded.join("/"))
}

impl JobView {
    pub fn new(r: JobRecord, base: &str) -> Self {
        let ran = r.started_at.is_some() || (r.status.is_terminal() && r.exit_code.is_some());
        let logs = ran.then(|| {
            json!({
                "stdout": format!("{base}/api/jobs/{}/logs?stream=stdout", r.id),
                "stderr": format!("{base}/api/jobs/{}/logs?stream=stderr", r.id),
            })
        });
        Self {
            id: r.id,
            status: r.status,
            output_files: r
                .output_files
                .iter()
                .map(|f| file_url(base, r.id, f))
                .collect(),
            files: r.output_files,
            logs,
            owner: r.owner,
            username: r.username,
            url: r.url,
            args: r.args,
            config: r.config,
            submitted_at: r.submitted_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            exit_code: r.exit_code,
            error: r.error,
            elapsed_seconds: r.elapsed_seconds,
            worker_id: r.worker_id,
            attempt: r.attempt,
        }
    }
}

/// Parses a submission body into a job spec (400 on anything the
/// contract refuses).
pub async fn parse_submission(state: &State, payload: web::Payload) -> Result<JobSpec, ApiError> {
    let body = parse_json_body(payload, state.max_body_bytes).await?;
    Ok(JobSpec::parse(
        &body,
        &state.policy.repos,
        &state.policy.limits,
    )?)
}

/// The answer to a cancel request, in the same shape on both routes.
pub fn cancelled(outcome: Cancelled) -> HttpResponse {
    match outcome {
        Cancelled::Now(id) => HttpResponse::Ok().json(json!({"jobId": id, "status": "cancelled"})),
        Cancelled::Requested(id) => HttpResponse::Accepted().json(json!({
            "jobId": id,
            "status": "running",
            "message": "cancellation requested; the worker stops the job and records it as cancelled",
        })),
    }
}

/// One job as the API shows it.
pub async fn show(
    state: &State,
    caller: &Caller,
    req: &HttpRequest,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let record = state.jobs.get(caller, id).await?;
    Ok(HttpResponse::Ok().json(JobView::new(record, &state.base_url(req))))
}

#[post("/api/jobs")]
pub async fn create_job(
    state: State,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let spec = parse_submission(&state, payload).await?;
    let id = state.jobs.submit(caller, spec).await?;
    let location = format!("{}/api/jobs/{id}", state.base_url(&req));
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(json!({"jobId": id, "status": "queued"})))
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    page: Option<u64>,
    #[serde(alias = "perPage")]
    per_page: Option<u64>,
}

impl ListQuery {
    /// The filter and the page it names (pages count from 1).
    fn parse(&self) -> Result<(ListFilter, u64, u64), ApiError> {
        let status = match self.status.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(JobState::parse(raw).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown status `{raw}`; use queued, running, succeeded, failed or cancelled"
                ))
            })?),
        };
        let page = self.page.unwrap_or(1).max(1);
        let per_page = self.per_page.unwrap_or(20);
        if !(1..=100).contains(&per_page) {
            return Err(ApiError::BadRequest(
                "`per_page` must be between 1 and 100".into(),
            ));
        }
        let filter = ListFilter {
            status,
            skip: (page - 1).saturating_mul(per_page),
            limit: per_page as i64,
        };
        Ok((filter, page, per_page))
    }
}

#[get("/api/jobs")]
pub async fn list_jobs(
    state: State,
    caller: Caller,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (filter, page, per_page) = query.parse()?;
    let found = state.jobs.list(&caller, filter).await?;
    let base = state.base_url(&req);
    Ok(HttpResponse::Ok().json(json!({
        "jobs": found.records.into_iter().map(|r| JobView::new(r, &base)).collect::<Vec<_>>(),
        "page": page,
        "perPage": per_page,
        "total": found.total,
    })))
}

#[get("/api/jobs/{id}")]
pub async fn get_job(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    show(&state, &caller, &req, &id).await
}

/// Cancels the job (`docs/api.md` explains why DELETE cancels and keeps
/// the record).
#[delete("/api/jobs/{id}")]
pub async fn delete_job(
    state: State,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(cancelled(state.jobs.cancel(&caller, &id).await?))
}
