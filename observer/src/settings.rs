//! The observer's settings, read once at start-up from the environment.
//! `REFRESH_RATE` and `PARTITION_FACTOR` keep the names the specification
//! gives them; the rest use the `LZ_` prefix (see `docs/observer.md`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::settings::{Env, Group, KafkaSettings, MongoSettings, SettingsError};
use common::Secret;

use crate::strategy::Policy;

common::declare_settings! {
    /// Windows, strategy and actuators.
    pub OBSERVER: "Observer", "(details in `observer.md`)" {
        /// Window length in milliseconds (at least 1). The name is the original
        /// service's.
        REFRESH_RATE = "REFRESH_RATE" [O] default "2000";
        /// Partitions of the jobs topic wanted per desired worker (at least 1).
        PARTITION_FACTOR = "PARTITION_FACTOR" [O] default "2";
        /// Listen address of the observer's HTTP endpoint (`GET /health`, `GET
        /// /metrics/desired`). `0.0.0.0:8090` in a container.
        OBSERVER_ADDR = "LZ_OBSERVER_ADDR" [O] default "127.0.0.1:8090";
        /// Prefix of the observers' consumer groups on the status topic: each observer
        /// reads every event in a group of its own, `<prefix>-<LZ_OBSERVER_ID>`.
        OBSERVER_GROUP = "LZ_OBSERVER_GROUP" [O] default "lanzadera-observer";
        /// This observer's name among those running, in its consumer group, the leader
        /// lease and `/metrics/desired`.
        OBSERVER_ID = "LZ_OBSERVER_ID" [O] computed "a random id at each start";
        /// Of several observers, the one holding this lease in MongoDB actuates; it
        /// renews it every third of it, and another takes over once it runs out (see
        /// `docs/observers.md`). At least 600.
        LEADER_LEASE_MS = "LZ_LEADER_LEASE_MS" [O] default "6000";
        /// Wait after a window's end before closing it.
        OBSERVER_GRACE_MS = "LZ_OBSERVER_GRACE_MS" [O] default "1000";
        /// How long a closed window still accepts late events (and is stored again).
        OBSERVER_LATE_MS = "LZ_OBSERVER_LATE_MS" [O] default "300000";
        /// Observations kept in MongoDB; older ones are deleted.
        OBSERVATIONS_KEEP = "LZ_OBSERVATIONS_KEEP" [O] default "1000";
        /// Windows averaged for the arrival rate.
        RATE_WINDOWS = "LZ_RATE_WINDOWS" [O] default "15";
        /// Windows with finished jobs averaged for the service time.
        SERVICE_WINDOWS = "LZ_SERVICE_WINDOWS" [O] default "30";
        /// Lower bound of the desired workers (0 allows scaling to zero).
        MIN_WORKERS = "LZ_MIN_WORKERS" [O] default "1";
        /// Upper bound; must not be below `LZ_MIN_WORKERS`.
        MAX_WORKERS = "LZ_MAX_WORKERS" [O] default "10";
        /// Waiting jobs should be gone within this many seconds (positive).
        TARGET_DRAIN_SECONDS = "LZ_TARGET_DRAIN_SECONDS" [O] default "60";
        /// Share of worker capacity steady arrivals may use, in (0, 1].
        TARGET_UTILISATION = "LZ_TARGET_UTILISATION" [O] default "0.8";
        /// A lower worker count applies only after it has been recommended this long.
        SCALE_DOWN_STABILISATION_MS = "LZ_SCALE_DOWN_STABILISATION_MS" [O] default "60000";
        /// Service time assumed before any job has finished (positive).
        ASSUMED_JOB_SECONDS = "LZ_ASSUMED_JOB_SECONDS" [O] default "30";
        /// A running job whose worker has not renewed its lease (heartbeat) for this long
        /// is queued again (see `docs/dispatch.md`).
        LEASE_MS = "LZ_LEASE_MS" [O] default "6000";
        /// Attempts a job gets when its workers keep dying under it; then it fails with
        /// the reason.
        MAX_ATTEMPTS = "LZ_MAX_ATTEMPTS" [O] default "3";
        /// Grow the jobs topic when partitions fall behind `desired ×
        /// PARTITION_FACTOR`.
        GROW_PARTITIONS = "LZ_GROW_PARTITIONS" [O] default "true";
        /// Bound on each metadata, lag or group call.
        KAFKA_PROBE_TIMEOUT_MS = "LZ_KAFKA_PROBE_TIMEOUT_MS" [O] default "3000";
        /// Where decisions go: `log`, `webhook`, `kubernetes` (or `k8s`) or `command`.
        ACTUATOR = "LZ_ACTUATOR" [O] default "log";
        /// An unchanged decision is sent again this often.
        ACTUATOR_RESYNC_MS = "LZ_ACTUATOR_RESYNC_MS" [O] default "60000";
        /// URL the decision is POSTed to.
        WEBHOOK_URL = "LZ_WEBHOOK_URL" [O] computed "required by `LZ_ACTUATOR=webhook`";
        /// Sent as `Authorization: Bearer …` to the webhook.
        WEBHOOK_TOKEN = "LZ_WEBHOOK_TOKEN" [O] unset secret;
        /// Per webhook attempt.
        WEBHOOK_TIMEOUT_MS = "LZ_WEBHOOK_TIMEOUT_MS" [O] default "2000";
        /// Extra webhook attempts on 5xx, 429 or a transport error.
        WEBHOOK_RETRIES = "LZ_WEBHOOK_RETRIES" [O] default "2";
        /// Kubernetes API server, e.g. `http://127.0.0.1:8001` behind `kubectl proxy`.
        K8S_API = "LZ_K8S_API" [O] computed "in a pod: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`; required elsewhere";
        /// Read only to build the default of `LZ_K8S_API`.
        KUBERNETES_SERVICE_HOST = "KUBERNETES_SERVICE_HOST" [O] computed "set by Kubernetes";
        /// Read only to build the default of `LZ_K8S_API`.
        KUBERNETES_SERVICE_PORT = "KUBERNETES_SERVICE_PORT" [O] computed "set by Kubernetes";
        /// Namespace of the worker Deployment.
        K8S_NAMESPACE = "LZ_K8S_NAMESPACE" [O] computed "in a pod: the pod's namespace; else `default`";
        /// The worker Deployment whose `scale` subresource is set.
        K8S_DEPLOYMENT = "LZ_K8S_DEPLOYMENT" [O] default "lanzadera-worker";
        /// Bearer token for the API server. Takes precedence over `LZ_K8S_TOKEN_FILE`.
        K8S_TOKEN = "LZ_K8S_TOKEN" [O] unset secret;
        /// File holding the token; re-read on every call (projected tokens rotate).
        K8S_TOKEN_FILE = "LZ_K8S_TOKEN_FILE" [O] computed "in a pod: the service-account token file";
        /// Extra CA certificate (PEM) to trust for the API server.
        K8S_CA_FILE = "LZ_K8S_CA_FILE" [O] computed "in a pod: the service-account `ca.crt`";
        /// Per Kubernetes request.
        K8S_TIMEOUT_MS = "LZ_K8S_TIMEOUT_MS" [O] default "5000";
        /// Program and arguments, split like a shell would but run without one;
        /// `{replicas}` in an argument becomes the desired count.
        ACTUATOR_COMMAND = "LZ_ACTUATOR_COMMAND" [O] computed "required by `LZ_ACTUATOR=command`";
        /// The command is killed after this.
        COMMAND_TIMEOUT_MS = "LZ_COMMAND_TIMEOUT_MS" [O] default "30000";
    }
}

