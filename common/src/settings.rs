//! Settings, declared once and read from environment variables with
//! defaults that fit the local development stack.
//!
//! Every variable is a [`Setting`] constant: its name, the services that
//! read it, its default, whether it is secret, and its documentation. The
//! services read variables only through those constants, `docs/configuration.md`
//! and `docs/settings.json` are generated from them (a test fails when they
//! are out of date), and the compose checks read `docs/settings.json`. This
//! module declares the groups every service shares; each service declares
//! its own with the same macro.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use crate::{RepoPolicy, Secret, SpecLimits};

/// A service that reads a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The frontend (API and status recorder).
    F,
    /// The observer.
    O,
    /// The worker.
    W,
}

/// What a setting is when the variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// This text, parsed like a value that was set.
    Literal(&'static str),
    /// No value: the feature it configures is off or not restricted.
    Unset,
    /// Worked out by the service at start (described here).
    Computed(&'static str),
}

/// One environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub services: &'static [Service],
    pub default: DefaultValue,
    /// Must come from a secret store; read into a [`Secret`].
    pub secret: bool,
    /// One paragraph of Markdown (the doc comment of the declaration).
    pub doc: &'static str,
}

/// Settings documented together under one heading.
#[derive(Debug)]
pub struct Group {
    pub title: &'static str,
    /// Shown beside the title in the table.
    pub note: &'static str,
    pub settings: &'static [&'static Setting],
}

