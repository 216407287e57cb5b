//! Settings shared by the services, read from environment variables with
//! defaults that fit the local development stack. Every variable is listed
//! in `docs/configuration.md`. Service-specific settings use the same `Env`
//! reader in their own crates.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use crate::{RepoPolicy, Secret, SpecLimits};

#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {problem}")]
pub struct SettingsError {
    pub name: String,
    pub problem: String,
}

/// Reads variables from the process environment, or from a map in tests.
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_string()
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        self.raw(name).map(str::to_string)
    }

    pub fn secret(&self, name: &str, default: &str) -> Secret<String> {
        Secret::new(self.string(name, default))
    }

    pub fn parse<T: FromStr>(&self, name: &str, default: T) -> Result<T, SettingsError>
    where
        T::Err: std::fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|e: T::Err| SettingsError {
                name: name.to_string(),
                // The value itself is not echoed: it might be a secret put
                // in the wrong variable.
                problem: format!("cannot be parsed ({e})"),
            }),
        }
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, SettingsError> {
        match self.raw(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(_) => Err(SettingsError {
                name: name.to_string(),
                problem: "must be true or false".into(),
            }),
        }
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        self.raw(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn millis(&self, name: &str, default_ms: u64) -> Result<Duration, SettingsError> {
        self.parse(name, default_ms).map(Duration::from_millis)
    }
}

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub jobs_topic: String,
    pub status_topic: String,
    pub cancel_topic: String,
    pub jobs_partitions: i32,
    pub status_partitions: i32,
    /// Consumer group of the workers (the observer reads its lag).
    pub workers_group: String,
    /// Producer batching delay: low for dispatch latency.
    pub linger_ms: u32,
    /// Most records the producer puts in one record batch. 1 makes every
    /// offset a batch boundary, which a broker that answers a fetch from
    /// inside a batch with the next batch (tansu 0.6.0) needs so that no
    /// consumer resuming at an arbitrary offset skips records.
    pub batch_num_messages: u32,
    /// How long a fetch waits for data: bounds submit-to-launch latency.
    pub fetch_wait_max_ms: u32,
    pub session_timeout_ms: u32,
}

impl KafkaSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            brokers: env.string("LZ_KAFKA_BROKERS", "127.0.0.1:9092"),
            jobs_topic: env.string("LZ_JOBS_TOPIC", "lanzadera.jobs"),
            status_topic: env.string("LZ_STATUS_TOPIC", "lanzadera.status"),
            cancel_topic: env.string("LZ_IGNORE_TOPIC", "lanzadera.ignore"),
            jobs_partitions: env.parse("LZ_JOBS_PARTITIONS", 8)?,
            status_partitions: env.parse("LZ_STATUS_PARTITIONS", 4)?,
            workers_group: env.string("LZ_WORKERS_GROUP", "lanzadera-workers"),
            linger_ms: env.parse("LZ_KAFKA_LINGER_MS", 0)?,
            batch_num_messages: env.parse("LZ_KAFKA_BATCH_NUM_MESSAGES", 1)?,
            fetch_wait_max_ms: env.parse("LZ_KAFKA_FETCH_WAIT_MAX_MS", 20)?,
            session_timeout_ms: env.parse("LZ_KAFKA_SESSION_TIMEOUT_MS", 6000)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// May hold a password.
    pub uri: Secret<String>,
    pub database: String,
    /// How long an operation waits for a reachable server before failing:
    /// short, so requests fail fast when the database is down.
    pub server_selection_timeout: Duration,
}

impl MongoSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            uri: env.secret("LZ_MONGO_URI", "mongodb://127.0.0.1:27017"),
            database: env.string("LZ_MONGO_DB", "lanzadera"),
            server_selection_timeout: env.millis("LZ_MONGO_TIMEOUT_MS", 2000)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: Secret<String>,
    pub secret_key: Secret<String>,
}

impl S3Settings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            endpoint: env.string("LZ_S3_ENDPOINT", "http://127.0.0.1:8333"),
            bucket: env.string("LZ_S3_BUCKET", "lanzadera"),
            region: env.string("LZ_S3_REGION", "us-east-1"),
            access_key: env.secret("LZ_S3_ACCESS_KEY", "lanzadera-dev"),
            secret_key: env.secret("LZ_S3_SECRET_KEY", "lanzadera-dev-secret-key"),
        })
    }
}

