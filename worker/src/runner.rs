//! Running one job from its message to its results: fresh folder, clone,
//! `package.json`, `config.json` and `output/`, the scripts, the upload,
//! and the folder's removal. Each step either hands the next one what it
//! needs or ends the job with its [`Outcome`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use common::{GitRef, JobMessage, JobState, LogStream};
use s3::Bucket;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::board::Board;
use crate::git::{self, CloneError};
use crate::outcome::{Outcome, Report, Stop};
use crate::package::Package;
use crate::process::{self, RunEnd, RunSpec};
use crate::settings::{JobUser, WorkerSettings};
use crate::slot::Slot;
use crate::upload;

const NO_FOLDER: &str = "the worker could not prepare a folder for the job; it can be resubmitted";

pub struct JobRunner {
    pub settings: Arc<WorkerSettings>,
    pub bucket: Box<Bucket>,
    pub board: Board,
}

/// The folders of one run, under the worker's work folder.
struct Folders {
    root: PathBuf,
    repo: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    output: PathBuf,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
}

impl Folders {
    fn new(root: PathBuf) -> Self {
        let repo = root.join("repo");
        Self {
            home: root.join("home"),
            tmp: root.join("tmp"),
            output: repo.join("output"),
            stdout_log: root.join("stdout.log"),
            stderr_log: root.join("stderr.log"),
            repo,
            root,
        }
    }
}

type Step<T> = Result<T, Outcome>;

/// A job's folder with its repository cloned and its inputs written (or
/// the failure that ended it there), ready for its scripts.
pub struct Prepared {
    folders: Folders,
    ready: Step<(Package, String)>,
}

impl Prepared {
    /// The commit cloned, for the `running` event.
    pub fn commit(&self) -> Option<&str> {
        self.ready.as_ref().ok().map(|(_, commit)| commit.as_str())
    }

    /// Ready to run (not ended by a failed clone, a missing
    /// `package.json`, a cancel...).
    pub fn is_ready(&self) -> bool {
        self.ready.is_ok()
    }
}

impl JobRunner {
    /// The steps before the scripts: a fresh folder, the clone,
    /// `package.json`, `config.json` and `output/`. They need no claim, so
    /// they run while the claim is decided; a run that loses its claim is
    /// interrupted (see `Board::interrupted`) and discarded.
    pub async fn prepare(
        &self,
        job: &JobMessage,
        attempt: u32,
        shutdown: watch::Receiver<bool>,
    ) -> Prepared {
        let folders = Folders::new(self.settings.work_dir.join(job.id.to_string()));
        let ready = self.ready(job, attempt, &folders, shutdown).await;
        Prepared { folders, ready }
    }

    async fn ready(
        &self,
        job: &JobMessage,
        attempt: u32,
        folders: &Folders,
        shutdown: watch::Receiver<bool>,
    ) -> Step<(Package, String)> {
        prepare(folders).await?;
        let phase = std::time::Instant::now();
        let commit = self
            .clone_repo(job, attempt, &folders.repo, shutdown)
            .await?;
        tracing::info!(ms = phase.elapsed().as_millis() as u64, %commit, "repository cloned");
        let package = read_package(&folders.repo).await?;
        self.write_inputs(job, folders).await?;
        Ok((package, commit))
    }

    /// The job's wall-clock limit: its own `timeoutSeconds` or the
    /// worker's default, never over the operator's maximum.
    fn time_limit(&self, job: &JobMessage) -> Duration {
        let max = Duration::from_secs(self.settings.policy.limits.max_timeout_secs);
        job.timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(self.settings.job_timeout)
            .min(max)
    }

    /// Removes a prepared folder, run or not.
    pub async fn discard(&self, prepared: Prepared) {
        let root = prepared.folders.root.clone();
        let removed = tokio::task::spawn_blocking(move || remove_dir(&root)).await;
        if !matches!(removed, Ok(Ok(()))) {
            tracing::warn!(dir = %prepared.folders.root.display(), "could not remove the job's folder");
        }
    }

    /// Runs a prepared `job`. `shutdown` turns true when the grace period
    /// is over.
    pub async fn execute(
        &self,
        job: &JobMessage,
        attempt: u32,
        prepared: Prepared,
        shutdown: watch::Receiver<bool>,
        slot: Option<Slot>,
    ) -> Outcome {
        let outcome = match self.steps(job, attempt, &prepared, shutdown, slot).await {
            Ok(report) | Err(Outcome::Ended(report)) => Outcome::Ended(report),
            Err(other) => other,
        };
        self.discard(prepared).await;
        outcome
    }

