//! The job contract (`docs/contract.md` §2), parsed once at the edge: after
//! `JobSpec::parse` the rest of the code cannot see a bad url, a forbidden
//! scheme or oversized input.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;
use uuid::Uuid;

use crate::secrets::{self, JobSecrets};
use crate::Secret;

/// A job's id. Serialised as the hyphenated string in every format
/// (including BSON, where a `Uuid` would otherwise become binary), so that
/// stored ids and query filters always agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).ok_or_else(|| serde::de::Error::custom("a job id is a UUID"))
    }
}

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses a job id from a path segment. Anything that is not a UUID is
    /// simply not a job, which callers report as 404.
    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw).ok().map(Self)
    }

    /// The id's 16 bytes (random for ids made by `new`).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Size limits on what a user may submit; configurable by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecLimits {
    pub max_url_bytes: usize,
    pub max_args: usize,
    pub max_args_bytes: usize,
    pub max_config_bytes: usize,
    /// The most `timeoutSeconds` may ask for.
    pub max_timeout_secs: u64,
}

/// The operator's defaults live in the settings declarations
/// (`common::settings::JOB_POLICY`); these are the same numbers for the
/// parser's own tests.
#[cfg(test)]
impl Default for SpecLimits {
    fn default() -> Self {
        Self {
            max_url_bytes: 2048,
            max_args: 256,
            max_args_bytes: 16 * 1024,
            max_config_bytes: 256 * 1024,
            max_timeout_secs: 86_400,
        }
    }
}

/// Which repositories jobs may clone from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoPolicy {
    /// Also allow `http://`, `file://` and absolute local paths (local
    /// development only: a job could otherwise read the worker's disk).
    pub allow_insecure: bool,
    /// When non-empty, only these hosts; `*.example.com` allows subdomains.
    pub allowed_hosts: Vec<String>,
}

impl RepoPolicy {
    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_hosts.is_empty()
            || self
                .allowed_hosts
                .iter()
                .any(|pattern| match pattern.strip_prefix("*.") {
                    Some(domain) => host
                        .strip_suffix(domain)
                        .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                    None => host.eq_ignore_ascii_case(pattern),
                })
    }
}

/// Why a submission was refused; each message tells the user what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "the request body must be a JSON object like {{\"url\": \"https://host/owner/repo.git\"}}"
    )]
    NotAnObject,
    #[error("`url` is required: the git repository to run")]
    MissingUrl,
    #[error("`url` must be a string")]
    UrlNotAString,
    #[error("`url` is longer than {0} bytes")]
    UrlTooLong(usize),
    #[error("`url` is not a valid URL: {0}")]
    UrlInvalid(String),
    #[error("`url` scheme `{0}` is not allowed; use https://")]
    SchemeNotAllowed(String),
    #[error("`url` must name a repository path, like https://host/owner/repo.git")]
    UrlWithoutPath,
    #[error("`url` must not carry a query or fragment")]
    UrlWithQuery,
    #[error("`url` host `{0}` is not in the list of hosts jobs may clone from")]
    HostNotAllowed(String),
    #[error("`args` must be a string or an array of strings")]
    ArgsWrongType,
    #[error("`args` could not be split into words: {0}")]
    ArgsUnbalanced(String),
    #[error("`args` has {0} arguments; at most {1} are allowed")]
    TooManyArgs(usize, usize),
    #[error("`args` is larger than {0} bytes")]
    ArgsTooLarge(usize),
    #[error("`args` must not contain NUL characters")]
    ArgsWithNul,
    #[error("`config` must be a string or a JSON object")]
    ConfigWrongType,
    #[error("`config` is larger than {0} bytes")]
    ConfigTooLarge(usize),
    #[error("unknown field `{0}`: a job has `url`, `args`, `config`, `ref`, `timeoutSeconds` and `secrets`")]
    UnknownField(String),
    #[error("`ref` {0}; give a branch, a tag or a commit id, like `main`, `v1.2` or `3f2a9c1`")]
    RefInvalid(&'static str),
    #[error("`timeoutSeconds` must be a whole number of seconds, at least 1")]
    TimeoutInvalid,
    #[error("`timeoutSeconds` is over the operator's maximum of {0} seconds")]
    TimeoutTooLong(u64),
    #[error("`secrets` must be an object of names to string values, like {{\"TOKEN\": \"...\"}}")]
    SecretsWrongType,
    #[error("`secrets` has {0} entries; at most {1} are allowed")]
    TooManySecrets(usize, usize),
    #[error("`secrets` name `{0}` {1}")]
    SecretNameInvalid(String, &'static str),
    #[error("the value of `secrets` entry `{0}` {1}")]
    SecretInvalid(String, &'static str),
    #[error(
        "`{0}` is part of the job contract but this version does not support it yet; leave it out"
    )]
    NotSupportedYet(String),
}

