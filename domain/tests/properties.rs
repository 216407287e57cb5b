//! Property tests of the parsers at the edges of the domain: the job body,
//! output paths and log names, job ids and states, and the records of the
//! ignore and status topics. Each parser must never panic on any input,
//! refuse bad input with an error that says what is wrong, and give back
//! exactly what was written when fed its own output.

use chrono::{DateTime, TimeZone, Utc};
use domain::dispatch::{Claim, Directive, Heartbeat, Lease, Release, Requeue, Source, WorkerState};
use domain::layout::{log_key, output_key};
use domain::{
    CancelRequest, IgnoreRecord, JobId, JobSpec, JobState, LogStream, Masker, OutputPath,
    RepoPolicy, SpecError, SpecLimits, StatusEvent, StatusRecord,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use url::Url;

/// Enough cases to find the edge cases these strategies aim at while
/// keeping the whole file to a few seconds.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// The operator's default limits (`common::settings::JOB_POLICY`); the
/// library's own `Default` exists only for its unit tests.
fn limits() -> SpecLimits {
    SpecLimits {
        max_url_bytes: 2048,
        max_args: 256,
        max_args_bytes: 16 * 1024,
        max_config_bytes: 256 * 1024,
        max_timeout_secs: 86_400,
    }
}

fn strict() -> RepoPolicy {
    RepoPolicy::default()
}

fn dev() -> RepoPolicy {
    RepoPolicy {
        allow_insecure: true,
        allowed_hosts: vec![],
    }
}

const EXACT_HOST: &str = "git.example.com";
const WILDCARD_DOMAIN: &str = "corp.example";

fn allow_list() -> RepoPolicy {
    RepoPolicy {
        allow_insecure: false,
        allowed_hosts: vec![EXACT_HOST.into(), format!("*.{WILDCARD_DOMAIN}")],
    }
}

/// Any string, including NUL and other control characters.
fn text() -> impl Strategy<Value = String> {
    any::<String>()
}

/// Strings close to what the url parser and the policy look at, so that
/// more cases get past the first check than with `text()` alone.
fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        "(https?|file|ssh|ftp|git|HTTPS)://[a-zA-Z0-9@:./?#%\\[\\]*_ -]{0,40}",
        "https://([a-z]{1,8}(:[a-z]{0,8})?@)?[a-z0-9.-]{0,20}(:[0-9]{1,6})?(/[a-z.%]{0,8}){0,4}",
        "/[a-z./ %\\\\?#\t]{0,20}",
        " *https://git\\.example\\.com/[a-z]{1,5}/[a-z]{1,5}(\\.git)? *",
    ]
}

/// Any JSON value: scalars, and arrays and objects a few levels deep whose
/// keys are often the job's field names.
fn json_value() -> impl Strategy<Value = Value> {
    json_tree(any::<f64>().boxed())
}

/// Like `json_value`, with numbers of at most ten significant digits.
/// Without its `float_roundtrip` feature serde_json may read a 17-digit
/// number back one unit in the last place off (`1.944718282310659e269`
/// comes back as `1.9447182823106588e269`), so only short numbers survive
/// a trip through text exactly.
fn json_value_short_numbers() -> impl Strategy<Value = Value> {
    json_tree(
        (-999_999_999i64..=999_999_999, 0i32..6)
            .prop_map(|(m, e)| m as f64 / 10f64.powi(e))
            .boxed(),
    )
}

fn json_tree(float: BoxedStrategy<f64>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float.prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        text().prop_map(Value::String),
        url_like().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The job's fields, the fields not built yet, near misses and anything.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "url", "args", "config", "ref", "timeoutSeconds", "retries", "secrets", "arg", "URL",
            "kind",
        ])
        .prop_map(str::to_string),
        1 => text(),
    ]
}

