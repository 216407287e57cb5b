//! Bodies the handlers build with `json!` or parse by hand, described as
//! types so that the document is generated. `JobView`, `JobState`,
//! `Observation` and `ScaleDecision` derive their schemas where they are
//! defined.
#![allow(dead_code)] // read by the schema derive only

use serde::Serialize;
use utoipa::ToSchema;

/// Every error answer. `error` is a stable machine-readable code; `message`
/// says what to do, in words. Causes (stack traces, internal host names)
/// are logged, never returned.
///
/// | code | status |
/// |---|---|
/// | `bad_request` | 400 |
/// | `invalid_job` | 400 |
/// | `unauthorized` | 401 |
/// | `not_found` | 404 |
/// | `conflict` | 409 |
/// | `payload_too_large` | 413 |
/// | `internal` | 500 |
/// | `unavailable` | 503 |
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": "not_found", "message": "no such job"}))]
pub struct Error {
    pub error: ErrorCode,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    BadRequest,
    InvalidJob,
    NotFound,
    Conflict,
    PayloadTooLarge,
    Unavailable,
    Internal,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Up,
    Down,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub mongodb: Check,
    pub kafka: Check,
}

/// The 503 answer of `GET /health/ready`: an `Error` with the individual
/// checks.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": "unavailable", "message": "a backing service is unreachable",
                          "checks": {"mongodb": "up", "kafka": "down"}}))]
pub struct NotReady {
    pub error: ErrorCode,
    pub message: String,
    pub checks: Readiness,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"username": "alice", "password": "alice-pass"}))]
pub struct Credentials {
    #[schema(min_length = 1)]
    pub username: String,
    #[schema(min_length = 1, format = Password)]
    pub password: String,
}

/// Where to sign in: the OpenID Connect issuer and the public client of the
/// `lanzadera` command.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignInConfig {
    #[schema(format = "uri")]
    pub issuer: String,
    pub client_id: String,
}

#[derive(Serialize, ToSchema)]
pub enum BearerType {
    Bearer,
}

/// An access token issued by the OIDC provider (Keycloak) through the
/// password grant of the API's client. `token` and `access_token` hold the
/// same value: `token` is what the original service returned, the rest
/// follows OAuth 2.0 naming.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "token": "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
    "access_token": "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
    "token_type": "Bearer",
    "expires_in": 300,
    "refresh_token": "eyJhbGciOiJIUzI1NiJ9.eyJ0eXAiOiJSZWZyZXNoIn0.c2lnbmF0dXJl"
}))]
pub struct TokenResponse {
    /// The access token (a JWT). Send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Same value as `token`.
    pub access_token: String,
    pub token_type: BearerType,
    /// Lifetime of the access token in seconds, as the provider reported
    /// it; `null` if it did not.
    #[schema(minimum = 0)]
    pub expires_in: Option<i64>,
    /// The provider's refresh token, if it issued one. The API itself has
    /// no refresh route: use the provider's token endpoint, or log in again.
    pub refresh_token: Option<String>,
}

/// One argument of an `args` array: numbers and booleans become their text.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ArgItem {
    Text(String),
    Number(f64),
    Flag(bool),
}

/// Extra arguments for the start script. A string is split into words as a
/// POSIX shell would (quotes and backslashes honoured; no expansion of any
/// kind); an array is taken as it is (numbers and booleans become their
/// text). They are passed as arguments, never through a shell. Limits:
/// `LZ_MAX_ARGS` arguments (default 256), `LZ_MAX_ARGS_BYTES` bytes in all
/// (default 16384), no NUL characters.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Args {
    #[schema(example = "--steps 1000 --title 'two words'")]
    Line(String),
    #[schema(example = json!(["--steps", "1000", "--title", "two words"]))]
    List(Vec<ArgItem>),
}

/// Written to `config.json` in the repository root before the run: a
/// string verbatim, an object serialised as JSON. Limit
/// `LZ_MAX_CONFIG_BYTES` (default 262144 bytes, measured on the text
/// written).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Config {
    Text(String),
    Object(serde_json::Map<String, serde_json::Value>),
}

/// A job: a git repository whose `package.json` has a `scripts.start`
/// command, run as `npm run start -- <args>` would run it, with `config`
/// written to `config.json` first. Any other field is a 400 that names it
/// (the contract's `retries` is not supported yet and is refused by name
/// too). A `null` `args`, `config`, `ref`, `timeoutSeconds` or `secrets` is
/// the same as leaving it out.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://github.com/acme/heat-sim.git",
                          "args": "--steps 1000 --title 'two words'",
                          "config": {"grid": 64, "tolerance": 1e-06}}))]