/// The fields a job body may have.
const FIELDS: [&str; 6] = ["url", "args", "config", "ref", "timeoutSeconds", "secrets"];
/// Fields of the contract (`docs/contract.md` §2) not built yet: refused by
/// name rather than ignored, so that a job never runs without what its
/// author asked for.
const NOT_YET: [&str; 1] = ["retries"];

/// A repository URL. The full form, which may hold credentials, is secret;
/// `redacted()` is what logs, records and events show.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl {
    full: Secret<String>,
    redacted: String,
}

impl RepoUrl {
    pub fn parse(raw: &str, policy: &RepoPolicy) -> Result<Self, SpecError> {
        let raw = raw.trim();
        if policy.allow_insecure && raw.starts_with('/') {
            let unclean =
                || SpecError::UrlInvalid("a local path must be absolute and clean".into());
            // `from_file_path` keeps `.` and `..` as written, so `/..` (the
            // root) would pass the path check that `/` fails, and the url
            // checked would not be the one a re-parse (the clone) sees.
            if raw.split('/').any(|seg| seg == "." || seg == "..") {
                return Err(unclean());
            }
            let url = Url::from_file_path(raw).map_err(|()| unclean())?;
            return Self::from_url(url, policy);
        }
        let url = Url::parse(raw).map_err(|e| SpecError::UrlInvalid(e.to_string()))?;
        Self::from_url(url, policy)
    }

    fn from_url(mut url: Url, policy: &RepoPolicy) -> Result<Self, SpecError> {
        match url.scheme() {
            "https" => {}
            "http" | "file" if policy.allow_insecure => {}
            other => return Err(SpecError::SchemeNotAllowed(other.to_string())),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(SpecError::UrlWithQuery);
        }
        if url.path().trim_matches('/').is_empty() {
            return Err(SpecError::UrlWithoutPath);
        }
        if url.scheme() != "file" {
            let host = url
                .host_str()
                .ok_or_else(|| SpecError::UrlInvalid("the URL has no host".into()))?;
            if !policy.host_allowed(host) {
                return Err(SpecError::HostNotAllowed(host.to_string()));
            }
        }
        let full = url.to_string();
        if !url.username().is_empty() || url.password().is_some() {
            // Keep a marker so users see that credentials were given.
            let _ = url.set_password(None);
            let _ = url.set_username("***");
        }
        Ok(Self {
            full: Secret::new(full),
            redacted: url.to_string(),
        })
    }

    /// The URL with credentials: only for the worker's clone.
    pub fn expose(&self) -> &str {
        self.full.expose()
    }

    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// A submitted job, parsed and within limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub url: RepoUrl,
    pub args: Vec<String>,
    /// Written verbatim to `config.json`.
    pub config: Option<String>,
    /// The branch, tag or commit to run; the remote's HEAD when absent.
    pub git_ref: Option<GitRef>,
    /// The job's own wall-clock limit, within the operator's maximum.
    pub timeout_secs: Option<u64>,
    /// Given to the script as environment variables, never shown.
    pub secrets: JobSecrets,
}

/// A branch, tag or commit id, as a job names it. Only names git itself
/// would accept as a ref (`git check-ref-format`) or a hex commit id get
/// here, so it can never be read as a revision expression (`main~1`) or an
/// option (`-x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef(String);