/// A job body shaped like a submission: each field absent or any value,
/// with strings for `url` and `args` more often than not.
fn job_body() -> impl Strategy<Value = Value> {
    let url = prop_oneof![url_like().prop_map(Value::String), json_value()];
    let args = prop_oneof![
        text().prop_map(Value::String),
        "[a-z '\"\\\\$;\n-]{0,20}".prop_map(Value::String),
        prop::collection::vec(json_value(), 0..5).prop_map(Value::Array),
        json_value(),
    ];
    let config = prop_oneof![text().prop_map(Value::String), json_value()];
    (
        prop::option::of(url),
        prop::option::of(args),
        prop::option::of(config),
        prop::option::of((field_name(), json_value())),
    )
        .prop_map(|(url, args, config, extra)| {
            let mut body = serde_json::Map::new();
            if let Some(v) = url {
                body.insert("url".into(), v);
            }
            if let Some(v) = args {
                body.insert("args".into(), v);
            }
            if let Some(v) = config {
                body.insert("config".into(), v);
            }
            if let Some((k, v)) = extra {
                body.insert(k, v);
            }
            Value::Object(body)
        })
}

/// A host the url parser keeps as written: lowercase labels that start
/// with a letter (so the last one never reads as an IPv4 number).
fn host_label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,7}"
}

/// A repository path the url parser keeps as written (no `.`/`..`
/// segments, nothing it would percent-encode).
fn repo_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,10}", 1..4).prop_map(|s| s.join("/"))
}

/// A host allowed by `allow_list()`, and a clean https url on it.
fn allowed_url() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        Just(EXACT_HOST.to_string()),
        prop::collection::vec(host_label(), 1..3)
            .prop_map(|labels| format!("{}.{WILDCARD_DOMAIN}", labels.join("."))),
    ];
    (host, repo_path()).prop_map(|(host, path)| format!("https://{host}/{path}"))
}

/// An argument: any string but NUL, which the parser refuses on purpose.
fn arg() -> impl Strategy<Value = String> {
    text().prop_map(|s| s.replace('\0', ""))
}

/// A path segment the output path rules accept.
fn segment() -> impl Strategy<Value = String> {
    "[^/\\\\\\p{Cc}]{1,16}".prop_filter("`.` and `..` are refused", |s| s != "." && s != "..")
}

/// Strings over the few characters that matter to the output path rules,
/// so that the edge cases come up often.
fn path_like() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        "[a./\\\\\\x00\\n\\t é]{0,12}",
        prop::collection::vec(
            prop_oneof![Just(".."), Just("."), Just(""), Just("a")],
            1..6
        )
        .prop_map(|s| s.join("/")),
    ]
}

/// Timestamps as the wire keeps them: whole milliseconds, in the years
/// RFC 3339 can write (0000 to 9999; see the report on later years).
fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_167_219_200_000i64..=253_402_300_799_999)
        .prop_map(|ms| Utc.timestamp_millis_opt(ms).single().expect("in range"))
}

fn job_id() -> impl Strategy<Value = JobId> {
    any::<u128>().prop_map(|n| {
        JobId::parse(&uuid::Uuid::from_u128(n).to_string()).expect("a UUID is a job id")
    })
}

fn state() -> impl Strategy<Value = JobState> {
    prop::sample::select(JobState::ALL.to_vec())
}

fn source() -> impl Strategy<Value = Source> {
    (any::<i32>(), any::<i64>()).prop_map(|(partition, offset)| Source { partition, offset })
}

fn claim() -> impl Strategy<Value = Claim> {
    (job_id(), any::<u32>(), text(), source(), timestamp()).prop_map(
        |(job_id, attempt, worker_id, source, at)| Claim {
            job_id,
            attempt,
            worker_id,
            source,
            at,
        },
    )
}

fn release() -> impl Strategy<Value = Release> {
    (job_id(), any::<u32>(), text(), source(), timestamp()).prop_map(
        |(job_id, attempt, worker_id, source, at)| Release {
            job_id,
            attempt,
            worker_id,
            source,
            at,
        },
    )
}

fn requeue() -> impl Strategy<Value = Requeue> {
    (job_id(), any::<u32>(), source(), text(), timestamp()).prop_map(
        |(job_id, attempt, source, reason, at)| Requeue {
            job_id,
            attempt,
            source,
            reason,
            at,
        },
    )
}

fn cancel() -> impl Strategy<Value = CancelRequest> {
    (job_id(), text(), timestamp()).prop_map(|(job_id, owner, requested_at)| CancelRequest {
        job_id,
        owner,
        requested_at,
    })
}