pub struct JobSubmission {
    /// The git repository, `https://` only unless the operator set
    /// `LZ_ALLOW_INSECURE_REPOS` (then also `http://`, `file://` and
    /// absolute local paths). No query or fragment; it must name a path. If
    /// the operator set `LZ_ALLOWED_REPO_HOSTS`, the host must be in that
    /// list. A private repository carries its credentials in the URL
    /// (`https://<user>:<token>@host/owner/repo.git`): they are secret, and
    /// every answer shows the URL with them replaced by `***`. The limit is
    /// `LZ_MAX_URL_BYTES` (default 2048 bytes).
    #[schema(max_length = 2048, example = "https://github.com/acme/heat-sim.git")]
    pub url: String,
    pub args: Option<Args>,
    pub config: Option<Config>,
    /// The branch, tag or commit id to run (default: the remote's HEAD):
    /// a name `git check-ref-format` accepts, or hex digits of a commit;
    /// revision expressions like `main~1` are refused. The commit it
    /// resolved to is recorded in the job as `commit`; a ref the
    /// repository lacks fails the job and says so.
    #[serde(rename = "ref")]
    #[schema(max_length = 255, example = "main")]
    pub git_ref: Option<String>,
    /// The job's wall-clock limit in whole seconds, applied to the clone
    /// and to the run separately; at most `LZ_MAX_JOB_TIMEOUT_SECS`
    /// (default 86400): more is a 400 that names the maximum. Default: the
    /// worker's `LZ_JOB_TIMEOUT_SECS` (3600).
    #[serde(rename = "timeoutSeconds")]
    #[schema(minimum = 1, example = 600)]
    pub timeout_seconds: Option<u64>,
    /// Write-only values the start script gets as environment variables,
    /// by name (at most 32). A name is letters, digits and `_`, not
    /// beginning with a digit, at most 128 characters, and not one the
    /// worker sets (`PATH`, `HOME`, `TMPDIR`, `LANG`, `INIT_CWD`, `LZ_*`,
    /// `npm_*`); a value is 4 to 4096 bytes with no NUL. The values are
    /// never stored in the database nor returned (a job shows only
    /// `secretNames`), and each is replaced by `***` in the job's logs.
    #[schema(schema_with = secrets_schema)]
    pub secrets: Option<std::collections::BTreeMap<String, String>>,
}

/// `secrets`: names are environment variable names the worker does not
/// set, values 4 to 4096 bytes with no NUL (`domain::secrets`).
fn secrets_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(common::secrets::name_pattern()));
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(common::secrets::MIN_SECRET_BYTES))
        .max_length(Some(common::secrets::MAX_SECRET_BYTES))
        .pattern(Some("^[^\\u0000]*$"));
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Object,
            Type::Null,
        ]))
        .property_names(Some(name))
        .additional_properties(Some(value))
        .max_properties(Some(common::secrets::MAX_SECRETS))
        .examples([serde_json::json!({"API_TOKEN": "tok_3f9a0c77"})])
        .build()
}

/// Download links of the run's standard output and error.
#[derive(Serialize, ToSchema)]
pub struct JobLinks {
    #[schema(format = "uri")]
    pub stdout: String,
    #[schema(format = "uri")]
    pub stderr: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<crate::routes::jobs::JobView>,
    #[schema(minimum = 1)]
    pub page: u64,
    #[schema(minimum = 1, maximum = 100)]
    pub per_page: u64,
    /// How many of the caller's jobs match the filter, over all pages.
    pub total: u64,
}

/// Answer of the compatibility submit route.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"jobId": "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f"}))]
pub struct JobAccepted {
    pub job_id: uuid::Uuid,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Queued {
    Queued,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"jobId": "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f", "status": "queued"}))]
pub struct JobCreated {
    pub job_id: uuid::Uuid,
    pub status: Queued,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancelledState {
    Cancelled,
}

/// The job was still queued and is now cancelled: it will never run.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"jobId": "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f", "status": "cancelled"}))]
pub struct JobCancelled {
    pub job_id: uuid::Uuid,
    pub status: CancelledState,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunningState {
    Running,
}

/// The job was no longer queued: its worker stops it and records it as
/// `cancelled`. Poll the job to see the end.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"jobId": "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f", "status": "running",
    "message": "cancellation requested; the worker stops the job and records it as cancelled"}))]
pub struct CancelRequested {
    pub job_id: uuid::Uuid,
    pub status: RunningState,
    pub message: String,
}
