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