fn ignore_record() -> impl Strategy<Value = IgnoreRecord> {
    prop_oneof![
        cancel().prop_map(IgnoreRecord::Cancel),
        claim().prop_map(|c| IgnoreRecord::Directive(Directive::Claim(c))),
        release().prop_map(|r| IgnoreRecord::Directive(Directive::Release(r))),
        requeue().prop_map(|q| IgnoreRecord::Directive(Directive::Requeue(q))),
    ]
}

/// The bytes a writer puts on the ignore topic for `record`.
fn ignore_wire(record: &IgnoreRecord) -> Vec<u8> {
    match record {
        IgnoreRecord::Cancel(c) => serde_json::to_vec(c),
        IgnoreRecord::Directive(d) => serde_json::to_vec(d),
    }
    .expect("records serialise")
}

/// Elapsed seconds as the worker reports them: not negative, rounded to
/// the millisecond (`worker/src/lifecycle.rs`), which is also what keeps
/// them exact through serde_json's text.
fn elapsed() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0.0f64..1e9).prop_map(|s| (s * 1000.0).round() / 1000.0),
        Just(0.0),
    ]
}

fn status_event() -> impl Strategy<Value = StatusEvent> {
    (
        (
            job_id(),
            text(),
            state(),
            timestamp(),
            prop::option::of("[0-9a-f]{40}"),
        ),
        (
            prop::option::of(text()),
            any::<u32>(),
            prop::option::of(any::<i32>()),
            prop::option::of(elapsed()),
            prop::option::of(prop::collection::vec(text(), 0..4)),
            prop::option::of(text()),
        ),
    )
        .prop_map(
            |(
                (job_id, owner, status, at, commit),
                (worker_id, attempt, exit_code, elapsed_seconds, output_files, error),
            )| StatusEvent {
                job_id,
                owner,
                status,
                at,
                worker_id,
                attempt,
                exit_code,
                elapsed_seconds,
                output_files,
                error,
                commit,
            },
        )
}

fn lease() -> impl Strategy<Value = Lease> {
    (job_id(), any::<u32>(), source(), timestamp()).prop_map(|(job_id, attempt, source, since)| {
        Lease {
            job_id,
            attempt,
            source,
            since,
        }
    })
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (
        (text(), timestamp(), any::<u64>()),
        prop::sample::select(vec![WorkerState::Running, WorkerState::Draining]),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
        prop::collection::vec(any::<i32>(), 0..6),
        prop::collection::vec(lease(), 0..4),
    )
        .prop_map(
            |(
                (worker_id, at, interval_ms),
                state,
                (slots, busy, held, queued),
                partitions,
                leases,
            )| {
                Heartbeat {
                    kind: Heartbeat::KIND.into(),
                    worker_id,
                    at,
                    interval_ms,
                    state,
                    slots,
                    busy,
                    held,
                    queued,
                    partitions,
                    leases,
                }
            },
        )
}

/// Bytes near valid JSON: a valid record's bytes with one byte replaced,
/// one removed, or the tail cut off.
fn damaged(bytes: Vec<u8>, at: Index, with: u8, how: u8) -> Vec<u8> {
    let mut bytes = bytes;
    if bytes.is_empty() {
        return bytes;
    }
    let i = at.index(bytes.len());
    match how % 3 {
        0 => bytes[i] = with,
        1 => {
            bytes.remove(i);
        }
        _ => bytes.truncate(i),
    }
    bytes
}

// ---------------------------------------------------------------------------
// Checks shared by several properties
// ---------------------------------------------------------------------------

/// A refusal must tell the user which part of the body to fix: every
/// message names a field (or says the body is not an object).
fn assert_clear(err: &SpecError) {
    let msg = err.to_string();
    assert!(!msg.trim().is_empty(), "empty message for {err:?}");
    assert!(
        [
            "`url`",
            "`args`",
            "`config`",
            "`ref`",
            "`timeoutSeconds`",
            "`secrets`",
            "JSON object",
            "unknown field",
            "job contract"
        ]
        .iter()
        .any(|hint| msg.contains(hint)),
        "message does not say what to fix: {msg:?}"
    );
}

