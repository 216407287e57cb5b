//! The worker's typed settings: the shared Kafka / S3 / job-policy groups
//! plus its own (see `docs/configuration.md`, generated from these
//! declarations, and `docs/worker.md`).

use std::path::PathBuf;
use std::time::Duration;

use common::settings::{Env, Group, JobPolicy, KafkaSettings, S3Settings, SettingsError};

common::declare_settings! {
    /// How a worker runs jobs.
    pub WORKER: "Worker", "" {
        /// Name of this worker process in status events and job records; must be unique
        /// per process. Also given to the job as `LZ_WORKER_ID`.
        WORKER_ID = "LZ_WORKER_ID" [W] computed "`<hostname>-<pid>`";
        /// Folder under which each job gets a fresh directory, removed after the run.
        /// Created at start.
        WORK_DIR = "LZ_WORK_DIR" [W] computed "`$TMPDIR/lanzadera-worker-<pid>`";
        /// Wall-clock limit of a job's clone, and separately of its run, for a job that
        /// sets no `timeoutSeconds` (at most `LZ_MAX_JOB_TIMEOUT_SECS`); a job over it is
        /// killed and fails.
        JOB_TIMEOUT_SECS = "LZ_JOB_TIMEOUT_SECS" [W] default "3600";
        /// Limit on the total size of `output/` (1 GiB); a job exceeding it is killed and
        /// fails.
        MAX_OUTPUT_BYTES = "LZ_MAX_OUTPUT_BYTES" [W] default "1073741824";
        /// Kept per log stream (stdout, stderr; 10 MiB); the rest is read and dropped.
        MAX_LOG_BYTES = "LZ_MAX_LOG_BYTES" [W] default "10485760";
        /// How long a run's results are kept and their upload retried (with backoff)
        /// while storage is unreachable; then the job fails and says so.
        UPLOAD_RETRY_SECS = "LZ_UPLOAD_RETRY_SECS" [W] default "300";
        /// After SIGTERM, how long the running job may still take; then it is stopped
        /// and handed back uncommitted, to run again on another worker.
        SHUTDOWN_GRACE_SECS = "LZ_SHUTDOWN_GRACE_SECS" [W] default "30";
        /// librdkafka `max.poll.interval.ms` (at least 1000). The worker keeps polling
        /// while a job runs, so jobs may run longer than this.
        MAX_POLL_INTERVAL_MS = "LZ_MAX_POLL_INTERVAL_MS" [W] default "300000";
        /// Jobs this worker runs at once, each in its own folder and process group.
        SLOTS = "LZ_WORKER_SLOTS" [W] computed "the CPUs the process may use";
        /// Jobs fetched beyond the free slots, ready to start the moment a slot frees;
        /// past that the worker pauses its partitions (see `docs/dispatch.md` §4). One
        /// per slot covers librdkafka's delay of up to 1 s between a resume and the next
        /// fetch for jobs of a second and longer; held jobs stay free for others to take.
        PREFETCH = "LZ_WORKER_PREFETCH" [W] computed "the slots, at least 2";
        /// How often the worker publishes its heartbeat (slots, partitions, leases).
        HEARTBEAT_MS = "LZ_HEARTBEAT_MS" [W] default "2000";
        /// A job left unclaimed on another worker's partition for this long is taken by
        /// a worker with a free slot.
        STEAL_AFTER_MS = "LZ_STEAL_AFTER_MS" [W] default "300";
        /// `uid:gid` to run jobs as. Set it in production to an unprivileged user other
        /// than the worker's: a job running as the worker's own user could otherwise
        /// inspect the worker's process.
        JOB_USER = "LZ_JOB_USER" [W] computed "unset (the worker's own user)";
        /// librdkafka `debug` contexts (e.g. `consumer,cgrp`) for diagnosing delivery.
        KAFKA_DEBUG = "LZ_KAFKA_DEBUG" [W] unset;
        /// `PATH` of the job's process, after the repository's `node_modules/.bin`.
        JOB_PATH = "LZ_JOB_PATH" [W] default "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    }
}

/// The worker's own group, for the generated documentation.
pub const GROUPS: [&Group; 1] = [&WORKER];

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub kafka: KafkaSettings,
    pub s3: S3Settings,
    /// Which repositories may be cloned (checked again here: the jobs topic
    /// is trusted, but a worker should not depend on that).
    pub policy: JobPolicy,
    /// Shown in status events; unique per process.
    pub worker_id: String,
    /// Each job gets a fresh folder under it, removed after the run.
    pub work_dir: PathBuf,
    /// Wall-clock limit of a job's clone and of its run.
    pub job_timeout: Duration,
    /// Limit on the total size of `output/`; a job that exceeds it is killed.
    pub max_output_bytes: u64,
    /// Per stream; the rest of the stream is drained and dropped.
    pub max_log_bytes: u64,
    /// How long an upload is retried while storage is unreachable.
    pub upload_retry: Duration,
    /// After SIGTERM, how long the running job may still take before it is
    /// killed and handed back to the group uncommitted.
    pub shutdown_grace: Duration,
    /// librdkafka `max.poll.interval.ms`; the worker keeps polling while a
    /// job runs, so jobs may take longer than this.
    pub max_poll_interval: Duration,
    /// PATH of the job's process (after `node_modules/.bin`).
    pub job_path: String,
    /// librdkafka `debug` contexts (e.g. `cgrp`), to diagnose the group.
    pub kafka_debug: Option<String>,
    /// Jobs run at once.
    pub slots: usize,
    /// Jobs held beyond the free slots.
    pub prefetch: usize,
    pub heartbeat: Duration,
    /// Age of an unclaimed job on another worker's partition before this
    /// worker takes it.
    pub steal_after: Duration,
    /// Run jobs as this `uid:gid` (the worker must run as root). Without
    /// it a job runs as the worker's user and could read the worker's
    /// `/proc/<pid>/environ`, credentials included.
    pub job_user: Option<JobUser>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobUser {
    pub uid: u32,
    pub gid: u32,
}

impl JobUser {
    fn parse(raw: &str) -> Option<Self> {
        let (uid, gid) = raw.trim().split_once(':')?;
        Some(Self {
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
        })
    }
}

impl WorkerSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let work_dir = match env.optional(&WORK_DIR) {
            Some(dir) => PathBuf::from(dir),
            None => std::env::temp_dir().join(format!("lanzadera-worker-{}", std::process::id())),
        };
        let slots = match env.optional(&SLOTS) {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(_) => env.parse::<usize>(&SLOTS)?.max(1),
        };
        let prefetch = match env.optional(&PREFETCH) {
            None => slots.max(2),
            Some(_) => env.parse(&PREFETCH)?,
        };
        Ok(Self {
            kafka: KafkaSettings::from_env(env)?,
            s3: S3Settings::from_env(env)?,
            policy: JobPolicy::from_env(env)?,
            worker_id: env.optional(&WORKER_ID).unwrap_or_else(default_worker_id),
            work_dir,
            job_timeout: Duration::from_secs(env.parse(&JOB_TIMEOUT_SECS)?),
            max_output_bytes: env.parse(&MAX_OUTPUT_BYTES)?,
            max_log_bytes: env.parse(&MAX_LOG_BYTES)?,
            upload_retry: Duration::from_secs(env.parse(&UPLOAD_RETRY_SECS)?),
            shutdown_grace: Duration::from_secs(env.parse(&SHUTDOWN_GRACE_SECS)?),
            max_poll_interval: env.millis(&MAX_POLL_INTERVAL_MS)?,
            job_path: env.string(&JOB_PATH)?,
            kafka_debug: env.optional(&KAFKA_DEBUG),
            slots,
            prefetch,
            heartbeat: env.millis(&HEARTBEAT_MS)?.max(Duration::from_millis(100)),
            steal_after: env.millis(&STEAL_AFTER_MS)?,
            job_user: match env.optional(&JOB_USER) {
                None => None,
                Some(raw) => Some(JobUser::parse(&raw).ok_or_else(|| {
                    SettingsError::invalid(&JOB_USER, "must be numeric uid:gid, e.g. 65534:65534")
                })?),
            },
        })
    }
}

