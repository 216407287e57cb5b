//! What travels on the Kafka topics. All JSON, camelCase; see
//! `docs/wire-formats.md`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{timestamp, JobId, JobSecrets, JobSpec, JobState, Secret};

/// A job on the jobs topic, keyed by job id. It carries the clone URL with
/// its credentials, so only the frontend writes and only workers read this
/// topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage {
    pub id: JobId,
    pub owner: String,
    pub url: Secret<String>,
    /// The url as users and logs see it.
    pub redacted_url: String,
    pub args: Vec<String>,
    pub config: Option<String>,
    /// The branch, tag or commit to run (checked by `GitRef`); absent: the
    /// remote's HEAD.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The job's own wall-clock limit, within the operator's maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The job's secrets: this message is the only place they are kept
    /// (`docs/contract.md` §2.3).
    #[serde(default, skip_serializing_if = "JobSecrets::is_empty")]
    pub secrets: JobSecrets,
    #[serde(with = "timestamp")]
    pub submitted_at: DateTime<Utc>,
}

impl JobMessage {
    /// The message that queues `spec` as job `id` of `owner`.
    pub fn new(id: JobId, owner: &str, spec: &JobSpec, submitted_at: DateTime<Utc>) -> Self {
        Self {
            id,
            owner: owner.to_string(),
            url: Secret::new(spec.url.expose().to_string()),
            redacted_url: spec.url.redacted().to_string(),
            args: spec.args.clone(),
            config: spec.config.clone(),
            git_ref: spec.git_ref.as_ref().map(|r| r.as_str().to_string()),
            timeout_seconds: spec.timeout_secs,
            secrets: spec.secrets.clone(),
            submitted_at,
        }
    }
}

/// A status change on the status topic, keyed by job id so that one job's
/// events stay in order. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEvent {
    pub job_id: JobId,
    pub owner: String,
    pub status: JobState,
    /// When the change happened (event time: the observer windows by it).
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_files: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The commit the attempt runs (on `running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl StatusEvent {
    pub fn new(job_id: JobId, owner: impl Into<String>, status: JobState) -> Self {
        Self {
            job_id,
            owner: owner.into(),
            status,
            at: timestamp::now(),
            worker_id: None,
            attempt: 0,
            exit_code: None,
            elapsed_seconds: None,
            output_files: None,
            error: None,
            commit: None,
        }
    }
}

/// A request to cancel a job, on the ignore topic that every worker reads
/// in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequest {
    pub job_id: JobId,
    pub owner: String,
    #[serde(with = "timestamp")]
    pub requested_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_event_wire_format() {
        let id = JobId::parse("6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f").unwrap();
        let mut e = StatusEvent::new(id, "sub-1", JobState::Succeeded);
        e.at = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .into();
        e.exit_code = Some(0);
        e.elapsed_seconds = Some(1.5);
        e.output_files = Some(vec!["result.csv".into()]);
        e.attempt = 1;
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({
                "jobId": "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f",
                "owner": "sub-1",
                "status": "succeeded",
                "at": "2026-11-22T10:00:00.000Z",
                "attempt": 1,
                "exitCode": 0,
                "elapsedSeconds": 1.5,
                "outputFiles": ["result.csv"]
            })
        );
        let back: StatusEvent = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn job_message_debug_hides_credentials() {
        let m = JobMessage {
            id: JobId::new(),
            owner: "o".into(),
            url: Secret::new("https://u:tok@h/o/r".into()),
            redacted_url: "https://***@h/o/r".into(),
            args: vec![],
            config: None,
            git_ref: None,
            timeout_seconds: None,
            secrets: [("TOKEN".to_string(), Secret::new("hunter22".to_string()))].into(),
            submitted_at: timestamp::now(),
        };
        assert!(!format!("{m:?}").contains("tok"));
        assert!(!format!("{m:?}").contains("hunter22"));
        // ...but the worker receives it.
        let sent = serde_json::to_value(&m).unwrap();
        assert_eq!(sent["url"], "https://u:tok@h/o/r");
        assert_eq!(sent["secrets"], json!({"TOKEN": "hunter22"}));
        let back: JobMessage = serde_json::from_value(sent).unwrap();
        assert_eq!(back.secrets["TOKEN"].expose(), "hunter22");
    }
}