/// What every accepted spec guarantees to the rest of the system.
fn assert_accepted_spec_is_sound(spec: &JobSpec, policy: &RepoPolicy, limits: &SpecLimits) {
    let exposed = Url::parse(spec.url.expose()).expect("the clone url is a url");
    let scheme = exposed.scheme();
    if policy.allow_insecure {
        assert!(matches!(scheme, "https" | "http" | "file"), "{scheme}");
    } else {
        assert_eq!(scheme, "https");
    }
    assert_eq!(exposed.query(), None);
    assert_eq!(exposed.fragment(), None);
    assert!(!exposed.path().trim_matches('/').is_empty());
    // What was checked is what the worker clones: the url is canonical, so
    // parsing it again (as git and the url crate do) changes nothing.
    assert_eq!(exposed.as_str(), spec.url.expose());

    // The redacted form keeps no credentials, only the `***` marker.
    let redacted = Url::parse(spec.url.redacted()).expect("the redacted url is a url");
    assert_eq!(redacted.password(), None, "{}", spec.url.redacted());
    assert!(
        matches!(redacted.username(), "" | "***"),
        "{}",
        spec.url.redacted()
    );
    if let Some(password) = exposed.password() {
        assert!(!format!("{spec:?}").contains(&format!(":{password}@")));
    }

    assert!(spec.args.len() <= limits.max_args);
    assert!(spec.args.iter().map(String::len).sum::<usize>() <= limits.max_args_bytes);
    assert!(spec.args.iter().all(|a| !a.contains('\0')));
    if let Some(config) = &spec.config {
        assert!(config.len() <= limits.max_config_bytes);
    }
}

fn check_spec(body: &Value, policy: &RepoPolicy, limits: &SpecLimits) {
    match JobSpec::parse(body, policy, limits) {
        Ok(spec) => assert_accepted_spec_is_sound(&spec, policy, limits),
        Err(err) => assert_clear(&err),
    }
}

