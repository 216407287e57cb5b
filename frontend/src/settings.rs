//! The frontend's typed settings: the shared groups plus its own (see
//! `docs/configuration.md`, generated from these declarations).

use common::settings::{
    Env, Group, JobPolicy, KafkaSettings, MongoSettings, OidcSettings, S3Settings, SettingsError,
};

common::declare_settings! {
    /// The API server and its status recorder.
    pub FRONTEND: "Frontend", "" {
        /// Listen address. Use `0.0.0.0:8080` in a container; port `0` picks a free
        /// port (tests).
        HTTP_ADDR = "LZ_HTTP_ADDR" [F] default "127.0.0.1:8080";
        /// Base URL put in download links (`outputFiles`, `logs`, `Location`), e.g.
        /// `https://jobs.example.com`; trailing `/` removed. When unset, links use the
        /// scheme and `Host` of each request, which is wrong behind a proxy that
        /// rewrites them.
        PUBLIC_URL = "LZ_PUBLIC_URL" [F] unset;
        /// Largest submission body; larger answers 413. (The login body has its own
        /// fixed 16 KiB limit.)
        MAX_BODY_BYTES = "LZ_MAX_BODY_BYTES" [F] default "1048576";
        /// actix-web worker threads.
        HTTP_WORKERS = "LZ_HTTP_WORKERS" [F] computed "number of CPUs";
        /// Run the status recorder (status topic → `jobs` collection) inside this
        /// process. At least one frontend replica must run it; several may (they share
        /// the partitions).
        RUN_RECORDER = "LZ_RUN_RECORDER" [F] default "true";
        /// Consumer group of the status recorder; the same for every replica.
        RECORDER_GROUP = "LZ_RECORDER_GROUP" [F] default "lanzadera-recorder";
        /// Ended jobs kept in memory for reads (an ended job never changes again, so a
        /// read of one needs no database round trip); about 1 KiB each. 0 turns it off.
        ENDED_JOB_CACHE = "LZ_ENDED_JOB_CACHE_ENTRIES" [F] default "10000";
    }
}

/// Every group the frontend reads, for the generated documentation.
pub const GROUPS: [&Group; 1] = [&FRONTEND];

#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub http_addr: String,
    /// Base URL used in download links; when unset, taken from the request.
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub http_workers: usize,
    /// Consumer group of the status recorder (shared by all replicas).
    pub recorder_group: String,
    /// Run the status recorder in this process.
    pub run_recorder: bool,
    /// Most ended jobs kept in memory for reads.
    pub ended_job_cache: u64,
    pub kafka: KafkaSettings,
    pub mongo: MongoSettings,
    pub s3: S3Settings,
    pub oidc: OidcSettings,
    pub jobs: JobPolicy,
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from(&Env::from_process())
    }

    pub fn from(env: &Env) -> Result<Self, SettingsError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            http_addr: env.string(&HTTP_ADDR)?,
            public_url: env
                .optional(&PUBLIC_URL)
                .map(|u| u.trim_end_matches('/').to_string()),
            max_body_bytes: env.parse(&MAX_BODY_BYTES)?,
            http_workers: env.parse_optional(&HTTP_WORKERS)?.unwrap_or(cores),
            recorder_group: env.string(&RECORDER_GROUP)?,
            run_recorder: env.flag(&RUN_RECORDER)?,
            ended_job_cache: env.parse(&ENDED_JOB_CACHE)?,
            kafka: KafkaSettings::from_env(env)?,
            mongo: MongoSettings::from_env(env)?,
            s3: S3Settings::from_env(env)?,
            oidc: OidcSettings::from_env(env)?,
            jobs: JobPolicy::from_env(env)?,
        })
    }
}
