//! Running one job from its message to its results: fresh folder, clone,
//! `package.json`, `config.json` and `output/`, the scripts, the upload,
//! and the folder's removal. The consumer loop around it deals with Kafka.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::storage::LogStream;
use common::{JobMessage, JobState};
use s3::Bucket;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cancels::Cancels;
use crate::git::{self, CloneError};
use crate::process::{self, RunEnd, RunSpec, Stage};
use crate::settings::{JobUser, WorkerSettings};
use crate::upload;

/// Why a job stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its owner cancelled it.
    Cancelled,
    /// The worker is shutting down and the grace period is over: the job
    /// goes back to the group, uncommitted.
    Shutdown,
}

/// What the user sees at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub output_files: Vec<String>,
}

impl Report {
    fn failed(error: impl Into<String>) -> Self {
        Self {
            state: JobState::Failed,
            exit_code: None,
            error: Some(error.into()),
            output_files: Vec::new(),
        }
    }

    fn cancelled(error: &str) -> Self {
        Self {
            state: JobState::Cancelled,
            exit_code: None,
            error: Some(error.into()),
            output_files: Vec::new(),
        }
    }
}

pub enum Execution {
    Done(Report),
    HandedBack,
}

pub struct JobRunner {
    pub settings: Arc<WorkerSettings>,
    pub bucket: Box<Bucket>,
    pub cancels: Cancels,
}

/// The scripts `npm run start` runs, read from `package.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub prestart: Option<String>,
    pub start: String,
    pub poststart: Option<String>,
}

impl Package {
    pub fn parse(text: &str) -> Result<Self, String> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| format!("package.json is not valid JSON: {e}"))?;
        let script = |name: &str| {
            json.get("scripts")
                .and_then(|s| s.get(name))
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        };
        let text_field = |name: &str| {
            json.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let start = script("start").ok_or(
            "package.json has no `scripts.start`: add the command that runs the job, e.g. \
             {\"scripts\": {\"start\": \"node main.js\"}}",
        )?;
        Ok(Self {
            name: text_field("name"),
            version: text_field("version"),
            prestart: script("prestart"),
            start,
            poststart: script("poststart"),
        })
    }

    /// As `npm run start -- <args>`: `prestart`, `start` with the args, then
    /// `poststart`, stopping at the first failure.
    pub fn stages(&self, args: &[String]) -> Vec<Stage> {
        let stage = |name: &str, script: &str, args: Vec<String>| Stage {
            name: name.to_string(),
            script: script.to_string(),
            args,
        };
        let mut stages = Vec::new();
        if let Some(pre) = &self.prestart {
            stages.push(stage("prestart", pre, vec![]));
        }
        stages.push(stage("start", &self.start, args.to_vec()));
        if let Some(post) = &self.poststart {
            stages.push(stage("poststart", post, vec![]));
        }
        stages
    }
}

impl JobRunner {
    /// Runs `job`. `shutdown` turns true when the grace period is over.
    pub async fn execute(
        &self,
        job: &JobMessage,
        attempt: u32,
        shutdown: watch::Receiver<bool>,
    ) -> Execution {
        let dir = self.settings.work_dir.join(job.id.to_string());
        let result = self.execute_in(job, attempt, &dir, shutdown).await;
        let cleanup = dir.clone();
        let removed = tokio::task::spawn_blocking(move || remove_dir(&cleanup)).await;
        if !matches!(removed, Ok(Ok(()))) {
            tracing::warn!(dir = %dir.display(), "could not remove the job's folder");
        }
        result
    }