// ---------------------------------------------------------------------------
// The job body
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// No JSON value makes the parser panic, under any policy; a refusal
    /// says what to fix and an acceptance keeps every promise.
    #[test]
    fn spec_parse_is_total_on_any_json(body in json_value()) {
        for policy in [strict(), dev(), allow_list()] {
            check_spec(&body, &policy, &limits());
        }
    }

    /// The same for bodies shaped like submissions, which get further in.
    #[test]
    fn spec_parse_is_total_on_submission_shapes(body in job_body()) {
        for policy in [strict(), dev(), allow_list()] {
            check_spec(&body, &policy, &limits());
        }
    }

    /// Any text sent as the body either is not JSON (the frontend's
    /// concern) or goes through the same checks.
    #[test]
    fn spec_parse_is_total_on_any_text(raw in prop_oneof![
        text(),
        "\\{\"url\": *\"[a-z:/.]{0,30}\"(, *\"(args|config|ref)\": *(\"[^\"]{0,10}\"|\\[\\]|\\{\\}|1))?\\}",
    ]) {
        if let Ok(body) = serde_json::from_str::<Value>(&raw) {
            check_spec(&body, &dev(), &limits());
        }
    }

    /// Any url string is accepted or refused with a `url` error, under
    /// every policy.
    #[test]
    fn any_url_string_is_accepted_or_refused_clearly(url in url_like()) {
        for policy in [strict(), dev(), allow_list()] {
            match JobSpec::parse(&json!({ "url": url }), &policy, &limits()) {
                Ok(spec) => assert_accepted_spec_is_sound(&spec, &policy, &limits()),
                Err(err) => {
                    assert_clear(&err);
                    prop_assert!(err.to_string().contains("`url`"), "{err}");
                }
            }
        }
    }

    /// Any args string either splits into words or is refused as
    /// unbalanced (or over the limits), with an `args` message.
    #[test]
    fn any_args_string_splits_or_is_refused_clearly(line in prop_oneof![
        text(),
        "[a-z '\"\\\\$;\n-]{0,30}",
    ]) {
        let body = json!({"url": "https://git.example.com/o/r", "args": line});
        match JobSpec::parse(&body, &strict(), &limits()) {
            Ok(spec) => prop_assert_eq!(spec.args, shell_words::split(&line).unwrap()),
            Err(err) => {
                assert_clear(&err);
                prop_assert!(err.to_string().contains("`args`"), "{err}");
            }
        }
    }

    /// A well-formed job on an allowed host is accepted, and nothing in it
    /// is changed: the url, each argument of an array and the config text.
    #[test]
    fn valid_spec_is_accepted_unchanged(
        url in allowed_url(),
        args in prop::collection::vec(arg(), 0..8),
        config in prop::option::of(text()),
    ) {
        let mut body = json!({ "url": url, "args": args });
        if let Some(config) = &config {
            body["config"] = json!(config);
        }
        let spec = JobSpec::parse(&body, &allow_list(), &limits())
            .map_err(|e| TestCaseError::fail(format!("{e} for {body}")))?;
        prop_assert_eq!(spec.url.expose(), url.as_str());
        prop_assert_eq!(spec.url.redacted(), url.as_str());
        prop_assert_eq!(spec.args, args);
        prop_assert_eq!(spec.config, config);
    }

    /// A config object becomes its JSON text, which reads back as the same
    /// object.
    #[test]
    fn config_object_round_trips_through_its_text(
        config in prop::collection::btree_map(text(), json_value_short_numbers(), 0..5),
    ) {
        let config = Value::Object(config.into_iter().collect());
        let body = json!({"url": "https://git.example.com/o/r", "config": config});
        let spec = JobSpec::parse(&body, &strict(), &limits()).unwrap();
        let back: Value = serde_json::from_str(spec.config.as_deref().unwrap()).unwrap();
        prop_assert_eq!(back, config);
    }

    /// Words quoted the way a shell would are split back to exactly those
    /// words: quotes, spaces, `$`, newlines and empty words included.
    #[test]
    fn shell_quoted_args_split_back_to_the_same_words(
        words in prop::collection::vec(prop_oneof![arg(), "[a-z '\"\\\\$;\n-]{0,8}"], 0..8),
    ) {
        let line = shell_words::join(&words);
        let body = json!({"url": "https://git.example.com/o/r", "args": line});
        let spec = JobSpec::parse(&body, &strict(), &limits())
            .map_err(|e| TestCaseError::fail(format!("{e} for {line:?}")))?;
        prop_assert_eq!(spec.args, words);
    }

    /// An argument holding NUL is refused by name: it could not reach the
    /// script as one argument.
    #[test]
    fn an_arg_with_nul_is_refused(
        args in prop::collection::vec(arg(), 0..4),
        at in any::<Index>(),
        before in arg(),
        after in arg(),
    ) {
        let mut args = args;
        let bad = format!("{before}\0{after}");
        let i = at.index(args.len() + 1);
        args.insert(i, bad);
        let body = json!({"url": "https://git.example.com/o/r", "args": args});
        prop_assert_eq!(
            JobSpec::parse(&body, &strict(), &limits()),
            Err(SpecError::ArgsWithNul)
        );
    }

    /// The limits hold exactly: a job is refused iff it goes over one, and
    /// the message gives the limit.
    #[test]
    fn limits_are_exact(
        max_args in 0usize..6,
        max_args_bytes in 0usize..24,
        max_config_bytes in 0usize..24,
        max_url_bytes in 20usize..60,
        args in prop::collection::vec("[a-zé]{0,5}", 0..8),
        config in "[a-zé]{0,12}",
        path in "[a-z]{1,40}",
    ) {
        let limits = SpecLimits { max_url_bytes, max_args, max_args_bytes, max_config_bytes, max_timeout_secs: 60 };
        let url = format!("https://git.example.com/{path}");
        let body = json!({"url": url, "args": args, "config": config});
        let args_bytes: usize = args.iter().map(String::len).sum();
        let expected = if url.len() > max_url_bytes {
            Err(SpecError::UrlTooLong(max_url_bytes))
        } else if args.len() > max_args {
            Err(SpecError::TooManyArgs(args.len(), max_args))
        } else if args_bytes > max_args_bytes {
            Err(SpecError::ArgsTooLarge(max_args_bytes))
        } else if config.len() > max_config_bytes {
            Err(SpecError::ConfigTooLarge(max_config_bytes))
        } else {
            Ok(())
        };
        let got = JobSpec::parse(&body, &strict(), &limits);
        match (&expected, &got) {
            (Ok(()), Ok(spec)) => {
                prop_assert_eq!(&spec.args, &args);
                prop_assert_eq!(spec.config.as_deref(), Some(config.as_str()));
            }
            (Err(want), Err(err)) => {
                prop_assert_eq!(want, err);
                let limit = match err {
                    SpecError::UrlTooLong(n)
                    | SpecError::TooManyArgs(_, n)
                    | SpecError::ArgsTooLarge(n)
                    | SpecError::ConfigTooLarge(n) => *n,
                    other => unreachable!("{other:?}"),
                };
                prop_assert!(err.to_string().contains(&limit.to_string()), "{err}");
            }
            _ => prop_assert!(false, "expected {:?}, got {:?}", expected, got),
        }
    }

    /// Credentials in the url reach the worker intact and nothing else:
    /// the redacted form and `Debug` show `***` in their place.
    #[test]
    fn credentials_are_kept_for_the_clone_and_redacted_elsewhere(
        user in "[A-Za-z0-9_]{1,12}",
        token in "[A-Za-z0-9_]{8,20}",
        with_user in any::<bool>(),
        url in allowed_url(),
    ) {
        let token = format!("tok{token}");
        let rest = url.strip_prefix("https://").unwrap();
        let userinfo = if with_user { format!("{user}:{token}") } else { token.clone() };
        let full = format!("https://{userinfo}@{rest}");
        let spec = JobSpec::parse(&json!({"url": full}), &allow_list(), &limits()).unwrap();
        prop_assert_eq!(spec.url.expose(), full.as_str());
        let redacted = format!("https://***@{rest}");
        prop_assert_eq!(spec.url.redacted(), redacted.as_str());
        let shown = format!("{spec:?}");
        prop_assert!(!shown.contains(&token), "{}", shown);
    }

    /// Only hosts on the allow list get through; a host that merely ends
    /// like an allowed domain does not.
    #[test]
    fn hosts_off_the_allow_list_are_refused(
        label in host_label(),
        path in repo_path(),
    ) {
        for host in [
            format!("{label}{WILDCARD_DOMAIN}"),
            format!("{label}.{EXACT_HOST}.{label}"),
            format!("{label}-{EXACT_HOST}"),
        ] {
            let url = format!("https://{host}/{path}");
            let got = JobSpec::parse(&json!({"url": url}), &allow_list(), &limits());
            prop_assert_eq!(got, Err(SpecError::HostNotAllowed(host.clone())));
        }
    }
}