    async fn steps(
        &self,
        job: &JobMessage,
        attempt: u32,
        prepared: &Prepared,
        shutdown: watch::Receiver<bool>,
        slot: Option<Slot>,
    ) -> Step<Report> {
        let (package, _) = prepared.ready.as_ref().map_err(Outcome::clone)?;
        let folders = &prepared.folders;
        let report = self
            .run_scripts(job, attempt, package, folders, shutdown.clone())
            .await?;
        // The processes have ended: the slot takes the next job while this
        // one's results are stored.
        drop(slot);
        self.still_current(job, attempt).await?;
        self.store_results(job, folders, report, shutdown).await
    }

    /// Clones within the job's time limit, unless cancelled or shut down.
    async fn clone_repo(
        &self,
        job: &JobMessage,
        attempt: u32,
        repo: &Path,
        shutdown: watch::Receiver<bool>,
    ) -> Step<String> {
        let limit = self.time_limit(job);
        let deadline = Instant::now() + limit;
        // Checked again here: only a plain name may reach libgit2's
        // revision parser.
        let wanted = match job.git_ref.as_deref().map(GitRef::parse).transpose() {
            Ok(wanted) => wanted,
            Err(e) => return Err(Report::failed(e.to_string()).into()),
        };
        let abort = Arc::new(AtomicBool::new(false));
        let task = {
            let url = job.url.clone();
            let policy = self.settings.policy.repos.clone();
            let dest = repo.to_path_buf();
            let abort = abort.clone();
            tokio::task::spawn_blocking(move || {
                git::clone(url.expose(), &policy, wanted.as_ref(), &dest, &abort)
            })
        };
        tokio::pin!(task);
        let stopped_by = tokio::select! {
            done = &mut task => return finish_clone(done),
            why = self.stopped(job, attempt, shutdown) => Some(why),
            _ = tokio::time::sleep_until(deadline) => None,
        };
        // libgit2 notices the flag at its next progress callback; its own
        // network timeouts bound the wait otherwise.
        abort.store(true, Ordering::Relaxed);
        let _ = task.await;
        Err(match stopped_by {
            Some(why) => why.outcome("cloning"),
            None => Report::failed(format!(
                "timed out after {} s while cloning the repository",
                limit.as_secs()
            ))
            .into(),
        })
    }

    /// `config.json`, `output/`, and the folder handed to the job's user.
    async fn write_inputs(&self, job: &JobMessage, folders: &Folders) -> Step<()> {
        if let Some(config) = &job.config {
            if let Err(e) = tokio::fs::write(folders.repo.join("config.json"), config).await {
                return Err(Report::failed(format!("cannot write config.json: {e}")).into());
            }
        }
        if let Err(e) = tokio::fs::create_dir_all(&folders.output).await {
            return Err(Report::failed(format!("cannot create output/: {e}")).into());
        }
        if let Some(user) = self.settings.job_user {
            let owned = folders.root.clone();
            let given = tokio::task::spawn_blocking(move || give_to(&owned, user)).await;
            if !matches!(given, Ok(Ok(()))) {
                tracing::error!("cannot hand the job's folder to its user");
                return Err(Report::failed(NO_FOLDER).into());
            }
        }
        Ok(())
    }

    async fn run_scripts(
        &self,
        job: &JobMessage,
        attempt: u32,
        package: &Package,
        folders: &Folders,
        shutdown: watch::Receiver<bool>,
    ) -> Step<Report> {
        let settings = &self.settings;
        let spec = RunSpec {
            repo: &folders.repo,
            stages: package.stages(&job.args),
            env: job_environment(settings, job, attempt, package, folders),
            stdout_log: &folders.stdout_log,
            stderr_log: &folders.stderr_log,
            max_log_bytes: settings.max_log_bytes,
            output_dir: &folders.output,
            max_output_bytes: settings.max_output_bytes,
            deadline: Instant::now() + self.time_limit(job),
            user: settings.job_user,
            masked: job.secrets.values().map(|v| v.expose().as_str()).collect(),
        };
        let phase = std::time::Instant::now();
        let end = process::run(&spec, self.stopped(job, attempt, shutdown)).await;
        tracing::info!(ms = phase.elapsed().as_millis() as u64, "scripts ended");
        self.report_of(end, self.time_limit(job))
    }