    async fn execute_in(
        &self,
        job: &JobMessage,
        attempt: u32,
        dir: &Path,
        shutdown: watch::Receiver<bool>,
    ) -> Execution {
        let settings = &self.settings;
        let repo = dir.join("repo");
        let home = dir.join("home");
        let tmp = dir.join("tmp");
        let prepared = async {
            let _ = remove_dir(dir);
            for d in [&home, &tmp] {
                tokio::fs::create_dir_all(d).await?;
            }
            Ok::<_, std::io::Error>(())
        };
        if let Err(e) = prepared.await {
            tracing::error!(error = %e, "cannot create the job's folder");
            return Execution::Done(Report::failed(
                "the worker could not prepare a folder for the job; it can be resubmitted",
            ));
        }

        let clone_deadline = Instant::now() + settings.job_timeout;
        let phase = std::time::Instant::now();
        let clone = self.clone_repo(job, &repo, clone_deadline, shutdown.clone());
        match clone.await {
            Ok(()) => tracing::info!(ms = phase.elapsed().as_millis() as u64, "repository cloned"),
            Err(Cloned::Failed(message)) => return Execution::Done(Report::failed(message)),
            Err(Cloned::TimedOut) => {
                return Execution::Done(Report::failed(format!(
                    "timed out after {} s while cloning the repository",
                    settings.job_timeout.as_secs()
                )))
            }
            Err(Cloned::Stopped(Stop::Cancelled)) => {
                return Execution::Done(Report::cancelled("cancelled while cloning"))
            }
            Err(Cloned::Stopped(Stop::Shutdown)) => return Execution::HandedBack,
        }

        let package = match tokio::fs::read_to_string(repo.join("package.json")).await {
            Ok(text) => match Package::parse(&text) {
                Ok(p) => p,
                Err(message) => return Execution::Done(Report::failed(message)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Execution::Done(Report::failed(
                    "package.json not found in the repository root: it must define \
                     `scripts.start`, the command that runs the job",
                ))
            }
            Err(e) => {
                return Execution::Done(Report::failed(format!("cannot read package.json: {e}")))
            }
        };

        let output_dir = repo.join("output");
        if let Some(config) = &job.config {
            if let Err(e) = tokio::fs::write(repo.join("config.json"), config).await {
                return Execution::Done(Report::failed(format!("cannot write config.json: {e}")));
            }
        }
        if let Err(e) = tokio::fs::create_dir_all(&output_dir).await {
            return Execution::Done(Report::failed(format!("cannot create output/: {e}")));
        }
        if let Some(user) = settings.job_user {
            let owned = dir.to_path_buf();
            let given = tokio::task::spawn_blocking(move || give_to(&owned, user)).await;
            if !matches!(given, Ok(Ok(()))) {
                tracing::error!("cannot hand the job's folder to its user");
                return Execution::Done(Report::failed(
                    "the worker could not prepare a folder for the job; it can be resubmitted",
                ));
            }
        }

        let stdout_log = dir.join("stdout.log");
        let stderr_log = dir.join("stderr.log");
        let spec = RunSpec {
            repo: &repo,
            stages: package.stages(&job.args),
            env: job_environment(settings, job, attempt, &package, &repo, &home, &tmp),
            stdout_log: &stdout_log,
            stderr_log: &stderr_log,
            max_log_bytes: settings.max_log_bytes,
            output_dir: &output_dir,
            max_output_bytes: settings.max_output_bytes,
            deadline: Instant::now() + settings.job_timeout,
            user: settings.job_user,
        };
        let phase = std::time::Instant::now();
        let end = process::run(&spec, self.stopped(job, shutdown)).await;
        tracing::info!(ms = phase.elapsed().as_millis() as u64, "scripts ended");
        let mut report = match end {
            RunEnd::Exited(0) => Report {
                state: JobState::Succeeded,
                exit_code: Some(0),
                error: None,
                output_files: Vec::new(),
            },
            RunEnd::Exited(code) => Report {
                exit_code: Some(code),
                ..Report::failed(format!(
                    "the start script exited with code {code}; see stderr.log"
                ))
            },
            RunEnd::Signalled(signal) => Report {
                exit_code: Some(128 + signal),
                ..Report::failed(format!(
                    "the start script was killed by signal {signal}; see stderr.log"
                ))
            },
            RunEnd::TimedOut => Report::failed(format!(
                "timed out after {} s; the whole process group was killed",
                settings.job_timeout.as_secs()
            )),
            RunEnd::OutputTooLarge(bytes) => Report::failed(format!(
                "output/ grew to {bytes} bytes, over the limit of {} bytes; the job was killed",
                settings.max_output_bytes
            )),
            RunEnd::Interrupted(Stop::Cancelled) => Report::cancelled("cancelled while running"),
            RunEnd::Interrupted(Stop::Shutdown) => return Execution::HandedBack,
            RunEnd::CouldNotStart(message) => Report::failed(message),
        };

        // Outputs and logs are kept whatever the end: a failed or cancelled
        // run's partial results are what its owner needs to see why.
        let (mut outputs, skipped) = upload::list_outputs(output_dir.clone()).await;
        if !skipped.is_empty() {
            tracing::warn!(
                count = skipped.len(),
                "output files with unusable names skipped"
            );
        }
        let total: u64 = outputs
            .iter()
            .filter_map(|(_, f)| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        if total > settings.max_output_bytes {
            outputs.clear();
            if report.state == JobState::Succeeded {
                report = Report {
                    exit_code: report.exit_code,
                    ..Report::failed(format!(
                        "output/ holds {total} bytes, over the limit of {} bytes; nothing was stored",
                        settings.max_output_bytes
                    ))
                };
            }
        }
        let logs = [
            (LogStream::Stdout, stdout_log.as_path()),
            (LogStream::Stderr, stderr_log.as_path()),
        ];
        let phase = std::time::Instant::now();
        match upload::upload_results(&self.bucket, job.id, outputs, logs).await {
            Ok(files) => {
                tracing::info!(
                    ms = phase.elapsed().as_millis() as u64,
                    files = files.len(),
                    "results stored"
                );
                report.output_files = files;
            }
            Err(e) => {
                tracing::error!(error = %e, "upload failed");
                report = Report {
                    exit_code: report.exit_code,
                    ..Report::failed(
                        "the job ran but its outputs could not be stored; it can be resubmitted",
                    )
                };
            }
        }
        Execution::Done(report)
    }

    async fn clone_repo(
        &self,
        job: &JobMessage,
        repo: &Path,
        deadline: Instant,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), Cloned> {
        let abort = Arc::new(AtomicBool::new(false));
        let task = {
            let url = job.url.clone();
            let policy = self.settings.policy.repos.clone();
            let dest = repo.to_path_buf();
            let abort = abort.clone();
            tokio::task::spawn_blocking(move || git::clone(url.expose(), &policy, &dest, &abort))
        };
        tokio::pin!(task);
        let stopped_by = tokio::select! {
            done = &mut task => return finish_clone(done),
            why = self.stopped(job, shutdown) => Some(why),
            _ = tokio::time::sleep_until(deadline) => None,
        };
        // libgit2 notices the flag at its next progress callback; its own
        // network timeouts bound the wait otherwise.
        abort.store(true, Ordering::Relaxed);
        let _ = task.await;
        Err(match stopped_by {
            Some(why) => Cloned::Stopped(why),
            None => Cloned::TimedOut,
        })
    }

    /// Resolves when the job must stop: cancelled by its owner, or the
    /// worker's grace period is over.
    async fn stopped(&self, job: &JobMessage, mut shutdown: watch::Receiver<bool>) -> Stop {
        tokio::select! {
            _ = self.cancels.wait_for(job.id) => Stop::Cancelled,
            _ = shutdown.wait_for(|over| *over) => Stop::Shutdown,
        }
    }
}

enum Cloned {
    Failed(String),
    TimedOut,
    Stopped(Stop),
}

fn finish_clone(
    done: Result<Result<(), CloneError>, tokio::task::JoinError>,
) -> Result<(), Cloned> {
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(CloneError::Failed(message))) => Err(Cloned::Failed(message)),
        // Only this worker aborts, and it returns before reading this.
        Ok(Err(CloneError::Aborted)) => Err(Cloned::Failed("the clone was stopped".into())),
        Err(_) => Err(Cloned::Failed("the clone failed unexpectedly".into())),
    }
}