/// Declares settings as constants and their group.
///
/// ```ignore
/// declare_settings! {
///     /// Heading of the group in `docs/configuration.md`.
///     pub GROUP: "Title", "note beside the title" {
///         /// What it does (Markdown).
///         NAME = "LZ_NAME" [F W] default "value";
///         OTHER = "LZ_OTHER" [O] unset secret;
///         THIRD = "LZ_THIRD" [W] computed "what the service works out";
///     }
/// }
/// ```
#[macro_export]
macro_rules! declare_settings {
    (
        $(#[doc = $gdoc:literal])*
        pub $group:ident: $title:literal, $note:literal {
            $(
                $(#[doc = $doc:literal])+
                $id:ident = $name:literal [$($svc:ident)+] $kind:ident $($value:literal)? $($secret:ident)?;
            )*
        }
    ) => {
        $(
            $(#[doc = $doc])+
            pub const $id: $crate::settings::Setting = $crate::settings::Setting {
                name: $name,
                services: &[$($crate::settings::Service::$svc),+],
                default: $crate::declare_settings!(@default $kind $($value)?),
                secret: $crate::declare_settings!(@secret $($secret)?),
                doc: concat!($($doc, "\n"),+),
            };
        )*
        $(#[doc = $gdoc])*
        pub const $group: $crate::settings::Group = $crate::settings::Group {
            title: $title,
            note: $note,
            settings: &[$(&$id),*],
        };
    };
    (@default default $value:literal) => { $crate::settings::DefaultValue::Literal($value) };
    (@default unset) => { $crate::settings::DefaultValue::Unset };
    (@default computed $value:literal) => { $crate::settings::DefaultValue::Computed($value) };
    (@secret secret) => { true };
    (@secret) => { false };
}

#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {problem}")]
pub struct SettingsError {
    pub name: String,
    pub problem: String,
}

impl SettingsError {
    pub fn invalid(setting: &Setting, problem: &str) -> Self {
        Self {
            name: setting.name.to_string(),
            problem: problem.to_string(),
        }
    }
}

/// Reads variables from the process environment, or from a map in tests.
/// Every read names a [`Setting`], whose declared default applies when the
/// variable is unset, empty or only spaces.
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

    fn raw(&self, s: &Setting) -> Option<&str> {
        self.vars
            .get(s.name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The value, or the declared literal default.
    fn value(&self, s: &Setting) -> Result<&str, SettingsError> {
        match (self.raw(s), s.default) {
            (Some(raw), _) => Ok(raw),
            (None, DefaultValue::Literal(default)) => Ok(default),
            (None, _) => Err(SettingsError::invalid(s, "must be set")),
        }
    }

    pub fn string(&self, s: &Setting) -> Result<String, SettingsError> {
        self.value(s).map(str::to_string)
    }

    /// The value when set; for settings whose default is unset or computed.
    pub fn optional(&self, s: &Setting) -> Option<String> {
        self.raw(s).map(str::to_string)
    }

    pub fn secret(&self, s: &Setting) -> Result<Secret<String>, SettingsError> {
        self.string(s).map(Secret::new)
    }

    pub fn parse<T: FromStr>(&self, s: &Setting) -> Result<T, SettingsError>
    where
        T::Err: std::fmt::Display,
    {
        self.value(s)?.trim().parse().map_err(|e: T::Err| {
            // The value itself is not echoed: it might be a secret put in
            // the wrong variable.
            SettingsError::invalid(s, &format!("cannot be parsed ({e})"))
        })
    }

    /// Parsed when set; `None` when unset (for computed defaults).
    pub fn parse_optional<T: FromStr>(&self, s: &Setting) -> Result<Option<T>, SettingsError>
    where
        T::Err: std::fmt::Display,
    {
        match self.raw(s) {
            None => Ok(None),
            Some(_) => self.parse(s).map(Some),
        }
    }

    pub fn flag(&self, s: &Setting) -> Result<bool, SettingsError> {
        match self.value(s)?.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(SettingsError::invalid(s, "must be true or false")),
        }
    }

    /// Comma-separated; an unset list is empty.
    pub fn list(&self, s: &Setting) -> Vec<String> {
        let raw = match (self.raw(s), s.default) {
            (Some(raw), _) => raw,
            (None, DefaultValue::Literal(default)) => default,
            (None, _) => "",
        };
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn millis(&self, s: &Setting) -> Result<Duration, SettingsError> {
        self.parse(s).map(Duration::from_millis)
    }
}

crate::declare_settings! {
    /// The Kafka client settings.
    pub KAFKA: "Kafka", "" {
        /// Bootstrap servers, comma-separated `host:port`.
        KAFKA_BROKERS = "LZ_KAFKA_BROKERS" [F O W] default "127.0.0.1:9092";
        /// Topic of submitted jobs (`JobMessage`, see `wire-formats.md`). Carries clone
        /// credentials: only the frontend writes it and only workers read it.
        JOBS_TOPIC = "LZ_JOBS_TOPIC" [F O W] default "lanzadera.jobs";
        /// Topic of status events (`StatusEvent`).
        STATUS_TOPIC = "LZ_STATUS_TOPIC" [F O W] default "lanzadera.status";
        /// Topic of cancellation requests (`CancelRequest`), read in full by every
        /// worker. Always created with 1 partition.
        IGNORE_TOPIC = "LZ_IGNORE_TOPIC" [F O W] default "lanzadera.ignore";
        /// Partitions of the jobs topic when it is created (by whichever service starts
        /// first; all three try). Afterwards the observer grows it (see
        /// `PARTITION_FACTOR`); partitions never shrink.
        JOBS_PARTITIONS = "LZ_JOBS_PARTITIONS" [F O W] default "8";
        /// Partitions of the status topic when it is created.
        STATUS_PARTITIONS = "LZ_STATUS_PARTITIONS" [F O W] default "4";
        /// Consumer group the workers share on the jobs topic. The observer reads its
        /// lag (backlog) and members (current workers).
        WORKERS_GROUP = "LZ_WORKERS_GROUP" [O W] default "lanzadera-workers";
        /// Producer batching delay (`linger.ms`). 0 keeps submit-to-dispatch latency
        /// low. (The observer parses it but produces nothing.)
        KAFKA_LINGER_MS = "LZ_KAFKA_LINGER_MS" [F O W] default "0";
        /// Most records in one producer batch (`batch.num.messages`; 0 counts as 1).
        /// The default 1 makes every offset a batch boundary: tansu 0.6.0 answers a
        /// fetch that starts inside a batch with the *next* batch, so a consumer
        /// resuming mid-batch (a worker after a pause, any consumer after a restart or
        /// rebalance) would skip records. Apache Kafka returns the whole batch and the
        /// client drops what it did not ask for, so with it raise this (compose sets
        /// 10000) for throughput.
        KAFKA_BATCH_NUM_MESSAGES = "LZ_KAFKA_BATCH_NUM_MESSAGES" [F O W] default "1";
        /// Longest a consumer fetch waits for data (`fetch.wait.max.ms`); bounds how
        /// late a consumer sees a new message.
        KAFKA_FETCH_WAIT_MAX_MS = "LZ_KAFKA_FETCH_WAIT_MAX_MS" [F O W] default "20";
        /// Consumer group session timeout (`session.timeout.ms`): how soon a dead
        /// consumer's partitions move to another member. The worker caps it at
        /// `LZ_MAX_POLL_INTERVAL_MS`.
        KAFKA_SESSION_TIMEOUT_MS = "LZ_KAFKA_SESSION_TIMEOUT_MS" [F O W] default "6000";
    }
}

crate::declare_settings! {
    /// The MongoDB client settings.
    pub MONGO: "MongoDB", "" {
        /// Connection string. **Secret** when it holds a password
        /// (`mongodb://user:pass@host/...`).
        MONGO_URI = "LZ_MONGO_URI" [F O] default "mongodb://127.0.0.1:27017" secret;
        /// Database; holds the collections `jobs` and `observations`.
        MONGO_DB = "LZ_MONGO_DB" [F O] default "lanzadera";
        /// Server selection and connect timeout, and the frontend's bound on every
        /// database call (a hung server answers nothing): past it the API answers 503.
        /// The worker does not use MongoDB.
        MONGO_TIMEOUT_MS = "LZ_MONGO_TIMEOUT_MS" [F O] default "2000";
    }
}

crate::declare_settings! {
    /// The object store.
    pub S3: "Object storage (S3)", "" {
    /// S3-compatible endpoint (MinIO, SeaweedFS, AWS). Path-style addressing is
    /// used.
    S3_ENDPOINT = "LZ_S3_ENDPOINT" [F W] default "http://127.0.0.1:8333";
    /// Bucket of job outputs and logs (layout in `wire-formats.md`); created at
    /// start if missing.
    S3_BUCKET = "LZ_S3_BUCKET" [F W] default "lanzadera";
    /// Region name sent in signatures.
    S3_REGION = "LZ_S3_REGION" [F W] default "us-east-1";
    /// Access key id.
    S3_ACCESS_KEY = "LZ_S3_ACCESS_KEY" [F W] default "lanzadera-dev" secret;
    /// Secret access key.
    S3_SECRET_KEY = "LZ_S3_SECRET_KEY" [F W] default "lanzadera-dev-secret-key" secret;
    }
}

crate::declare_settings! {
    /// The identity provider.
    pub OIDC: "OpenID Connect", "" {
        /// Issuer URL (trailing `/` ignored). Its `/.well-known/openid-configuration`
        /// gives the JWKS and token endpoint; the `iss` of every token must equal it,
        /// and the provider's advertised issuer too.
        OIDC_ISSUER = "LZ_OIDC_ISSUER" [F] default "http://127.0.0.1:8180/realms/lanzadera";
        /// The API's client. Tokens are accepted when their `azp` is this client (or
        /// their `aud` contains `LZ_OIDC_AUDIENCE`); the login routes use it for the
        /// password grant.
        OIDC_CLIENT_ID = "LZ_OIDC_CLIENT_ID" [F] default "lanzadera-api";
        /// The client's secret for the password grant.
        OIDC_CLIENT_SECRET = "LZ_OIDC_CLIENT_SECRET" [F] default "lanzadera-dev-secret" secret;
        /// Extra audience accepted besides `azp == LZ_OIDC_CLIENT_ID`, e.g. when tokens
        /// are obtained through another client with an audience mapper.
        OIDC_AUDIENCE = "LZ_OIDC_AUDIENCE" [F] unset;
        /// The public client the `lanzadera` command signs in with (device code or
        /// password grant, no secret). Its tokens are accepted too, and `GET
        /// /auth/config` names it so the command needs no setup.
        OIDC_CLI_CLIENT_ID = "LZ_OIDC_CLI_CLIENT_ID" [F] default "lanzadera-cli";
    }
}

crate::declare_settings! {
    /// What a submitted job may contain.
    pub JOB_POLICY: "Job policy", "" {
        /// Also accept `http://`, `file://` and absolute local paths as job URLs. For
        /// the local stack only (`dev/stack.sh` sets it): a job could otherwise read
        /// the worker's disk or talk to internal services in clear.
        ALLOW_INSECURE_REPOS = "LZ_ALLOW_INSECURE_REPOS" [F W] default "false";
        /// Hosts jobs may clone from, comma-separated; `*.example.com` allows its
        /// subdomains (not `example.com` itself). Set it in production so a job cannot
        /// aim the worker at internal addresses. The worker checks the URL again before
        /// cloning: give both services the same value.
        ALLOWED_REPO_HOSTS = "LZ_ALLOWED_REPO_HOSTS" [F W] computed "empty (any host)";
        /// Longest job `url`. (The four limits are also parsed by the worker, which
        /// does not use them.)
        MAX_URL_BYTES = "LZ_MAX_URL_BYTES" [F W] default "2048";
        /// Most arguments after splitting `args`.
        MAX_ARGS = "LZ_MAX_ARGS" [F W] default "256";
        /// Largest total size of the arguments.
        MAX_ARGS_BYTES = "LZ_MAX_ARGS_BYTES" [F W] default "16384";
        /// Largest `config` text (objects are measured after serialisation). Keep it
        /// below `LZ_MAX_BODY_BYTES`, or the body limit answers first (413 instead of
        /// 400).
        MAX_CONFIG_BYTES = "LZ_MAX_CONFIG_BYTES" [F W] default "262144";
        /// The most a job's `timeoutSeconds` may ask for (one day); a larger value is
        /// refused with a 400 that names it. The worker also caps its default
        /// (`LZ_JOB_TIMEOUT_SECS`) by it.
        MAX_JOB_TIMEOUT_SECS = "LZ_MAX_JOB_TIMEOUT_SECS" [F W] default "86400";
    }
}

crate::declare_settings! {
    /// Read by `telemetry::init`.
    pub LOGGING: "Logging", "(every service)" {
        /// Log filter (`tracing` `EnvFilter` syntax).
        LOG_FILTER = "RUST_LOG" [F O W] default "info,rdkafka=warn,mongodb=warn";
        /// `json` for one JSON object per line (for log collectors); anything else is
        /// human-readable text. Logs go to stderr.
        LOG_FORMAT = "LZ_LOG_FORMAT" [F O W] default "text";
    }
}

/// The groups every service shares, in the order the documentation shows
/// them (each service's own group goes between job policy and logging).
pub const SHARED: [&Group; 5] = [&KAFKA, &MONGO, &S3, &OIDC, &JOB_POLICY];

/// The table of `docs/configuration.md`: one row per setting, a heading
/// row per group.
pub fn reference_table(groups: &[&Group]) -> String {
    let mut out =
        String::from("| variable | service(s) | default | meaning |\n|---|---|---|---|\n");
    for group in groups {
        let note = if group.note.is_empty() {
            String::new()
        } else {
            format!(" {}", group.note)
        };
        out.push_str(&format!("| **{}**{note} | | | |\n", group.title));
        for s in group.settings {
            let default = match s.default {
                DefaultValue::Literal(v) => format!("`{v}`"),
                DefaultValue::Unset => "unset".to_string(),
                DefaultValue::Computed(how) => how.to_string(),
            };
            let mut doc = paragraph(s.doc);
            if s.secret && !doc.contains("**Secret") {
                doc.push_str(" **Secret.**");
            }
            out.push_str(&format!(
                "| `{}` | {} | {default} | {doc} |\n",
                s.name,
                services(s)
            ));
        }
    }
    out
}

/// `docs/settings.json`: the same list for tools (the compose checks).
pub fn reference_json(groups: &[&Group]) -> String {
    let settings: Vec<serde_json::Value> = groups
        .iter()
        .flat_map(|g| g.settings.iter().map(move |s| (g, s)))
        .map(|(g, s)| {
            let (default, kind) = match s.default {
                DefaultValue::Literal(v) => (Some(v), "literal"),
                DefaultValue::Unset => (None, "unset"),
                DefaultValue::Computed(_) => (None, "computed"),
            };
            serde_json::json!({
                "name": s.name,
                "group": g.title,
                "services": s.services.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>(),
                "default": default,
                "defaultKind": kind,
                "secret": s.secret,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&serde_json::json!({ "settings": settings }))
        .unwrap_or_default();
    text.push('\n');
    text
}

fn services(s: &Setting) -> String {
    s.services
        .iter()
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A doc comment's lines as one line of Markdown.
fn paragraph(doc: &str) -> String {
    doc.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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
            brokers: env.string(&KAFKA_BROKERS)?,
            jobs_topic: env.string(&JOBS_TOPIC)?,
            status_topic: env.string(&STATUS_TOPIC)?,
            cancel_topic: env.string(&IGNORE_TOPIC)?,
            jobs_partitions: env.parse(&JOBS_PARTITIONS)?,
            status_partitions: env.parse(&STATUS_PARTITIONS)?,
            workers_group: env.string(&WORKERS_GROUP)?,
            linger_ms: env.parse(&KAFKA_LINGER_MS)?,
            batch_num_messages: env.parse(&KAFKA_BATCH_NUM_MESSAGES)?,
            fetch_wait_max_ms: env.parse(&KAFKA_FETCH_WAIT_MAX_MS)?,
            session_timeout_ms: env.parse(&KAFKA_SESSION_TIMEOUT_MS)?,
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
            uri: env.secret(&MONGO_URI)?,
            database: env.string(&MONGO_DB)?,
            server_selection_timeout: env.millis(&MONGO_TIMEOUT_MS)?,
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
            endpoint: env.string(&S3_ENDPOINT)?,
            bucket: env.string(&S3_BUCKET)?,
            region: env.string(&S3_REGION)?,
            access_key: env.secret(&S3_ACCESS_KEY)?,
            secret_key: env.secret(&S3_SECRET_KEY)?,
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
    /// The command line's public client, whose tokens are accepted as well.
    pub cli_client_id: String,
}

impl OidcSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            issuer: env.string(&OIDC_ISSUER)?.trim_end_matches('/').to_string(),
            client_id: env.string(&OIDC_CLIENT_ID)?,
            client_secret: env.secret(&OIDC_CLIENT_SECRET)?,
            audience: env.optional(&OIDC_AUDIENCE),
            cli_client_id: env.string(&OIDC_CLI_CLIENT_ID)?,
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
        Ok(Self {
            repos: RepoPolicy {
                allow_insecure: env.flag(&ALLOW_INSECURE_REPOS)?,
                allowed_hosts: env.list(&ALLOWED_REPO_HOSTS),
            },
            limits: SpecLimits {
                max_url_bytes: env.parse(&MAX_URL_BYTES)?,
                max_args: env.parse(&MAX_ARGS)?,
                max_args_bytes: env.parse(&MAX_ARGS_BYTES)?,
                max_config_bytes: env.parse(&MAX_CONFIG_BYTES)?,
                max_timeout_secs: env.parse(&MAX_JOB_TIMEOUT_SECS)?,
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
        let limits = SpecLimits {
            max_url_bytes: 2048,
            max_args: 256,
            max_args_bytes: 16 * 1024,
            max_config_bytes: 256 * 1024,
            max_timeout_secs: 86_400,
        };
        assert_eq!(p.limits, limits);
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
        assert!(Env::from_pairs([("LZ_ALLOW_INSECURE_REPOS", "maybe")])
            .flag(&ALLOW_INSECURE_REPOS)
            .is_err());
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

    #[test]
    fn a_setting_without_a_literal_default_must_be_set_to_be_read_as_a_value() {
        let env = Env::from_pairs([]);
        let err = env.string(&OIDC_AUDIENCE).unwrap_err().to_string();
        assert!(
            err.contains("LZ_OIDC_AUDIENCE") && err.contains("must be set"),
            "{err}"
        );
        assert_eq!(env.optional(&OIDC_AUDIENCE), None);
        assert_eq!(env.parse_optional::<u32>(&OIDC_AUDIENCE).unwrap(), None);
        assert!(env.list(&ALLOWED_REPO_HOSTS).is_empty());
        let env = Env::from_pairs([("LZ_OIDC_AUDIENCE", "  ")]);
        assert_eq!(env.optional(&OIDC_AUDIENCE), None, "blank counts as unset");
    }

    #[test]
    fn the_reference_table_shows_defaults_services_and_secrets() {
        let table = reference_table(&[&S3, &OIDC]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| variable | service(s) | default | meaning |");
        assert_eq!(lines[2], "| **Object storage (S3)** | | | |");
        let key = lines
            .iter()
            .find(|l| l.starts_with("| `LZ_S3_SECRET_KEY`"))
            .expect("row");
        assert!(
            key.contains("| F, W | `lanzadera-dev-secret-key` |"),
            "{key}"
        );
        assert!(key.ends_with("**Secret.** |"), "{key}");
        let audience = lines
            .iter()
            .find(|l| l.starts_with("| `LZ_OIDC_AUDIENCE`"))
            .expect("row");
        assert!(audience.contains("| F | unset |"), "{audience}");
        assert!(!audience.contains("Secret"), "{audience}");
        let json: serde_json::Value = serde_json::from_str(&reference_json(&[&S3])).unwrap();
        assert_eq!(json["settings"][0]["name"], "LZ_S3_ENDPOINT");
        assert_eq!(
            json["settings"][0]["services"],
            serde_json::json!(["F", "W"])
        );
    }

    #[test]
    fn every_value_read_into_a_secret_is_declared_secret() {
        for s in [
            &MONGO_URI,
            &S3_ACCESS_KEY,
            &S3_SECRET_KEY,
            &OIDC_CLIENT_SECRET,
        ] {
            assert!(s.secret, "{} must be declared secret", s.name);
        }
    }
}