    fn report_of(&self, end: RunEnd<Stop>, limit: Duration) -> Step<Report> {
        let limit = limit.as_secs();
        Ok(match end {
            RunEnd::Exited(0) => Report::succeeded(),
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
                "timed out after {limit} s; the whole process group was killed"
            )),
            RunEnd::OutputTooLarge(bytes) => Report::failed(format!(
                "output/ grew to {bytes} bytes, over the limit of {} bytes; the job was killed",
                self.settings.max_output_bytes
            )),
            // A cancelled run's partial results are still stored (see
            // `store_results`); only a shutdown skips them, handing the job
            // back to run again elsewhere.
            RunEnd::Interrupted(Stop::Cancelled) => Report::cancelled("cancelled while running"),
            RunEnd::Interrupted(stop @ (Stop::Shutdown | Stop::Superseded)) => {
                return Err(stop.outcome("running"))
            }
            RunEnd::CouldNotStart(message) => Report::failed(message),
        })
    }

    /// Uploads the outputs and logs whatever the end: a failed or cancelled
    /// run's partial results are what its owner needs to see why. While
    /// storage is unreachable the results stay in the job's folder and the
    /// upload is retried, up to `LZ_UPLOAD_RETRY_SECS`: a run that ended
    /// is not thrown away because storage blinked. A shutdown whose grace
    /// is over hands the job back instead.
    async fn store_results(
        &self,
        job: &JobMessage,
        folders: &Folders,
        report: Report,
        shutdown: watch::Receiver<bool>,
    ) -> Step<Report> {
        let max = self.settings.max_output_bytes;
        let (mut outputs, skipped) = upload::list_outputs(folders.output.clone()).await;
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
        let mut report = report;
        if total > max {
            outputs.clear();
            if report.state == JobState::Succeeded {
                report = report.failed_after(format!(
                    "output/ holds {total} bytes, over the limit of {max} bytes; nothing was stored"
                ));
            }
        }
        let logs = [
            (LogStream::Stdout, folders.stdout_log.as_path()),
            (LogStream::Stderr, folders.stderr_log.as_path()),
        ];
        let phase = std::time::Instant::now();
        let mut retry = Retry::new(self.settings.upload_retry);
        loop {
            match upload::upload_results(&self.bucket, job.id, outputs.clone(), logs).await {
                Ok(files) => {
                    tracing::info!(
                        ms = phase.elapsed().as_millis() as u64,
                        files = files.len(),
                        retries = retry.count,
                        "results stored"
                    );
                    report.output_files = files;
                    return Ok(report);
                }
                Err(e) => {
                    let Some(wait) = retry.next() else {
                        tracing::error!(error = %e, retries = retry.count, "upload failed; giving up");
                        return Ok(report.failed_after(format!(
                            "the job ran but its outputs could not be stored: storage was \
                             unreachable for {} s; it can be resubmitted",
                            self.settings.upload_retry.as_secs()
                        )));
                    };
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "upload failed; results kept, retrying");
                    let mut over = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = over.wait_for(|over| *over) => return Err(Outcome::HandedBack),
                    }
                }
            }
        }
    }

    /// Before the results are stored: a worker that was cut off (frozen,
    /// or away from the broker) may find that its attempt was queued again
    /// meanwhile; then the later attempt's results are the ones to keep.
    async fn still_current(&self, job: &JobMessage, attempt: u32) -> Step<()> {
        if let Err(e) = self.board.log().caught_up(Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "storing results with the ignore topic read so far");
        }
        if self.board.log().book().current_attempt(job.id) > attempt {
            return Err(Outcome::Superseded);
        }
        Ok(())
    }

    /// Resolves when the job must stop: cancelled by its owner, a later
    /// attempt queued, or the worker's grace period over.
    async fn stopped(
        &self,
        job: &JobMessage,
        attempt: u32,
        mut shutdown: watch::Receiver<bool>,
    ) -> Stop {
        tokio::select! {
            why = self.board.interrupted(job.id, attempt) => why,
            _ = shutdown.wait_for(|over| *over) => Stop::Shutdown,
        }
    }
}