/// The observer's own group, for the generated documentation.
pub const GROUPS: [&Group; 1] = [&OBSERVER];

/// Where a Kubernetes service account keeps its credentials in a pod.
const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub mongo: MongoSettings,
    /// This observer's consumer group on the status topic, its own.
    pub group: String,
    /// Its name among the observers running.
    pub id: String,
    /// The leader lease: of several observers, its holder actuates.
    pub leader_lease: Duration,
    pub http_addr: String,
    /// Window length (`REFRESH_RATE`, milliseconds).
    pub refresh: Duration,
    /// How long after a window's end it is closed: events produced just
    /// before the end still get there.
    pub grace: Duration,
    /// How long a closed window still accepts late events (and is stored
    /// again with corrected counts).
    pub late_retention: Duration,
    /// Observations kept in MongoDB.
    pub keep_observations: u64,
    /// Windows over which the arrival rate is averaged.
    pub rate_windows: usize,
    /// Windows with finished jobs over which the service time is averaged.
    pub service_windows: usize,
    pub policy: Policy,
    pub grow_partitions: bool,
    /// Bound on each Kafka metadata, lag or group call.
    pub probe_timeout: Duration,
    pub actuator: ActuatorSettings,
    /// A decision is sent again after this long even if unchanged, so a
    /// replica count changed by hand or a lost request is corrected.
    pub actuator_resync: Duration,
    pub lease: Duration,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActuatorSettings {
    Log,
    Webhook {
        url: String,
        token: Option<Secret<String>>,
        timeout: Duration,
        retries: u32,
    },
    Kubernetes(KubernetesSettings),
    Command {
        program: String,
        /// `{replicas}` in an argument is replaced by the desired count.
        args: Vec<String>,
        timeout: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesSettings {
    /// e.g. `https://10.0.0.1:443`, or `http://127.0.0.1:8001` behind
    /// `kubectl proxy`.
    pub api: String,
    pub namespace: String,
    pub deployment: String,
    pub token: KubeToken,
    /// Extra CA certificate (PEM) to trust for the API server.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KubeToken {
    None,
    Static(Secret<String>),
    /// Re-read on every request: projected service-account tokens rotate.
    File(PathBuf),
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let refresh = env.millis(&REFRESH_RATE)?;
        if refresh.is_zero() {
            return Err(SettingsError::invalid(
                &REFRESH_RATE,
                "must be at least 1 ms",
            ));
        }
        let policy = Policy {
            min_workers: env.parse(&MIN_WORKERS)?,
            max_workers: env.parse(&MAX_WORKERS)?,
            target_drain_seconds: env.parse(&TARGET_DRAIN_SECONDS)?,
            target_utilisation: env.parse(&TARGET_UTILISATION)?,
            scale_down_stabilisation_ms: env.parse(&SCALE_DOWN_STABILISATION_MS)?,
            partition_factor: env.parse(&PARTITION_FACTOR)?,
            assumed_job_seconds: env.parse(&ASSUMED_JOB_SECONDS)?,
        };
        if policy.max_workers < policy.min_workers {
            return Err(SettingsError::invalid(
                &MAX_WORKERS,
                "must not be below LZ_MIN_WORKERS",
            ));
        }
        if !(policy.target_utilisation > 0.0 && policy.target_utilisation <= 1.0) {
            return Err(SettingsError::invalid(
                &TARGET_UTILISATION,
                "must be in (0, 1]",
            ));
        }
        if !(policy.target_drain_seconds.is_finite() && policy.target_drain_seconds > 0.0) {
            return Err(SettingsError::invalid(
                &TARGET_DRAIN_SECONDS,
                "must be positive",
            ));
        }
        if !(policy.assumed_job_seconds.is_finite() && policy.assumed_job_seconds > 0.0) {
            return Err(SettingsError::invalid(
                &ASSUMED_JOB_SECONDS,
                "must be positive",
            ));
        }
        if policy.partition_factor == 0 {
            return Err(SettingsError::invalid(
                &PARTITION_FACTOR,
                "must be at least 1",
            ));
        }
        let id = match env.optional(&OBSERVER_ID) {
            Some(id) => id,
            None => uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        };
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(SettingsError::invalid(
                &OBSERVER_ID,
                "must be 1-64 letters, digits, '.', '_' or '-'",
            ));
        }
        let leader_lease = env.millis(&LEADER_LEASE_MS)?;
        if leader_lease < Duration::from_millis(600) {
            return Err(SettingsError::invalid(
                &LEADER_LEASE_MS,
                "must be at least 600",
            ));
        }
        Ok(Self {
            kafka: KafkaSettings::from_env(env)?,
            mongo: MongoSettings::from_env(env)?,
            group: format!("{}-{id}", env.string(&OBSERVER_GROUP)?),
            id,
            leader_lease,
            http_addr: env.string(&OBSERVER_ADDR)?,
            refresh,
            grace: env.millis(&OBSERVER_GRACE_MS)?,
            late_retention: env.millis(&OBSERVER_LATE_MS)?,
            keep_observations: env.parse(&OBSERVATIONS_KEEP)?,
            rate_windows: env.parse(&RATE_WINDOWS)?,
            service_windows: env.parse(&SERVICE_WINDOWS)?,
            policy,
            grow_partitions: env.flag(&GROW_PARTITIONS)?,
            probe_timeout: env.millis(&KAFKA_PROBE_TIMEOUT_MS)?,
            actuator: ActuatorSettings::from_env(env, Path::new(IN_CLUSTER_DIR))?,
            actuator_resync: env.millis(&ACTUATOR_RESYNC_MS)?,
            lease: env.millis(&LEASE_MS)?.max(Duration::from_millis(500)),
            max_attempts: env.parse::<u32>(&MAX_ATTEMPTS)?.max(1),
        })
    }
}

