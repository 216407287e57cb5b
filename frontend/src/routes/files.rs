//! Downloads, streamed from object storage without buffering whole files.

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{get, web, HttpResponse};
use common::layout::{log_key, output_key, LogStream};
use common::{JobRecord, OutputPath};
use s3::error::S3Error;
use serde::Deserialize;

use super::State;
use crate::auth::Caller;
use crate::error::{unavailable, ApiError};

async fn stream_object(
    state: &State,
    key: &str,
    file_name: &str,
) -> Result<HttpResponse, ApiError> {
    let object = match state.bucket.get_object_stream(key).await {
        Ok(object) if object.status_code == 404 => {
            return Err(ApiError::NotFound("the file is not stored (yet)".into()))
        }
        Ok(object) if object.status_code >= 300 => {
            return Err(unavailable(
                "object storage",
                format!("answered {}", object.status_code),
            ))
        }
        Ok(object) => object,
        Err(S3Error::HttpFailWithBody(404, _)) => {
            return Err(ApiError::NotFound("the file is not stored (yet)".into()))
        }
        Err(e) => return Err(unavailable("object storage", e)),
    };
    let mime = mime_guess::from_path(file_name).first_or_octet_stream();
    Ok(HttpResponse::Ok()
        .content_type(mime.as_ref())
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(file_name.to_string())],
        })
        .streaming(object.bytes))
}

/// One of the job's output files; the name must be one the worker
/// reported, so nothing outside the job's files can be reached.
pub async fn output_file(
    state: &State,
    record: &JobRecord,
    raw: &str,
) -> Result<HttpResponse, ApiError> {
    let path = OutputPath::parse(raw).ok_or_else(|| {
        ApiError::BadRequest(
            "invalid file name: use a path relative to the job's output folder".into(),
        )
    })?;
    if !record.output_files.iter().any(|f| f == path.as_str()) {
        return Err(ApiError::NotFound(format!(
            "the job has no output file `{}`",
            path.as_str()
        )));
    }
    stream_object(state, &output_key(record.id, &path), path.file_name()).await
}

pub async fn log_file(
    state: &State,
    record: &JobRecord,
    stream: LogStream,
) -> Result<HttpResponse, ApiError> {
    stream_object(state, &log_key(record.id, stream), stream.file_name()).await
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/files/{path}",
    operation_id = "jobFile",
    tags = ["files"],
    summary = "Download an output file",
    description = "One of the files the job wrote under `output/`; the name must be one of the job's `files`.",
    params(("id" = String, Path, description = "The job id (a UUID). Anything that is not a UUID answers 404, like an unknown id.", example = "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f"), ("path" = String, Path, description = "The file's path relative to `output/`, as listed in `files`. It may span several URL segments for subfolders (`plots/a.png`): the route takes the rest of the URL. Percent-encode each segment (the `outputFiles` links already are).", example = "result.csv")),
    responses(crate::openapi::responses::OutputFile),
)]
#[get("/api/jobs/{id}/files/{path:.*}")]
pub async fn job_file(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, file) = path.into_inner();
    let record = state.jobs.get(&caller, &id).await?;
    output_file(&state, &record, &file).await
}

#[derive(Deserialize)]
pub struct LogQuery {
    stream: Option<String>,
}

/// The run's standard output (default) or error: `?stream=stderr`.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}/logs",
    operation_id = "jobLogs",
    tags = ["files"],
    summary = "Download the run's standard output or error",
    params(("id" = String, Path, description = "The job id (a UUID). Anything that is not a UUID answers 404, like an unknown id.", example = "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f"), ("stream" = Option<String>, Query, description = "`stdout` (default) or `stderr`; `stdout.log` and `stderr.log` are accepted too.")),
    responses((status = 200, description = "The log, streamed (`Content-Disposition: attachment; filename=\"stdout.log\"` or `\"stderr.log\"`).", body = String, content_type = "text/plain", headers(("Content-Disposition" = String))), (status = 400, description = "`stream` is not `stdout` or `stderr`.", body = crate::openapi::schemas::Error, content_type = "application/json", example = json!({"error": "bad_request", "message": "`stream` must be stdout or stderr"})), (status = 401, response = crate::openapi::responses::Unauthorized), (status = 404, description = "No such job for the caller, or the log is not stored yet (the job has not run, or is still running).", body = crate::openapi::schemas::Error, content_type = "application/json", example = json!({"error": "not_found", "message": "the file is not stored (yet)"})), (status = 503, response = crate::openapi::responses::Unavailable)),
)]
#[get("/api/jobs/{id}/logs")]
pub async fn job_logs(
    state: State,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let record = state.jobs.get(&caller, &id).await?;
    let stream = match query.stream.as_deref() {
        None => LogStream::Stdout,
        Some(raw) => LogStream::parse(raw)
            .ok_or_else(|| ApiError::BadRequest("`stream` must be stdout or stderr".into()))?,
    };
    log_file(&state, &record, stream).await
}