// ---------------------------------------------------------------------------
// Output paths and log names
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Whatever the input, an accepted output path is relative, has only
    /// real segments and no character that could escape or confuse a key.
    #[test]
    fn accepted_output_paths_cannot_escape(raw in path_like()) {
        let Some(path) = OutputPath::parse(&raw) else { return Ok(()) };
        let s = path.as_str();
        prop_assert_eq!(s, raw.as_str());
        prop_assert!(!s.is_empty() && s.len() <= OutputPath::MAX_LEN);
        prop_assert!(!s.starts_with('/') && !s.ends_with('/'));
        prop_assert!(!s.chars().any(|c| c == '\\' || c.is_control()), "{s:?}");
        for seg in s.split('/') {
            prop_assert!(!seg.is_empty() && seg != "." && seg != "..", "{s:?}");
        }
        let name = path.file_name();
        prop_assert!(!name.is_empty() && !name.contains('/'));
        prop_assert!(s.ends_with(name));
    }

    /// Every path built from valid segments is accepted as it is, and its
    /// storage key is the job's output prefix followed by the path.
    #[test]
    fn paths_of_valid_segments_are_accepted(
        segments in prop::collection::vec(segment(), 1..8),
        job in job_id(),
    ) {
        let raw = segments.join("/");
        let path = OutputPath::parse(&raw)
            .ok_or_else(|| TestCaseError::fail(format!("refused {raw:?}")))?;
        prop_assert_eq!(path.as_str(), raw.as_str());
        prop_assert_eq!(path.file_name(), segments.last().unwrap().as_str());
        prop_assert_eq!(OutputPath::parse(path.as_str()), Some(path.clone()));
        prop_assert_eq!(output_key(job, &path), format!("jobs/{job}/output/{raw}"));
    }

    /// One bad segment anywhere in an otherwise valid path gets it refused.
    #[test]
    fn one_bad_segment_refuses_the_path(
        segments in prop::collection::vec(segment(), 0..6),
        at in any::<Index>(),
        bad in prop::sample::select(vec!["", ".", ".."]),
    ) {
        let mut segments = segments;
        segments.insert(at.index(segments.len() + 1), bad.to_string());
        let raw = segments.join("/");
        prop_assert_eq!(OutputPath::parse(&raw), None, "{:?}", raw);
        prop_assert_eq!(OutputPath::parse(&format!("/{raw}")), None);
    }

    /// A backslash or a control character anywhere gets a path refused.
    #[test]
    fn a_bad_character_refuses_the_path(
        segments in prop::collection::vec(segment(), 1..6),
        at in any::<Index>(),
        bad in prop_oneof![Just('\\'), "\\p{Cc}".prop_map(|s| s.chars().next().unwrap())],
    ) {
        let raw = segments.join("/");
        let mut chars: Vec<char> = raw.chars().collect();
        chars.insert(at.index(chars.len() + 1), bad);
        let raw: String = chars.into_iter().collect();
        prop_assert_eq!(OutputPath::parse(&raw), None, "{:?}", raw);
    }

    /// The length limit counts bytes and is exact.
    #[test]
    fn the_length_limit_is_exact(n in 1usize..OutputPath::MAX_LEN / 2 + 64, wide in any::<bool>()) {
        let (raw, len) = if wide { ("é".repeat(n), 2 * n) } else { ("a".repeat(2 * n), 2 * n) };
        prop_assert_eq!(OutputPath::parse(&raw).is_some(), len <= OutputPath::MAX_LEN);
    }

    /// Only the four log names are log streams, and a stream's file name
    /// parses back to it.
    #[test]
    fn log_stream_names(raw in prop_oneof![text(), "(std(out|err))(\\.log)?.?"]) {
        let expected = match raw.as_str() {
            "stdout" | "stdout.log" => Some(LogStream::Stdout),
            "stderr" | "stderr.log" => Some(LogStream::Stderr),
            _ => None,
        };
        prop_assert_eq!(LogStream::parse(&raw), expected);
    }
}