impl ActuatorSettings {
    /// `in_cluster` is where a pod finds its service account (a parameter
    /// so that tests can point it elsewhere).
    pub fn from_env(env: &Env, in_cluster: &Path) -> Result<Self, SettingsError> {
        match env.string(&ACTUATOR)?.to_ascii_lowercase().as_str() {
            "log" => Ok(Self::Log),
            "webhook" => Ok(Self::Webhook {
                url: env.optional(&WEBHOOK_URL).ok_or_else(|| {
                    SettingsError::invalid(&WEBHOOK_URL, "is required by LZ_ACTUATOR=webhook")
                })?,
                token: env.optional(&WEBHOOK_TOKEN).map(Secret::new),
                timeout: env.millis(&WEBHOOK_TIMEOUT_MS)?,
                retries: env.parse(&WEBHOOK_RETRIES)?,
            }),
            "kubernetes" | "k8s" => Ok(Self::Kubernetes(KubernetesSettings::from_env(
                env, in_cluster,
            )?)),
            "command" => {
                let line = env.optional(&ACTUATOR_COMMAND).ok_or_else(|| {
                    SettingsError::invalid(&ACTUATOR_COMMAND, "is required by LZ_ACTUATOR=command")
                })?;
                // Split into words once, here; the words are passed to the
                // program as its arguments and no shell ever sees them.
                let mut words = shell_words::split(&line)
                    .map_err(|_| {
                        SettingsError::invalid(&ACTUATOR_COMMAND, "has unbalanced quotes")
                    })?
                    .into_iter();
                let program = words
                    .next()
                    .ok_or_else(|| SettingsError::invalid(&ACTUATOR_COMMAND, "names no program"))?;
                Ok(Self::Command {
                    program,
                    args: words.collect(),
                    timeout: env.millis(&COMMAND_TIMEOUT_MS)?,
                })
            }
            _ => Err(SettingsError::invalid(
                &ACTUATOR,
                "must be log, webhook, kubernetes or command",
            )),
        }
    }
}