impl GitRef {
    pub fn parse(raw: &str) -> Result<Self, SpecError> {
        let bad = |why| Err(SpecError::RefInvalid(why));
        if raw.is_empty() {
            return bad("is empty");
        }
        if raw.len() > 255 {
            return bad("is longer than 255 bytes");
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return bad("must not contain spaces or control characters");
        }
        if raw.contains(['~', '^', ':', '?', '*', '[', '\\']) {
            return bad("must not contain any of ~ ^ : ? * [ \\");
        }
        if raw.starts_with('-') || raw.starts_with('/') || raw.ends_with('/') {
            return bad("must not begin with - or /, nor end with /");
        }
        if raw.contains("..") || raw.contains("//") || raw.contains("@{") || raw == "@" {
            return bad("must not contain .., // or @{");
        }
        if raw.ends_with('.')
            || raw.ends_with(".lock")
            || raw.split('/').any(|c| c.starts_with('.'))
        {
            return bad("must not end with . or .lock, nor have a part that begins with .");
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JobSpec {
    pub fn parse(
        body: &Value,
        policy: &RepoPolicy,
        limits: &SpecLimits,
    ) -> Result<Self, SpecError> {
        let object = body.as_object().ok_or(SpecError::NotAnObject)?;
        // A typo (`arg` for `args`) must not be silently ignored.
        if let Some(name) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(if NOT_YET.contains(&name.as_str()) {
                SpecError::NotSupportedYet(name.clone())
            } else {
                SpecError::UnknownField(name.clone())
            });
        }
        let url = match object.get("url") {
            None | Some(Value::Null) => return Err(SpecError::MissingUrl),
            Some(Value::String(s)) if s.trim().is_empty() => return Err(SpecError::MissingUrl),
            Some(Value::String(s)) if s.len() > limits.max_url_bytes => {
                return Err(SpecError::UrlTooLong(limits.max_url_bytes))
            }
            Some(Value::String(s)) => RepoUrl::parse(s, policy)?,
            Some(_) => return Err(SpecError::UrlNotAString),
        };
        let args = parse_args(object.get("args"), limits)?;
        let config = parse_config(object.get("config"), limits)?;
        let git_ref = match object.get("ref") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(GitRef::parse(s)?),
            Some(_) => return Err(SpecError::RefInvalid("must be a string")),
        };
        let timeout_secs = match object.get("timeoutSeconds") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_timeout(v, limits)?),
        };
        let secrets = secrets::parse(object.get("secrets"))?;
        Ok(Self {
            url,
            args,
            config,
            git_ref,
            timeout_secs,
            secrets,
        })
    }
}

fn parse_args(raw: Option<&Value>, limits: &SpecLimits) -> Result<Vec<String>, SpecError> {
    let args = match raw {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(line)) => {
            shell_words::split(line).map_err(|e| SpecError::ArgsUnbalanced(e.to_string()))?
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                // Numbers and booleans are what a user means literally.
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(SpecError::ArgsWrongType),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(SpecError::ArgsWrongType),
    };
    if args.len() > limits.max_args {
        return Err(SpecError::TooManyArgs(args.len(), limits.max_args));
    }
    if args.iter().map(String::len).sum::<usize>() > limits.max_args_bytes {
        return Err(SpecError::ArgsTooLarge(limits.max_args_bytes));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(SpecError::ArgsWithNul);
    }
    Ok(args)
}

fn parse_timeout(raw: &Value, limits: &SpecLimits) -> Result<u64, SpecError> {
    let secs = match raw.as_u64() {
        Some(n) if n >= 1 => n,
        // 30.0 is a whole number a JSON encoder may well write.
        _ => match raw.as_f64() {
            Some(f) if f >= 1.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => f as u64,
            _ => return Err(SpecError::TimeoutInvalid),
        },
    };
    if secs > limits.max_timeout_secs {
        return Err(SpecError::TimeoutTooLong(limits.max_timeout_secs));
    }
    Ok(secs)
}

