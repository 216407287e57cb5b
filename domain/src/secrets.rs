//! A job's `secrets` (`docs/contract.md` §2.3): name → value pairs the
//! script gets as environment variables and nobody reads back. This module
//! parses them at the edge and masks their values in a stream of log bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

use crate::{Secret, SpecError};

/// The most secrets one job may carry.
pub const MAX_SECRETS: usize = 32;
/// The longest value, in bytes.
pub const MAX_SECRET_BYTES: usize = 4096;
/// The shortest value: masking a value of one or two characters would blot
/// out ordinary text in the logs, so such a value is refused instead.
pub const MIN_SECRET_BYTES: usize = 4;
/// The longest name.
pub const MAX_SECRET_NAME: usize = 128;
/// What a secret's value becomes in the job's logs.
pub const MASK: &[u8] = b"***";

/// Names the worker sets itself in every job's environment
/// (`docs/worker.md`, *The job's environment*); a secret may not replace
/// them.
pub const RESERVED_NAMES: [&str; 5] = ["PATH", "HOME", "TMPDIR", "LANG", "INIT_CWD"];
/// Prefixes of the names the worker and npm set.
pub const RESERVED_PREFIXES: [&str; 2] = ["LZ_", "npm_"];

/// The rule for a name as a regular expression, for the API document.
pub fn name_pattern() -> String {
    format!(
        "^(?!({})$|{})[A-Za-z_][A-Za-z0-9_]{{0,{}}}$",
        RESERVED_NAMES.join("|"),
        RESERVED_PREFIXES.join("|"),
        MAX_SECRET_NAME - 1
    )
}

/// Whether the worker owns the environment variable `name`.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_NAMES.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A job's secrets, by name (sorted, so the environment is the same on
/// every attempt).
pub type JobSecrets = BTreeMap<String, Secret<String>>;

/// Parses the body's `secrets`: an object of names to string values.
pub fn parse(raw: Option<&Value>) -> Result<JobSecrets, SpecError> {
    let object = match raw {
        None | Some(Value::Null) => return Ok(JobSecrets::new()),
        Some(Value::Object(object)) => object,
        Some(_) => return Err(SpecError::SecretsWrongType),
    };
    if object.len() > MAX_SECRETS {
        return Err(SpecError::TooManySecrets(object.len(), MAX_SECRETS));
    }
    let mut secrets = JobSecrets::new();
    for (name, value) in object {
        check_name(name)?;
        let Value::String(value) = value else {
            return Err(SpecError::SecretInvalid(name.clone(), "must be a string"));
        };
        if value.len() < MIN_SECRET_BYTES {
            return Err(SpecError::SecretInvalid(
                name.clone(),
                "is shorter than 4 bytes, too short to be masked in the logs",
            ));
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(SpecError::SecretInvalid(
                name.clone(),
                "is longer than 4096 bytes",
            ));
        }
        if value.contains('\0') {
            return Err(SpecError::SecretInvalid(
                name.clone(),
                "must not contain NUL characters",
            ));
        }
        secrets.insert(name.clone(), Secret::new(value.clone()));
    }
    Ok(secrets)
}

