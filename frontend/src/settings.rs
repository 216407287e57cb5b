use common::settings::{
    Env, JobPolicy, KafkaSettings, MongoSettings, OidcSettings, S3Settings, SettingsError,
};

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
            http_addr: env.string("LZ_HTTP_ADDR", "127.0.0.1:8080"),
            public_url: env
                .optional("LZ_PUBLIC_URL")
                .map(|u| u.trim_end_matches('/').to_string()),
            max_body_bytes: env.parse("LZ_MAX_BODY_BYTES", 1024 * 1024)?,
            http_workers: env.parse("LZ_HTTP_WORKERS", cores)?,
            recorder_group: env.string("LZ_RECORDER_GROUP", "lanzadera-recorder"),
            run_recorder: env.flag("LZ_RUN_RECORDER", true)?,
            kafka: KafkaSettings::from_env(env)?,
            mongo: MongoSettings::from_env(env)?,
            s3: S3Settings::from_env(env)?,
            oidc: OidcSettings::from_env(env)?,
            jobs: JobPolicy::from_env(env)?,
        })
    }
}