/// A fresh folder with the job's own home and temporary folder.
async fn prepare(folders: &Folders) -> Step<()> {
    let prepared = async {
        let _ = remove_dir(&folders.root);
        for d in [&folders.home, &folders.tmp] {
            tokio::fs::create_dir_all(d).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    prepared.await.map_err(|e| {
        tracing::error!(error = %e, "cannot create the job's folder");
        Report::failed(NO_FOLDER).into()
    })
}

async fn read_package(repo: &Path) -> Step<Package> {
    let failed = |message: String| Outcome::from(Report::failed(message));
    match tokio::fs::read_to_string(repo.join("package.json")).await {
        Ok(text) => Package::parse(&text).map_err(failed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(failed(
            "package.json not found in the repository root: it must define \
             `scripts.start`, the command that runs the job"
                .into(),
        )),
        Err(e) => Err(failed(format!("cannot read package.json: {e}"))),
    }
}

fn finish_clone(done: Result<Result<String, CloneError>, tokio::task::JoinError>) -> Step<String> {
    let message = match done {
        Ok(Ok(commit)) => return Ok(commit),
        Ok(Err(CloneError::Failed(message))) => message,
        // Only this worker aborts, and it returns before reading this.
        Ok(Err(CloneError::Aborted)) => "the clone was stopped".into(),
        Err(_) => "the clone failed unexpectedly".into(),
    };
    Err(Report::failed(message).into())
}

/// The job's whole environment: nothing of the worker's own (its broker
/// and storage credentials live there), plus what npm would set that a
/// start script may rely on.
fn job_environment(
    settings: &WorkerSettings,
    job: &JobMessage,
    attempt: u32,
    package: &Package,
    folders: &Folders,
) -> Vec<(String, String)> {
    let path = |p: &Path| p.display().to_string();
    let repo = &folders.repo;
    let bin = repo.join("node_modules").join(".bin");
    vec![
        (
            "PATH".into(),
            format!("{}:{}", path(&bin), settings.job_path),
        ),
        ("HOME".into(), path(&folders.home)),
        ("TMPDIR".into(), path(&folders.tmp)),
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
    .into_iter()
    // The parser refused reserved names, so a secret never replaces these.
    .chain(
        job.secrets
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().clone())),
    )
    .collect()
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

/// Exponential backoff (from 250 ms, doubling, at most 10 s between
/// tries; backon's builder, as the provisioner's) within a wall-clock
/// budget: the last wait is cut to end with it.
struct Retry {
    deadline: std::time::Instant,
    waits: backon::ExponentialBackoff,
    count: u32,
}

impl Retry {
    fn new(budget: Duration) -> Self {
        let waits = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(10))
            .with_factor(2.0)
            .without_max_times()
            .build();
        Self {
            deadline: std::time::Instant::now() + budget,
            waits,
            count: 0,
        }
    }

    /// How long to wait before the next try, or `None` when the budget
    /// is over.
    fn next(&mut self) -> Option<Duration> {
        let left = self
            .deadline
            .checked_duration_since(std::time::Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let wait = self.waits.next()?.min(left);
        self.count += 1;
        Some(wait)
    }
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
    fn secrets_join_the_environment_and_cannot_shadow_what_the_worker_sets() {
        let settings = WorkerSettings::from_env(&common::settings::Env::from_pairs([])).unwrap();
        let spec = common::JobSpec::parse(
            &serde_json::json!({"url": "https://h/o/r", "secrets": {"API_TOKEN": "tok-1234"}}),
            &common::RepoPolicy::default(),
            &settings.policy.limits,
        )
        .unwrap();
        let job = JobMessage::new(common::JobId::new(), "o", &spec, common::timestamp::now());
        let package = Package {
            name: "p".into(),
            version: "1".into(),
            prestart: None,
            start: "true".into(),
            poststart: None,
        };
        let env = job_environment(&settings, &job, 1, &package, &Folders::new("/w".into()));
        let (secret, own): (Vec<_>, Vec<_>) = env.iter().partition(|(k, _)| k == "API_TOKEN");
        assert_eq!(secret, [&("API_TOKEN".to_string(), "tok-1234".to_string())]);
        for (name, _) in own {
            assert!(common::secrets::is_reserved(name), "{name} is not reserved");
        }
    }

    #[test]
    fn retries_back_off_from_250_ms_doubling_to_10_s() {
        let mut retry = Retry::new(Duration::from_secs(3600));
        let waits: Vec<u64> = (0..8)
            .map(|_| retry.next().unwrap().as_millis() as u64)
            .collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(retry.count, 8);
    }

    #[test]
    fn no_retry_past_the_budget_and_the_last_wait_ends_with_it() {
        assert_eq!(Retry::new(Duration::ZERO).next(), None);
        let mut retry = Retry::new(Duration::from_millis(600));
        assert_eq!(retry.next(), Some(Duration::from_millis(250)));
        assert!(retry.next().unwrap() <= Duration::from_millis(600));
        std::thread::sleep(Duration::from_millis(650));
        assert_eq!(retry.next(), None);
    }
}
