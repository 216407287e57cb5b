//! The job record kept in MongoDB (collection `jobs`, `_id` = job id).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{timestamp, JobId, JobSpec, JobState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    #[serde(rename = "_id")]
    pub id: JobId,
    /// The token subject of the submitter: the tenant.
    pub owner: String,
    /// Kept for display only; never used for access decisions.
    pub username: String,
    /// Credentials removed.
    pub url: String,
    pub args: Vec<String>,
    pub config: Option<String>,
    /// As submitted; the commit it resolved to is `commit`.
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// The names of the job's secrets; their values are never stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_names: Vec<String>,
    /// The commit the latest attempt ran, once it started.
    #[serde(default)]
    pub commit: Option<String>,
    pub status: JobState,
    #[serde(with = "timestamp")]
    pub submitted_at: DateTime<Utc>,
    #[serde(default, with = "timestamp::option")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, with = "timestamp::option")]
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub elapsed_seconds: Option<f64>,
    #[serde(default)]
    pub output_files: Vec<String>,
    pub worker_id: Option<String>,
    #[serde(default)]
    pub attempt: u32,
}

impl JobRecord {
    /// The record of `spec` accepted as job `id`: the url without its
    /// credentials.
    pub fn queued(
        id: JobId,
        owner: &str,
        username: &str,
        spec: &JobSpec,
        submitted_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            owner: owner.to_string(),
            username: username.to_string(),
            url: spec.url.redacted().to_string(),
            args: spec.args.clone(),
            config: spec.config.clone(),
            git_ref: spec.git_ref.as_ref().map(|r| r.as_str().to_string()),
            timeout_seconds: spec.timeout_secs,
            secret_names: spec.secrets.keys().cloned().collect(),
            commit: None,
            status: JobState::Queued,
            submitted_at,
            started_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
            elapsed_seconds: None,
            output_files: Vec::new(),
            worker_id: None,
            attempt: 0,
        }
    }
}