#[test]
fn log_stream_file_names_round_trip() {
    let job = JobId::new();
    for stream in [LogStream::Stdout, LogStream::Stderr] {
        assert_eq!(LogStream::parse(stream.file_name()), Some(stream));
        assert_eq!(
            log_key(job, stream),
            format!("jobs/{job}/logs/{}", stream.file_name())
        );
    }
}

// ---------------------------------------------------------------------------
// Job ids and states
// ---------------------------------------------------------------------------

#[test]
fn job_state_names_round_trip() {
    for state in JobState::ALL {
        assert_eq!(JobState::parse(state.as_str()), Some(state));
        assert_eq!(JobState::parse(&state.to_string()), Some(state));
        let wire = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<JobState>(&wire).unwrap(), state);
        assert_eq!(wire, format!("\"{state}\""));
    }
}

proptest! {
    #![proptest_config(config())]

    /// A state parses only from its exact lowercase name.
    #[test]
    fn job_state_parses_only_its_names(raw in prop_oneof![
        text(),
        "(queued|running|succeeded|failed|cancelled|Queued|RUNNING| failed)",
    ]) {
        match JobState::parse(&raw) {
            Some(state) => prop_assert_eq!(state.as_str(), raw.as_str()),
            None => prop_assert!(JobState::ALL.iter().all(|s| s.as_str() != raw)),
        }
    }

    /// A job id reads back from its text and its JSON; any other text
    /// either is some UUID spelling or is not a job.
    #[test]
    fn job_id_round_trips(id in job_id(), raw in text()) {
        prop_assert_eq!(JobId::parse(&id.to_string()), Some(id));
        let wire = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(wire.clone(), format!("\"{id}\""));
        prop_assert_eq!(serde_json::from_str::<JobId>(&wire).unwrap(), id);
        if let Some(other) = JobId::parse(&raw) {
            prop_assert_eq!(JobId::parse(&other.to_string()), Some(other));
        }
    }
}

