//! Storing a run's results: every regular file under `output/` (relative
//! paths kept) and the two logs, under the job's prefix.

use std::path::{Path, PathBuf};

use common::layout::{log_key, output_key, LogStream};
use common::{JobId, OutputPath};
use futures::{StreamExt, TryStreamExt};
use s3::error::S3Error;
use s3::Bucket;

/// Files uploaded at once: enough to hide per-request latency, few enough
/// not to starve the machine.
const PARALLEL_UPLOADS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("storage: {0}")]
    S3(#[from] S3Error),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The files of `output/` as (relative path, file on disk), sorted. Symbolic
/// links are skipped: one could point at any file of the worker's machine.
/// Names that cannot be served safely (control characters, backslashes)
/// are skipped too and reported.
pub async fn list_outputs(output_dir: PathBuf) -> (Vec<(OutputPath, PathBuf)>, Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        for entry in walkdir::WalkDir::new(&output_dir)
            .follow_links(false)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
        {
            let relative = entry
                .path()
                .strip_prefix(&output_dir)
                .ok()
                .and_then(|p| p.to_str())
                .and_then(OutputPath::parse);
            match relative {
                Some(path) => files.push((path, entry.into_path())),
                None => skipped.push(entry.path().display().to_string()),
            }
        }
        files.sort();
        (files, skipped)
    })
    .await
    .unwrap_or_default()
}

/// Uploads the outputs and the logs, then removes objects an earlier attempt
/// of the same job left under its prefix, so the job ends with one set of
/// results. Returns the relative paths of the outputs.
pub async fn upload_results(
    bucket: &Bucket,
    job: JobId,
    outputs: Vec<(OutputPath, PathBuf)>,
    logs: [(LogStream, &Path); 2],
) -> Result<Vec<String>, UploadError> {
    let mut uploads: Vec<(String, PathBuf, String)> = outputs
        .iter()
        .map(|(rel, file)| {
            let mime = mime_guess::from_path(rel.as_str())
                .first_or_octet_stream()
                .to_string();
            (output_key(job, rel), file.clone(), mime)
        })
        .collect();
    for (stream, file) in logs {
        if file.exists() {
            let mime = "text/plain; charset=utf-8".to_string();
            uploads.push((log_key(job, stream), file.to_path_buf(), mime));
        }
    }
    let keys: Vec<String> = uploads.iter().map(|(k, _, _)| k.clone()).collect();
    futures::stream::iter(uploads)
        .map(|(key, file, mime)| async move { put_file(bucket, &key, &file, &mime).await })
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect::<Vec<()>>()
        .await?;
    remove_stale(bucket, job, &keys).await?;
    Ok(outputs
        .into_iter()
        .map(|(rel, _)| rel.as_str().to_string())
        .collect())
}

async fn put_file(bucket: &Bucket, key: &str, file: &Path, mime: &str) -> Result<(), UploadError> {
    let read_error = |source| UploadError::Read {
        path: file.to_path_buf(),
        source,
    };
    let mut reader = tokio::fs::File::open(file).await.map_err(read_error)?;
    // Streams in parts: a large output never sits in memory whole.
    bucket
        .put_object_stream_with_content_type(&mut reader, key, mime)
        .await?;
    Ok(())
}

async fn remove_stale(bucket: &Bucket, job: JobId, keep: &[String]) -> Result<(), S3Error> {
    let prefix = format!("jobs/{job}/");
    for page in bucket.list(prefix, None).await? {
        for object in page.contents {
            if !keep.contains(&object.key) {
                bucket.delete_object(&object.key).await?;
            }
        }
    }
    Ok(())
}