#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// e.g. `https://sso.example.com/realms/lanzadera`
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret<String>,
    /// Accepted audience besides `azp == client_id` (Keycloak access tokens
    /// carry `aud: "account"`, not the client id).
    pub audience: Option<String>,
}

impl OidcSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            issuer: env
                .string("LZ_OIDC_ISSUER", "http://127.0.0.1:8180/realms/lanzadera")
                .trim_end_matches('/')
                .to_string(),
            client_id: env.string("LZ_OIDC_CLIENT_ID", "lanzadera-api"),
            client_secret: env.secret("LZ_OIDC_CLIENT_SECRET", "lanzadera-dev-secret"),
            audience: env.optional("LZ_OIDC_AUDIENCE"),
        })
    }
}

/// What a submitted job may contain.
#[derive(Debug, Clone)]
pub struct JobPolicy {
    pub repos: RepoPolicy,
    pub limits: SpecLimits,
}

impl JobPolicy {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let d = SpecLimits::default();
        Ok(Self {
            repos: RepoPolicy {
                allow_insecure: env.flag("LZ_ALLOW_INSECURE_REPOS", false)?,
                allowed_hosts: env.list("LZ_ALLOWED_REPO_HOSTS"),
            },
            limits: SpecLimits {
                max_url_bytes: env.parse("LZ_MAX_URL_BYTES", d.max_url_bytes)?,
                max_args: env.parse("LZ_MAX_ARGS", d.max_args)?,
                max_args_bytes: env.parse("LZ_MAX_ARGS_BYTES", d.max_args_bytes)?,
                max_config_bytes: env.parse("LZ_MAX_CONFIG_BYTES", d.max_config_bytes)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_the_local_stack() {
        let env = Env::from_pairs([]);
        let k = KafkaSettings::from_env(&env).unwrap();
        assert_eq!(k.brokers, "127.0.0.1:9092");
        assert_eq!(k.jobs_topic, "lanzadera.jobs");
        let o = OidcSettings::from_env(&env).unwrap();
        assert_eq!(o.issuer, "http://127.0.0.1:8180/realms/lanzadera");
        let p = JobPolicy::from_env(&env).unwrap();
        assert!(!p.repos.allow_insecure);
        assert_eq!(p.limits, SpecLimits::default());
    }

    #[test]
    fn values_are_read_and_bad_numbers_are_named_without_echoing_the_value() {
        let env = Env::from_pairs([
            ("LZ_JOBS_PARTITIONS", "12"),
            ("LZ_ALLOWED_REPO_HOSTS", "github.com, *.corp.example ,"),
            ("LZ_ALLOW_INSECURE_REPOS", "yes"),
            ("LZ_MAX_ARGS", "s3cr3t"),
        ]);
        assert_eq!(KafkaSettings::from_env(&env).unwrap().jobs_partitions, 12);
        let err = JobPolicy::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("LZ_MAX_ARGS"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        let env = Env::from_pairs([
            ("LZ_ALLOWED_REPO_HOSTS", "github.com, *.corp.example ,"),
            ("LZ_ALLOW_INSECURE_REPOS", "yes"),
        ]);
        let p = JobPolicy::from_env(&env).unwrap();
        assert!(p.repos.allow_insecure);
        assert_eq!(p.repos.allowed_hosts, vec!["github.com", "*.corp.example"]);
        assert!(Env::from_pairs([("X", "maybe")]).flag("X", false).is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let env = Env::from_pairs([
            ("LZ_S3_SECRET_KEY", "very-secret-key"),
            ("LZ_OIDC_CLIENT_SECRET", "client-secret-value"),
            ("LZ_MONGO_URI", "mongodb://u:dbpass@h:27017"),
        ]);
        let all = format!(
            "{:?} {:?} {:?}",
            S3Settings::from_env(&env).unwrap(),
            OidcSettings::from_env(&env).unwrap(),
            MongoSettings::from_env(&env).unwrap()
        );
        for secret in ["very-secret-key", "client-secret-value", "dbpass"] {
            assert!(!all.contains(secret), "{secret} leaked in {all}");
        }
    }
}
