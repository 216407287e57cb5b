use actix_web::{delete, get, http::header, post, web, HttpRequest, HttpResponse};
use common::{
    timestamp, CancelRequest, JobId, JobMessage, JobRecord, JobSpec, JobState, Secret, StatusEvent,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{parse_json_body, State};
use crate::auth::Caller;
use crate::error::{unavailable, ApiError};

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

/// Records the job, then queues it. The answer comes only after both
/// succeeded; if queueing fails the record is removed again, so nothing is
/// left that a user would see as queued.
async fn submit(state: &State, caller: Caller, payload: web::Payload) -> Result<JobId, ApiError> {
    let body = parse_json_body(payload, state.max_body_bytes).await?;
    let spec = JobSpec::parse(&body, &state.jobs.repos, &state.jobs.limits)?;
    // From here on the work runs in a task of its own: a client that hangs
    // up drops this handler, and dropping it between the insert and the
    // produce would leave a record queued for ever with no message.
    tokio::spawn(enqueue(state.clone(), caller, spec))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the submission task failed");
            ApiError::Internal
        })?
}

async fn enqueue(state: State, caller: Caller, spec: JobSpec) -> Result<JobId, ApiError> {
    let id = JobId::new();
    let now = timestamp::now();
    let record = JobRecord::queued(
        id,
        caller.subject.clone(),
        caller.username,
        spec.url.redacted(),
        spec.args.clone(),
        spec.config.clone(),
        now,
    );
    state
        .store
        .insert(&record)
        .await
        .map_err(|e| unavailable("the job database", e))?;
    let message = JobMessage {
        id,
        owner: caller.subject.clone(),
        url: Secret::new(spec.url.expose().to_string()),
        redacted_url: spec.url.redacted().to_string(),
        args: spec.args,
        config: spec.config,
        submitted_at: now,
    };
    let key = id.to_string();
    if let Err(e) = state
        .producer
        .send_json(&state.kafka.jobs_topic, &key, &message)
        .await
    {
        for _ in 0..3 {
            match state.store.delete(id).await {
                Ok(()) => break,
                Err(del) => {
                    tracing::error!(job = %id, error = %del, "could not remove the record of an unqueued job")
                }
            }
        }
        return Err(unavailable("the job queue", e));
    }
    state.metrics.jobs_submitted.inc();
    tracing::info!(job = %id, owner = %caller.subject, url = %record.url, "job queued");
    // The observer counts arrivals from this event; the job is already
    // accepted, so its loss would only skew one window's count. It is
    // awaited all the same: sent in the background, these events piled up
    // in the producer at overload until they timed out (3,138 of 17,722 in
    // a benchmark run), where waiting slows submissions to what the broker
    // takes.
    let mut event = StatusEvent::new(id, caller.subject, JobState::Queued);
    event.at = now;
    let topic = &state.kafka.status_topic;
    if let Err(e) = state.producer.send_json(topic, &key, &event).await {
        tracing::warn!(job = %id, error = %e, "queued event not published");
    }
    Ok(id)
}

#[post("/api/addJob")]
pub async fn add_job(
    state: State,
    caller: Caller,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = submit(&state, caller, payload).await?;
    Ok(HttpResponse::Ok().json(json!({"jobId": id})))
}

#[post("/api/jobs")]
pub async fn create_job(
    state: State,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = submit(&state, caller, payload).await?;
    let location = format!("{}/api/jobs/{id}", state.base_url(&req));
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(json!({"jobId": id, "status": "queued"})))
}

/// Every job of the caller (the original route: unpaged, newest first,
/// capped).
#[get("/api/status")]
pub async fn status_all(
    state: State,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .store
        .list(&caller.subject, None, 0, 1000)
        .await
        .map_err(|e| unavailable("the job database", e))?;
    let base = state.base_url(&req);
    let views: Vec<JobView> = page
        .records
        .into_iter()
        .map(|r| JobView::new(r, &base))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    page: Option<u64>,
    #[serde(alias = "perPage")]
    per_page: Option<u64>,
}

#[get("/api/jobs")]
pub async fn list_jobs(
    state: State,
    caller: Caller,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(JobState::parse(raw).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown status `{raw}`; use queued, running, succeeded, failed or cancelled"
            ))
        })?),
    };
    let page = query.page.unwrap_or(1).max(1);
    let per_page = query.per_page.unwrap_or(20);
    if !(1..=100).contains(&per_page) {
        return Err(ApiError::BadRequest(
            "`per_page` must be between 1 and 100".into(),
        ));
    }
    let found = state
        .store
        .list(
            &caller.subject,
            status,
            (page - 1).saturating_mul(per_page),
            per_page as i64,
        )
        .await
        .map_err(|e| unavailable("the job database", e))?;
    let base = state.base_url(&req);
    Ok(HttpResponse::Ok().json(json!({
        "jobs": found.records.into_iter().map(|r| JobView::new(r, &base)).collect::<Vec<_>>(),
        "page": page,
        "perPage": per_page,
        "total": found.total,
    })))
}

/// The caller's job, or 404 for a missing id and another tenant's alike.
pub async fn owned_job(
    state: &State,
    caller: &Caller,
    raw_id: &str,
) -> Result<JobRecord, ApiError> {
    let id = JobId::parse(raw_id).ok_or_else(ApiError::job_not_found)?;
    state
        .store
        .get(&caller.subject, id)
        .await
        .map_err(|e| unavailable("the job database", e))?
        .ok_or_else(ApiError::job_not_found)
}

async fn show(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let record = owned_job(&state, &caller, id).await?;
    Ok(HttpResponse::Ok().json(JobView::new(record, &state.base_url(&req))))
}

#[get("/api/status/{id}")]
pub async fn status_one(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    show(state, caller, req, &id).await
}

#[get("/api/jobs/{id}")]
pub async fn get_job(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    show(state, caller, req, &id).await
}

/// Cancels a queued or running job. The request goes on the ignore topic
/// first (every worker sees it), then a queued record is marked cancelled;
/// a running job is stopped by its worker, which reports `cancelled`.
async fn cancel(state: State, caller: Caller, id: &str) -> Result<HttpResponse, ApiError> {
    let record = owned_job(&state, &caller, id).await?;
    if record.status.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "the job is already {}; only queued or running jobs can be cancelled",
            record.status
        )));
    }
    let request = CancelRequest {
        job_id: record.id,
        owner: caller.subject.clone(),
        requested_at: timestamp::now(),
    };
    state
        .producer
        .send_json(&state.kafka.cancel_topic, &record.id.to_string(), &request)
        .await
        .map_err(|e| unavailable("the job queue", e))?;
    let cancelled_now = record.status == JobState::Queued
        && state
            .store
            .cancel_queued(&caller.subject, record.id)
            .await
            .map_err(|e| unavailable("the job database", e))?;
    tracing::info!(job = %record.id, was = %record.status, "cancel requested");
    if cancelled_now {
        Ok(HttpResponse::Ok().json(json!({"jobId": record.id, "status": "cancelled"})))
    } else {
        Ok(HttpResponse::Accepted().json(json!({
            "jobId": record.id,
            "status": "running",
            "message": "cancellation requested; the worker stops the job and records it as cancelled",
        })))
    }
}

#[get("/api/deleteJob/{id}")]
pub async fn delete_job_compat(
    state: State,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    cancel(state, caller, &id).await
}

#[delete("/api/jobs/{id}")]
pub async fn delete_job(
    state: State,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    cancel(state, caller, &id).await
}