fn parse_config(raw: Option<&Value>, limits: &SpecLimits) -> Result<Option<String>, SpecError> {
    let text = match raw {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(_) => return Err(SpecError::ConfigWrongType),
    };
    if text.len() > limits.max_config_bytes {
        return Err(SpecError::ConfigTooLarge(limits.max_config_bytes));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strict() -> RepoPolicy {
        RepoPolicy::default()
    }

    fn dev() -> RepoPolicy {
        RepoPolicy {
            allow_insecure: true,
            allowed_hosts: vec![],
        }
    }

    fn parse(body: Value) -> Result<JobSpec, SpecError> {
        JobSpec::parse(&body, &strict(), &SpecLimits::default())
    }

    #[test]
    fn minimal_https_job() {
        let spec = parse(json!({"url": "https://github.com/acme/sim.git"})).unwrap();
        assert_eq!(spec.url.redacted(), "https://github.com/acme/sim.git");
        assert_eq!(spec.url.expose(), "https://github.com/acme/sim.git");
        assert!(spec.args.is_empty());
        assert_eq!(spec.config, None);
    }

    #[test]
    fn credentials_are_kept_secret_and_redacted_everywhere_else() {
        let spec = parse(json!({"url": "https://bob:ghp_s3cr3t@git.example.com/o/r.git"})).unwrap();
        assert_eq!(
            spec.url.expose(),
            "https://bob:ghp_s3cr3t@git.example.com/o/r.git"
        );
        assert_eq!(spec.url.redacted(), "https://***@git.example.com/o/r.git");
        let shown = format!("{spec:?}");
        assert!(!shown.contains("ghp_s3cr3t"), "{shown}");
        assert!(!shown.contains("bob"), "{shown}");
    }

    #[test]
    fn token_only_credentials_are_redacted_too() {
        let spec = parse(json!({"url": "https://ghp_token@github.com/o/r"})).unwrap();
        assert_eq!(spec.url.redacted(), "https://***@github.com/o/r");
    }

    #[test]
    fn rejections_table() {
        let long = format!("https://h/{}", "a".repeat(3000));
        let cases: Vec<(Value, SpecError)> = vec![
            (json!([1, 2]), SpecError::NotAnObject),
            (json!({}), SpecError::MissingUrl),
            (json!({"url": null}), SpecError::MissingUrl),
            (json!({"url": "  "}), SpecError::MissingUrl),
            (json!({"url": 42}), SpecError::UrlNotAString),
            (json!({"url": long}), SpecError::UrlTooLong(2048)),
            (
                json!({"url": "http://github.com/o/r"}),
                SpecError::SchemeNotAllowed("http".into()),
            ),
            (
                json!({"url": "file:///etc/passwd"}),
                SpecError::SchemeNotAllowed("file".into()),
            ),
            (
                json!({"url": "ssh://git@github.com/o/r"}),
                SpecError::SchemeNotAllowed("ssh".into()),
            ),
            (
                json!({"url": "https://github.com/"}),
                SpecError::UrlWithoutPath,
            ),
            (
                json!({"url": "https://github.com"}),
                SpecError::UrlWithoutPath,
            ),
            (
                json!({"url": "https://github.com/o/r?x=1"}),
                SpecError::UrlWithQuery,
            ),
            (
                json!({"url": "https://github.com/o/r#main"}),
                SpecError::UrlWithQuery,
            ),
            (
                json!({"url": "https://h/o/r", "args": {"a": 1}}),
                SpecError::ArgsWrongType,
            ),
            (
                json!({"url": "https://h/o/r", "args": [["x"]]}),
                SpecError::ArgsWrongType,
            ),
            (
                json!({"url": "https://h/o/r", "args": [null]}),
                SpecError::ArgsWrongType,
            ),
            (
                json!({"url": "https://h/o/r", "config": 3}),
                SpecError::ConfigWrongType,
            ),
            (
                json!({"url": "https://h/o/r", "config": [1]}),
                SpecError::ConfigWrongType,
            ),
            (
                json!({"url": "https://h/o/r", "args": ["a\u{0}b"]}),
                SpecError::ArgsWithNul,
            ),
            (
                json!({"url": "https://h/o/r", "arg": "x"}),
                SpecError::UnknownField("arg".into()),
            ),
            (
                json!({"uri": "https://h/o/r"}),
                SpecError::UnknownField("uri".into()),
            ),
            (
                json!({"url": "https://h/o/r", "retries": 2}),
                SpecError::NotSupportedYet("retries".into()),
            ),
            (
                json!({"url": "https://h/o/r", "timeoutSeconds": 86_401}),
                SpecError::TimeoutTooLong(86_400),
            ),
            (
                json!({"url": "https://h/o/r", "secrets": {"T": "x"}}),
                SpecError::SecretInvalid(
                    "T".into(),
                    "is shorter than 4 bytes, too short to be masked in the logs",
                ),
            ),
            (
                json!({"url": "https://h/o/r", "secrets": ["T"]}),
                SpecError::SecretsWrongType,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(body.clone()), Err(expected), "body: {body}");
        }
    }

    #[test]
    fn refs_git_would_take_are_kept_as_given() {
        for name in [
            "main",
            "v1.2.0",
            "feature/x-1",
            "release@2",
            "3f2a9c1",
            "a".repeat(255).as_str(),
        ] {
            let spec = parse(json!({"url": "https://h/o/r", "ref": name})).unwrap();
            assert_eq!(spec.git_ref.as_ref().map(GitRef::as_str), Some(name));
        }
        let spec = parse(json!({"url": "https://h/o/r", "ref": null})).unwrap();
        assert_eq!(spec.git_ref, None);
    }

    #[test]
    fn refs_that_are_not_names_are_refused_with_the_reason() {
        let cases: &[(Value, &str)] = &[
            (json!(""), "is empty"),
            (json!("a".repeat(256)), "longer than 255"),
            (json!("my branch"), "spaces"),
            (json!("main\n"), "spaces or control"),
            (json!("main~1"), "~ ^ :"),
            (json!("HEAD^"), "~ ^ :"),
            (json!("a:b"), "~ ^ :"),
            (json!("feat*"), "~ ^ :"),
            (json!("-x"), "begin with -"),
            (json!("/main"), "begin with -"),
            (json!("main/"), "end with /"),
            (json!("a..b"), ".., //"),
            (json!("a//b"), ".., //"),
            (json!("main@{1}"), ".., //"),
            (json!("@"), ".., //"),
            (json!("v1."), "end with ."),
            (json!("x.lock"), ".lock"),
            (json!("a/.hidden"), "begins with ."),
            (json!(7), "must be a string"),
            (json!(["main"]), "must be a string"),
        ];
        for (raw, why) in cases {
            let err = parse(json!({"url": "https://h/o/r", "ref": raw})).unwrap_err();
            assert!(matches!(err, SpecError::RefInvalid(_)), "{raw}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(why), "{raw}: {text}");
            assert!(text.starts_with("`ref` "), "{text}");
        }
    }

    #[test]
    fn timeouts_are_whole_seconds_within_the_operators_maximum() {
        let ok = |raw: Value| parse(json!({"url": "https://h/o/r", "timeoutSeconds": raw}));
        assert_eq!(ok(json!(1)).unwrap().timeout_secs, Some(1));
        assert_eq!(ok(json!(30.0)).unwrap().timeout_secs, Some(30));
        assert_eq!(ok(json!(86_400)).unwrap().timeout_secs, Some(86_400));
        assert_eq!(ok(Value::Null).unwrap().timeout_secs, None);
        for bad in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!("60"),
            json!(true),
            json!({}),
        ] {
            assert_eq!(ok(bad.clone()), Err(SpecError::TimeoutInvalid), "{bad}");
        }
        let err = ok(json!(90_000)).unwrap_err();
        assert_eq!(err, SpecError::TimeoutTooLong(86_400));
        assert!(
            err.to_string().contains("maximum of 86400 seconds"),
            "{err}"
        );
        let spec = parse(json!({"url": "https://h/o/r"})).unwrap();
        assert_eq!((spec.git_ref, spec.timeout_secs), (None, None));
    }

    #[test]
    fn local_path_without_insecure_is_not_a_url() {
        assert!(matches!(
            parse(json!({"url": "/srv/repo"})),
            Err(SpecError::UrlInvalid(_))
        ));
    }

    #[test]
    fn unbalanced_quotes_are_refused_with_a_message() {
        let err = parse(json!({"url": "https://h/o/r", "args": "--name 'open"})).unwrap_err();
        assert!(matches!(err, SpecError::ArgsUnbalanced(_)));
        assert!(err.to_string().contains("could not be split"));
    }

    #[test]
    fn insecure_policy_allows_http_file_and_local_paths() {
        let limits = SpecLimits::default();
        for url in [
            "http://127.0.0.1:9/o/r.git",
            "file:///srv/repo",
            "/srv/repo",
        ] {
            let spec = JobSpec::parse(&json!({ "url": url }), &dev(), &limits).unwrap();
            assert!(spec.url.expose().starts_with("http") || spec.url.expose().starts_with("file"));
        }
        let spec = JobSpec::parse(&json!({"url": "/srv/repo"}), &dev(), &limits).unwrap();
        assert_eq!(spec.url.expose(), "file:///srv/repo");
        for unclean in ["/..", "/srv/../etc", "/srv/./repo"] {
            assert!(
                matches!(
                    JobSpec::parse(&json!({ "url": unclean }), &dev(), &limits),
                    Err(SpecError::UrlInvalid(_))
                ),
                "{unclean}"
            );
        }
        // Even then, unknown schemes stay refused.
        assert!(JobSpec::parse(&json!({"url": "ftp://h/o/r"}), &dev(), &limits).is_err());
    }

    #[test]
    fn host_allow_list() {
        let policy = RepoPolicy {
            allow_insecure: false,
            allowed_hosts: vec!["github.com".into(), "*.corp.example".into()],
        };
        let limits = SpecLimits::default();
        let ok = |u: &str| JobSpec::parse(&json!({ "url": u }), &policy, &limits).is_ok();
        assert!(ok("https://github.com/o/r"));
        assert!(ok("https://GitHub.com/o/r"));
        assert!(ok("https://git.corp.example/o/r"));
        assert!(!ok("https://corp.example/o/r"));
        assert!(!ok("https://evilcorp.example/o/r"));
        assert!(!ok("https://169.254.169.254/latest/meta-data"));
        assert_eq!(
            JobSpec::parse(&json!({"url": "https://10.0.0.1/o/r"}), &policy, &limits),
            Err(SpecError::HostNotAllowed("10.0.0.1".into()))
        );
    }

    #[test]
    fn string_args_are_split_like_a_shell_and_never_rejoined() {
        let spec = parse(json!({
            "url": "https://h/o/r",
            "args": r#"--title "two words" --x 'it''s' a\ b $(rm -rf /) ;ls"#
        }))
        .unwrap();
        assert_eq!(
            spec.args,
            vec![
                "--title",
                "two words",
                "--x",
                "its",
                "a b",
                "$(rm",
                "-rf",
                "/)",
                ";ls"
            ]
        );
    }

    #[test]
    fn array_args_are_taken_as_is() {
        let spec =
            parse(json!({"url": "https://h/o/r", "args": ["a b", "'q'", 3, true, ""]})).unwrap();
        assert_eq!(spec.args, vec!["a b", "'q'", "3", "true", ""]);
    }

    #[test]
    fn config_string_verbatim_and_object_serialised() {
        let spec = parse(json!({"url": "https://h/o/r", "config": "x = 1\n"})).unwrap();
        assert_eq!(spec.config.as_deref(), Some("x = 1\n"));
        let spec = parse(json!({"url": "https://h/o/r", "config": {"n": 3, "name": "a"}})).unwrap();
        let round: Value = serde_json::from_str(spec.config.as_deref().unwrap()).unwrap();
        assert_eq!(round, json!({"n": 3, "name": "a"}));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = SpecLimits {
            max_url_bytes: 100,
            max_args: 2,
            max_args_bytes: 10,
            max_config_bytes: 8,
            max_timeout_secs: 60,
        };
        let p = |b: Value| JobSpec::parse(&b, &strict(), &limits);
        assert_eq!(
            p(json!({"url": "https://h/o/r", "args": "a b c"})),
            Err(SpecError::TooManyArgs(3, 2))
        );
        assert_eq!(
            p(json!({"url": "https://h/o/r", "args": ["0123456789x"]})),
            Err(SpecError::ArgsTooLarge(10))
        );
        assert_eq!(
            p(json!({"url": "https://h/o/r", "config": "123456789"})),
            Err(SpecError::ConfigTooLarge(8))
        );
        assert!(p(json!({"url": "https://h/o/r", "args": "a b", "config": "12345678"})).is_ok());
    }

    #[test]
    fn job_id_parses_only_uuids() {
        let id = JobId::new();
        assert_eq!(JobId::parse(&id.to_string()), Some(id));
        assert_eq!(JobId::parse("../etc"), None);
        assert_eq!(JobId::parse(""), None);
    }
}
