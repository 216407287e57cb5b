//! The job resource: `/api/jobs` and `/api/jobs/{id}`. The original
//! routes, which answer the same things in their old shapes, are in
//! `compat.rs`.

use actix_web::http::header::{self, ContentType, ETag, EntityTag, IfNoneMatch};
use actix_web::{delete, get, post, web, HttpMessage, HttpRequest, HttpResponse};
use common::{timestamp, JobId, JobRecord, JobSpec, JobState};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

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

/// A job as the API shows it. Links are built from `LZ_PUBLIC_URL` or,
/// when unset, from the scheme and host of the request. Timestamps are
/// RFC 3339 in UTC with exactly three fractional digits.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    #[schema(value_type = uuid::Uuid)]
    id: JobId,
    status: JobState,
    /// Download URLs of the output files (`/api/jobs/{id}/files/{path}`,
    /// each path segment percent-encoded), in the order of `files`.
    output_files: Vec<String>,
    /// The output files' paths relative to the job's `output/` folder
    /// (subfolders separated by `/`). Empty until the job has finished.
    files: Vec<String>,
    /// Present once the job has started (it has a start time, or it ended
    /// with an exit code); absent before. The logs are stored when the run
    /// ends, so until then the links answer 404, and so do they for a job
    /// that failed before its script started (for example in the clone).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::schemas::JobLinks>)]
    logs: Option<serde_json::Value>,
    /// The token subject (`sub`) of the submitter: the tenant.
    owner: String,
    /// The submitter's `preferred_username` (the subject if the token has
    /// none); for display only.
    username: String,
    /// The repository URL with any credentials replaced by `***`.
    url: String,
    /// The arguments after splitting.
    args: Vec<String>,
    /// The text written to `config.json` (an object submitted as `config`
    /// appears serialised).
    config: Option<String>,
    /// The branch, tag or commit asked for; absent: the remote's HEAD.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    git_ref: Option<String>,
    /// The job's own time limit, when it set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<u64>,
    /// The names of the secrets the job was given (sorted); their values
    /// are never returned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secret_names: Vec<String>,
    /// The commit id the latest attempt ran (40 hex digits), once it
    /// started.
    commit: Option<String>,
    #[serde(with = "timestamp")]
    submitted_at: chrono::DateTime<chrono::Utc>,
    /// When the latest attempt started.
    #[serde(with = "timestamp::option")]
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(with = "timestamp::option")]
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The start script's exit code.
    exit_code: Option<i32>,
    /// Why the job failed or was cancelled, in words a user can act on.
    error: Option<String>,
    /// Seconds the worker spent on the job (clone, run and upload), to the
    /// millisecond.
    elapsed_seconds: Option<f64>,
    /// The worker that ran (or runs) the job.
    worker_id: Option<String>,
    /// 0 until a worker starts the job; then how many times the worker that
    /// ran it received it (normally 1).
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
            git_ref: r.git_ref,
            timeout_seconds: r.timeout_seconds,
            secret_names: r.secret_names,
            commit: r.commit,
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

/// One job as the API shows it, with an `ETag` of that representation
/// (RFC 9110 §8.8.3): a poll that sends it back in `If-None-Match` gets a
/// bodiless 304 while nothing changed.
pub async fn show(
    state: &State,
    caller: &Caller,
    req: &HttpRequest,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let record = state.jobs.get(caller, id).await?;
    let body = serde_json::to_vec(&JobView::new(record, &state.base_url(req))).map_err(|e| {
        tracing::error!(error = %e, "cannot encode a job");
        ApiError::Internal
    })?;
    let tag = EntityTag::new_strong(content_tag(&body));
    let unchanged = match req.get_header::<IfNoneMatch>() {
        Some(IfNoneMatch::Any) => true,
        Some(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(&tag)),
        None => false,
    };
    // Revalidated on every use: a job that runs changes.
    let mut answer = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    answer
        .insert_header(ETag(tag))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"));
    Ok(if unchanged {
        answer.finish()
    } else {
        answer.content_type(ContentType::json()).body(body)
    })
}

/// A stable name for `body` (the same on every replica): its SHA-256,
/// shortened.
fn content_tag(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[utoipa::path(
    post,
    path = "/api/jobs",
    operation_id = "createJob",
    tags = ["jobs"],
    summary = "Submit a job",
    description = "Records the job as `queued` and puts it on the jobs topic; the answer comes only after both succeeded. If queueing fails the record is removed again and the answer is 503.",
    request_body(content = crate::openapi::schemas::JobSubmission, content_type = "application/json", description = "A JSON job. The `Content-Type` header is not checked; the body is read as JSON. Bodies over `LZ_MAX_BODY_BYTES` (default 1 MiB) answer 413."),
    responses((status = 201, description = "Recorded and queued.", body = crate::openapi::schemas::JobCreated, content_type = "application/json", headers(("Location" = String, description = "URL of the new job (`/api/jobs/{id}`)."))), (status = 400, response = crate::openapi::responses::BadSubmission), (status = 401, response = crate::openapi::responses::Unauthorized), (status = 413, response = crate::openapi::responses::PayloadTooLarge), (status = 503, response = crate::openapi::responses::Unavailable)),
)]
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

/// Pages beyond this are refused: their offset would not fit the database's
/// 64-bit skip (a user asking for them made a mistake, not a request).
const MAX_PAGE: u64 = 1_000_000_000;

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
        if page > MAX_PAGE {
            return Err(ApiError::BadRequest(format!(
                "`page` must be between 1 and {MAX_PAGE}"
            )));
        }
        let filter = ListFilter {
            status,
            skip: (page - 1) * per_page,
            limit: per_page as i64,
        };
        Ok((filter, page, per_page))
    }
}

#[utoipa::path(
    get,
    path = "/api/jobs",
    operation_id = "listJobs",
    tags = ["jobs"],
    summary = "List the caller's jobs",
    params(("status" = Option<common::JobState>, Query, description = "Only jobs in this state. Empty means all."), ("page" = Option<u64>, Query, description = "1-based page number, at most 1000000000; 0 is taken as 1."), ("per_page" = Option<u64>, Query, description = "Jobs per page, 1 to 100. `perPage` is accepted too.")),
    responses((status = 200, description = "One page of the caller's jobs, newest first.", body = crate::openapi::schemas::JobPage, content_type = "application/json"), (status = 400, response = crate::openapi::responses::BadQuery), (status = 401, response = crate::openapi::responses::Unauthorized), (status = 503, response = crate::openapi::responses::Unavailable)),
)]
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

#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    operation_id = "getJob",
    tags = ["jobs"],
    summary = "One job",
    params(("id" = String, Path, description = "The job id (a UUID). Anything that is not a UUID answers 404, like an unknown id.", example = "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f")),
    responses(crate::openapi::responses::OneJob),
)]
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
#[utoipa::path(
    delete,
    path = "/api/jobs/{id}",
    operation_id = "deleteJob",
    tags = ["jobs"],
    summary = "Cancel a job",
    description = "Cancels a queued or running job of the caller. The request is first published on the ignore topic that every worker reads. A queued job is then marked `cancelled` at once (200) and never runs; a job already taken by a worker is stopped by that worker, which records `cancelled` (202). The record itself is kept.",
    params(("id" = String, Path, description = "The job id (a UUID). Anything that is not a UUID answers 404, like an unknown id.", example = "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f")),
    responses(crate::openapi::responses::CancelAnswers),
)]
#[delete("/api/jobs/{id}")]
pub async fn delete_job(
    state: State,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(cancelled(state.jobs.cancel(&caller, &id).await?))
}