/// `hostname-pid`: stable enough to read in a record, unique per process
/// even when several workers share a host.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = WorkerSettings::from_env(&Env::from_pairs([])).unwrap();
        assert_eq!(s.job_timeout, Duration::from_secs(3600));
        assert_eq!(s.max_poll_interval, Duration::from_secs(300));
        assert!(s.worker_id.ends_with(&format!("-{}", std::process::id())));
        assert!(!s.policy.repos.allow_insecure);
        assert_eq!(s.slots, std::thread::available_parallelism().unwrap().get());
        assert_eq!(s.prefetch, s.slots.max(2));
    }

    #[test]
    fn overrides() {
        let s = WorkerSettings::from_env(&Env::from_pairs([
            ("LZ_WORKER_ID", "w-1"),
            ("LZ_WORK_DIR", "/srv/jobs"),
            ("LZ_JOB_TIMEOUT_SECS", "5"),
            ("LZ_MAX_LOG_BYTES", "100"),
            ("LZ_MAX_POLL_INTERVAL_MS", "7000"),
            ("LZ_ALLOW_INSECURE_REPOS", "true"),
            ("LZ_WORKER_SLOTS", "4"),
        ]))
        .unwrap();
        assert_eq!(s.worker_id, "w-1");
        assert_eq!(s.work_dir, PathBuf::from("/srv/jobs"));
        assert_eq!(s.job_timeout, Duration::from_secs(5));
        assert_eq!(s.max_log_bytes, 100);
        assert_eq!(s.max_poll_interval, Duration::from_millis(7000));
        assert!(s.policy.repos.allow_insecure);
        assert_eq!(s.slots, 4);
        assert!(
            WorkerSettings::from_env(&Env::from_pairs([("LZ_JOB_TIMEOUT_SECS", "x")])).is_err()
        );
    }
}