/// The job's whole environment: nothing of the worker's own (its broker
/// and storage credentials live there), plus what npm would set that a
/// start script may rely on.
fn job_environment(
    settings: &WorkerSettings,
    job: &JobMessage,
    attempt: u32,
    package: &Package,
    repo: &Path,
    home: &Path,
    tmp: &Path,
) -> Vec<(String, String)> {
    let path = |p: &Path| p.display().to_string();
    let bin = repo.join("node_modules").join(".bin");
    vec![
        (
            "PATH".into(),
            format!("{}:{}", path(&bin), settings.job_path),
        ),
        ("HOME".into(), path(home)),
        ("TMPDIR".into(), path(tmp)),
        ("LANG".into(), "C.UTF-8".into()),
        ("LZ_JOB_ID".into(), job.id.to_string()),
        ("LZ_ATTEMPT".into(), attempt.to_string()),
        ("LZ_WORKER_ID".into(), settings.worker_id.clone()),
        ("INIT_CWD".into(), path(repo)),
        ("npm_lifecycle_event".into(), "start".into()),
        ("npm_lifecycle_script".into(), package.start.clone()),
        ("npm_package_name".into(), package.name.clone()),
        ("npm_package_version".into(), package.version.clone()),
        ("npm_package_json".into(), path(&repo.join("package.json"))),
    ]
}

/// Makes the job's folder (clone, home, tmp) its user's, so a job run as
/// another user can write where it must and nowhere else.
fn give_to(dir: &Path, user: JobUser) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.map_err(std::io::Error::other)?;
        std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_scripts() {
        let p = Package::parse(
            r#"{"name":"sim","version":"1.2.0","scripts":{"prestart":"make","start":"node a.js","poststart":"echo done"}}"#,
        )
        .unwrap();
        let stages = p.stages(&["a b".into()]);
        let names: Vec<_> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["prestart", "start", "poststart"]);
        assert_eq!(stages[1].args, vec!["a b"]);
        assert!(stages[0].args.is_empty());
        assert_eq!(p.name, "sim");
    }

    #[test]
    fn package_errors_say_what_to_fix() {
        let table = [
            ("{", "not valid JSON"),
            ("{}", "no `scripts.start`"),
            (r#"{"scripts":{"start":""}}"#, "no `scripts.start`"),
            (r#"{"scripts":{"start":3}}"#, "no `scripts.start`"),
            (r#"{"scripts":[]}"#, "no `scripts.start`"),
        ];
        for (text, expected) in table {
            let err = Package::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