impl KubernetesSettings {
    fn from_env(env: &Env, in_cluster: &Path) -> Result<Self, SettingsError> {
        let api = match env.optional(&K8S_API) {
            Some(api) => api,
            None => match (
                env.optional(&KUBERNETES_SERVICE_HOST),
                env.optional(&KUBERNETES_SERVICE_PORT),
            ) {
                (Some(host), Some(port)) if host.contains(':') => {
                    format!("https://[{host}]:{port}")
                }
                (Some(host), Some(port)) => format!("https://{host}:{port}"),
                _ => return Err(SettingsError::invalid(
                    &K8S_API,
                    "is required outside a cluster (e.g. http://127.0.0.1:8001 with kubectl proxy)",
                )),
            },
        };
        let token_file = in_cluster.join("token");
        let token = if let Some(token) = env.optional(&K8S_TOKEN) {
            KubeToken::Static(Secret::new(token))
        } else if let Some(path) = env.optional(&K8S_TOKEN_FILE) {
            KubeToken::File(PathBuf::from(path))
        } else if token_file.is_file() {
            KubeToken::File(token_file)
        } else {
            KubeToken::None
        };
        let namespace = env.optional(&K8S_NAMESPACE).or_else(|| {
            std::fs::read_to_string(in_cluster.join("namespace"))
                .ok()
                .map(|ns| ns.trim().to_string())
                .filter(|ns| !ns.is_empty())
        });
        let ca = in_cluster.join("ca.crt");
        Ok(Self {
            api: api.trim_end_matches('/').to_string(),
            namespace: namespace.unwrap_or_else(|| "default".into()),
            deployment: env.string(&K8S_DEPLOYMENT)?,
            token,
            ca_file: env
                .optional(&K8S_CA_FILE)
                .map(PathBuf::from)
                .or_else(|| ca.is_file().then_some(ca)),
            timeout: env.millis(&K8S_TIMEOUT_MS)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_the_local_stack() {
        let s = Settings::from_env(&Env::from_pairs([])).expect("defaults are valid");
        assert_eq!(s.refresh, Duration::from_millis(2000));
        assert_eq!(s.policy.partition_factor, 2);
        assert_eq!(s.http_addr, "127.0.0.1:8090");
        assert_eq!(s.actuator, ActuatorSettings::Log);
        assert_eq!(s.kafka.workers_group, "lanzadera-workers");
        assert_eq!(s.leader_lease, Duration::from_millis(6000));
    }

    #[test]
    fn each_observer_reads_in_a_group_of_its_own() {
        let a = Settings::from_env(&Env::from_pairs([])).expect("valid");
        let b = Settings::from_env(&Env::from_pairs([])).expect("valid");
        assert_ne!(a.id, b.id, "a random id at each start");
        assert_eq!(a.group, format!("lanzadera-observer-{}", a.id));
        let named = Settings::from_env(&Env::from_pairs([
            ("LZ_OBSERVER_ID", "obs-1"),
            ("LZ_OBSERVER_GROUP", "g"),
        ]))
        .expect("valid");
        assert_eq!(
            (named.id.as_str(), named.group.as_str()),
            ("obs-1", "g-obs-1")
        );
    }

    #[test]
    fn spec_names_and_bad_values_are_reported_by_name() {
        let s = Settings::from_env(&Env::from_pairs([
            ("REFRESH_RATE", "500"),
            ("PARTITION_FACTOR", "3"),
        ]))
        .expect("valid");
        assert_eq!((s.refresh.as_millis(), s.policy.partition_factor), (500, 3));
        for (name, value) in [
            ("REFRESH_RATE", "0"),
            ("PARTITION_FACTOR", "0"),
            ("LZ_TARGET_UTILISATION", "1.5"),
            ("LZ_TARGET_DRAIN_SECONDS", "-1"),
            ("LZ_MAX_WORKERS", "0"),
            ("LZ_ACTUATOR", "carrier-pigeon"),
            ("LZ_OBSERVER_ID", "two words"),
            ("LZ_LEADER_LEASE_MS", "599"),
        ] {
            let err = Settings::from_env(&Env::from_pairs([(name, value)])).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn actuators_are_chosen_by_configuration() {
        let none = Path::new("/nonexistent");
        let cmd = ActuatorSettings::from_env(
            &Env::from_pairs([
                ("LZ_ACTUATOR", "command"),
                (
                    "LZ_ACTUATOR_COMMAND",
                    "kumorictl scale 'my deployment' --replicas={replicas}; rm -rf /",
                ),
            ]),
            none,
        )
        .expect("valid");
        match cmd {
            ActuatorSettings::Command { program, args, .. } => {
                assert_eq!(program, "kumorictl");
                // `;` is just a character in an argument: no shell runs.
                assert_eq!(
                    args,
                    [
                        "scale",
                        "my deployment",
                        "--replicas={replicas};",
                        "rm",
                        "-rf",
                        "/"
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        let err = ActuatorSettings::from_env(&Env::from_pairs([("LZ_ACTUATOR", "webhook")]), none)
            .expect_err("url missing");
        assert!(err.to_string().contains("LZ_WEBHOOK_URL"));
        let err =
            ActuatorSettings::from_env(&Env::from_pairs([("LZ_ACTUATOR", "kubernetes")]), none)
                .expect_err("api missing");
        assert!(err.to_string().contains("LZ_K8S_API"));
    }

    #[test]
    fn kubernetes_reads_the_in_cluster_service_account() {
        let dir = std::env::temp_dir().join(format!("lz-sa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("token"), "tok").expect("write");
        std::fs::write(dir.join("namespace"), "jobs\n").expect("write");
        std::fs::write(dir.join("ca.crt"), "pem").expect("write");
        let s = ActuatorSettings::from_env(
            &Env::from_pairs([
                ("LZ_ACTUATOR", "kubernetes"),
                ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
            ]),
            &dir,
        )
        .expect("valid");
        let want = KubernetesSettings {
            api: "https://10.0.0.1:443".into(),
            namespace: "jobs".into(),
            deployment: "lanzadera-worker".into(),
            token: KubeToken::File(dir.join("token")),
            ca_file: Some(dir.join("ca.crt")),
            timeout: Duration::from_millis(5000),
        };
        assert_eq!(s, ActuatorSettings::Kubernetes(want));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