// ---------------------------------------------------------------------------
// Topic records
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// No bytes make the record parsers panic, and a refusal has a message.
    #[test]
    fn record_parsers_are_total_on_any_bytes(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]) {
        if let Err(e) = IgnoreRecord::parse(&bytes) {
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = StatusRecord::parse(&bytes) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Damaged copies of real records do not make them panic either.
    #[test]
    fn record_parsers_are_total_on_damaged_records(
        ignore in ignore_record(),
        event in status_event(),
        hb in heartbeat(),
        at in any::<Index>(),
        with in any::<u8>(),
        how in any::<u8>(),
    ) {
        for bytes in [
            ignore_wire(&ignore),
            serde_json::to_vec(&event).unwrap(),
            serde_json::to_vec(&hb).unwrap(),
        ] {
            let bytes = damaged(bytes, at, with, how);
            let _ = IgnoreRecord::parse(&bytes);
            let _ = StatusRecord::parse(&bytes);
        }
    }

    /// Every ignore-topic record reads back as the record written.
    #[test]
    fn ignore_records_round_trip(record in ignore_record()) {
        let bytes = ignore_wire(&record);
        prop_assert_eq!(IgnoreRecord::parse(&bytes).unwrap(), record);
    }

    /// Every status event reads back as the event written.
    #[test]
    fn status_events_round_trip(event in status_event()) {
        let bytes = serde_json::to_vec(&event).unwrap();
        prop_assert_eq!(StatusRecord::parse(&bytes).unwrap(), StatusRecord::Event(event));
    }

    /// Every heartbeat reads back as the heartbeat written.
    #[test]
    fn heartbeats_round_trip(hb in heartbeat()) {
        let bytes = serde_json::to_vec(&hb).unwrap();
        prop_assert_eq!(StatusRecord::parse(&bytes).unwrap(), StatusRecord::Heartbeat(hb));
    }

    /// A status record of a kind this version does not know is skipped
    /// whatever else it holds, so readers can be upgraded after writers.
    #[test]
    fn unknown_status_kinds_are_other(
        kind in text().prop_filter("not a heartbeat", |k| k != Heartbeat::KIND),
        rest in prop::collection::btree_map(text(), json_value(), 0..4),
    ) {
        let mut record: serde_json::Map<String, Value> = rest.into_iter().collect();
        record.insert("kind".into(), json!(kind));
        let bytes = serde_json::to_vec(&record).unwrap();
        prop_assert_eq!(StatusRecord::parse(&bytes).unwrap(), StatusRecord::Other(kind));
    }
}

proptest! {
    #![proptest_config(config())]

    /// However the job's output is cut into reads, the log holds the same
    /// bytes, and no secret is left in them (values without `*`, so that
    /// a mask next to other text cannot spell one).
    #[test]
    fn masking_does_not_depend_on_how_the_stream_is_cut(
        values in prop::collection::vec("[a-c]{4,8}", 1..4),
        text in "[a-d \n]{0,200}",
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let whole = {
            let mut m = Masker::new(values.iter().map(String::as_str));
            let mut out = m.feed(text.as_bytes()).into_owned();
            out.extend(m.finish());
            out
        };
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(text.len() + 1)).collect();
        at.sort_unstable();
        let mut m = Masker::new(values.iter().map(String::as_str));
        let mut pieces = Vec::new();
        let mut from = 0;
        for to in at.into_iter().chain([text.len()]) {
            pieces.extend_from_slice(&m.feed(&text.as_bytes()[from..to]));
            from = to;
        }
        pieces.extend(m.finish());
        prop_assert_eq!(&pieces, &whole);
        let shown = String::from_utf8(whole).unwrap();
        for v in &values {
            prop_assert!(!shown.contains(v.as_str()), "{:?} left in {:?}", v, shown);
        }
    }
}