fn check_name(name: &str) -> Result<(), SpecError> {
    let bad = |why| Err(SpecError::SecretNameInvalid(name.to_string(), why));
    let mut chars = name.chars();
    match chars.next() {
        None => return bad("is empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return bad("must begin with a letter or _")
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return bad("may hold only letters, digits and _");
    }
    if name.len() > MAX_SECRET_NAME {
        return bad("is longer than 128 characters");
    }
    if is_reserved(name) {
        return bad("is set by the worker (PATH, HOME, TMPDIR, LANG, INIT_CWD, LZ_*, npm_*)");
    }
    Ok(())
}

/// Replaces every secret value in a stream of bytes by `***`, however the
/// stream is cut into chunks: it holds back the last `longest - 1` bytes of
/// each chunk, which may be the start of a value that the next chunk ends.
pub struct Masker {
    finder: Option<AhoCorasick>,
    longest: usize,
    held: Vec<u8>,
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let values: Vec<&str> = values.into_iter().filter(|v| !v.is_empty()).collect();
        let longest = values.iter().map(|v| v.len()).max().unwrap_or(0);
        // Leftmost-longest: of two values where one begins the other, the
        // whole longer one is masked.
        let finder = (!values.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&values)
                .expect("a handful of short literals always builds")
        });
        Self {
            finder,
            longest,
            held: Vec::new(),
        }
    }

    /// The masked bytes of `chunk` that are final; some may be held back.
    /// A job without secrets (most of them) gets its chunk back uncopied.
    pub fn feed<'c>(&mut self, chunk: &'c [u8]) -> Cow<'c, [u8]> {
        if self.finder.is_none() {
            return Cow::Borrowed(chunk);
        }
        self.held.extend_from_slice(chunk);
        let cut = self.held.len().saturating_sub(self.longest - 1);
        Cow::Owned(self.emit(cut))
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.finder.is_none() {
            return Vec::new();
        }
        self.emit(self.held.len())
    }

    /// Emits `held` up to `cut`, masking every value that begins before it
    /// (each such value lies wholly inside `held`, as `cut` leaves room for
    /// the longest), and keeps the rest.
    fn emit(&mut self, cut: usize) -> Vec<u8> {
        let finder = self.finder.as_ref().expect("checked by the callers");
        let mut out = Vec::with_capacity(cut);
        let mut at = 0;
        for found in finder.find_iter(&self.held) {
            if found.start() >= cut {
                break;
            }
            out.extend_from_slice(&self.held[at..found.start()]);
            out.extend_from_slice(MASK);
            at = found.end();
        }
        let end = at.max(cut);
        out.extend_from_slice(&self.held[at..end]);
        self.held.drain(..end);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_parse_or_are_refused_with_a_reason() {
        let ok = parse(Some(&json!({"TOKEN": "abcd", "_x1": "long enough"}))).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok["TOKEN"].expose(), "abcd");
        assert!(parse(None).unwrap().is_empty());
        assert!(parse(Some(&Value::Null)).unwrap().is_empty());
        assert!(parse(Some(&json!({}))).unwrap().is_empty());

        let long = "x".repeat(MAX_SECRET_BYTES + 1);
        let many: serde_json::Map<String, Value> = (0..=MAX_SECRETS)
            .map(|i| (format!("S{i}"), json!("value")))
            .collect();
        let table: Vec<(Value, &str)> = vec![
            (json!(["a"]), "`secrets` must be an object"),
            (json!("TOKEN=x"), "`secrets` must be an object"),
            (json!({"": "abcd"}), "is empty"),
            (json!({"1X": "abcd"}), "must begin with a letter or _"),
            (json!({"A-B": "abcd"}), "only letters, digits and _"),
            (json!({"Ä": "abcd"}), "must begin with a letter or _"),
            (json!({"PATH": "abcd"}), "is set by the worker"),
            (json!({"LZ_JOB_ID": "abcd"}), "is set by the worker"),
            (json!({"npm_config_x": "abcd"}), "is set by the worker"),
            (json!({"T": 1234}), "must be a string"),
            (json!({"T": null}), "must be a string"),
            (json!({"T": "abc"}), "shorter than 4 bytes"),
            (json!({"T": long}), "longer than 4096 bytes"),
            (json!({"T": "ab\u{0}cd"}), "NUL"),
            (Value::Object(many), "at most 32"),
        ];
        for (raw, want) in table {
            let err = parse(Some(&raw)).expect_err(&raw.to_string()).to_string();
            assert!(err.contains(want), "{raw}: {err}");
            assert!(!err.contains("abcd"), "a refusal shows no value: {err}");
        }
        let name = "N".repeat(MAX_SECRET_NAME + 1);
        let err = parse(Some(&json!({ name: "abcd" })))
            .unwrap_err()
            .to_string();
        assert!(err.contains("longer than 128"), "{err}");
    }

    fn masked(values: &[&str], chunks: &[&str]) -> String {
        let mut m = Masker::new(values.iter().copied());
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&m.feed(c.as_bytes()));
        }
        out.extend(m.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_masked_however_the_stream_is_cut() {
        let table: &[(&[&str], &[&str], &str)] = &[
            (&["s3cr3t"], &["token=s3cr3t\n"], "token=***\n"),
            (&["s3cr3t"], &["tok", "en=s3", "cr3t\n"], "token=***\n"),
            (&["s3cr3t"], &["s", "3", "c", "r", "3", "t"], "***"),
            (&["s3cr3t"], &["s3cr3", "x s3cr3t"], "s3cr3x ***"),
            (&["s3cr3t"], &["s3cr3ts3cr3t"], "******"),
            (&["abcd", "abcdefgh"], &["abcdefgh abcd"], "*** ***"),
            (&["abcd", "abcdefgh"], &["abcdef", "gh"], "***"),
            (&["abcd", "abcdefgh"], &["abcdef"], "***ef"),
            (&["abcd"], &["ab"], "ab"),
            (&["abcd"], &[""], ""),
            (&[], &["nothing to hide"], "nothing to hide"),
            (&["ünï"], &["x ü", "nï y"], "x *** y"),
        ];
        for (values, chunks, want) in table {
            assert_eq!(masked(values, chunks), *want, "{values:?} {chunks:?}");
        }
    }

    #[test]
    fn the_masker_holds_back_no_more_than_a_value_could_need() {
        let mut m = Masker::new(["abcdef"]);
        assert_eq!(&*m.feed(b"0123456789"), b"01234");
        assert_eq!(&*m.feed(b""), b"");
        assert_eq!(m.finish(), b"56789");
    }

    #[test]
    fn every_name_the_worker_sets_is_reserved() {
        for name in [
            "PATH",
            "HOME",
            "TMPDIR",
            "LANG",
            "INIT_CWD",
            "LZ_ATTEMPT",
            "npm_package_name",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        for name in ["TOKEN", "LZ", "NPM_TOKEN", "path"] {
            assert!(!is_reserved(name), "{name}");
        }
    }
}
