//! Cloning the job's repository with libgit2.
//!
//! Credentials never reach libgit2 inside the URL: they are taken out and
//! handed over through the credentials callback, so they cannot appear in
//! libgit2's error messages or in the clone's `.git/config` (which the job
//! can read). Error messages are also scrubbed of them, in case.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{RepoPolicy, RepoUrl};
use git2::build::RepoBuilder;
use git2::{Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, RemoteCallbacks};
use url::Url;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloneError {
    /// Already phrased for the user (names the redacted url, never the
    /// credentials).
    #[error("{0}")]
    Failed(String),
    /// Stopped on request (cancel, timeout or shutdown).
    #[error("the clone was stopped")]
    Aborted,
}

/// Sets libgit2's network timeouts once per process, so a server that stops
/// answering fails the clone instead of hanging the worker.
#[allow(unsafe_code)]
pub fn init_timeouts() {
    // SAFETY: these only store an integer in libgit2's global options; they
    // are called at startup, before any clone runs.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(10_000);
        let _ = git2::opts::set_server_timeout_in_milliseconds(60_000);
    }
}

/// Clones `raw_url` into `dest` (which must not exist). Blocking: run it on
/// a blocking thread. `abort` is checked during the transfer.
pub fn clone(
    raw_url: &str,
    policy: &RepoPolicy,
    dest: &Path,
    abort: &AtomicBool,
) -> Result<(), CloneError> {
    let repo_url =
        RepoUrl::parse(raw_url, policy).map_err(|e| CloneError::Failed(e.to_string()))?;
    let shown = repo_url.redacted().to_string();
    let mut url = Url::parse(repo_url.expose())
        .map_err(|e| CloneError::Failed(format!("`{shown}` is not a valid url: {e}")))?;
    let user = decode(url.username());
    let password = url.password().map(decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let secrets: Vec<String> = [Some(user.clone()), password.clone()]
        .into_iter()
        .flatten()
        .filter(|s| s.len() >= 3)
        .collect();

    let mut tried_credentials = false;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_url, _user_from_url, allowed| {
        // libgit2 calls again after each rejection: one try is enough.
        if tried_credentials {
            return Err(git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Http,
                "the credentials were rejected",
            ));
        }
        tried_credentials = true;
        if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return Err(git2::Error::from_str("unsupported authentication"));
        }
        match (&user, &password) {
            (u, Some(p)) => Cred::userpass_plaintext(u, p),
            // A single token in the user part, as GitHub accepts.
            (u, None) if !u.is_empty() => Cred::userpass_plaintext(u, ""),
            _ => Err(git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Http,
                "the repository needs credentials",
            )),
        }
    });
    callbacks.transfer_progress(|_| !abort.load(Ordering::Relaxed));
    callbacks.sideband_progress(|_| !abort.load(Ordering::Relaxed));

    let mut fetch = FetchOptions::new();
    fetch.remote_callbacks(callbacks);
    // libgit2's local transport cannot make shallow clones; http(s) can.
    if matches!(url.scheme(), "http" | "https") {
        fetch.depth(1);
    }
    let result = RepoBuilder::new()
        .fetch_options(fetch)
        .clone(url.as_str(), dest);
    match result {
        Ok(_) => Ok(()),
        Err(_) if abort.load(Ordering::Relaxed) => Err(CloneError::Aborted),
        Err(e) => Err(CloneError::Failed(explain(&e, &shown, &secrets))),
    }
}

fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

/// A message the user can act on, with the cause, never the credentials.
fn explain(e: &git2::Error, shown: &str, secrets: &[String]) -> String {
    let cause = e.message().to_string();
    let lower = cause.to_ascii_lowercase();
    let text = if e.code() == ErrorCode::Auth
        || lower.contains("401")
        || lower.contains("403")
        || lower.contains("authentication")
        || lower.contains("credentials")
    {
        format!(
            "could not clone {shown}: authentication failed ({cause}); check the user name and token in the url"
        )
    } else if lower.contains("404")
        || lower.contains("not found")
        || lower.contains("failed to resolve path")
    {
        format!("could not clone {shown}: repository not found ({cause})")
    } else {
        format!("could not clone {shown}: {cause}")
    };
    scrub(text, secrets)
}

fn scrub(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        text = text.replace(secret.as_str(), "***");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("p%40ss%3Aw"), "p@ss:w");
        assert_eq!(decode("plain"), "plain");
    }

    #[test]
    fn scrubbing_removes_every_secret() {
        let text = scrub(
            "user bob pass hunter2 hunter2".into(),
            &["hunter2".into(), "bob".into()],
        );
        assert_eq!(text, "user *** pass *** ***");
    }

    #[test]
    fn refused_scheme_is_explained() {
        let abort = AtomicBool::new(false);
        let dir = std::env::temp_dir().join(format!("lz-git-unit-{}", uuid::Uuid::new_v4()));
        let err = clone("http://h/o/r.git", &RepoPolicy::default(), &dir, &abort).unwrap_err();
        assert!(
            err.to_string().contains("scheme `http` is not allowed"),
            "{err}"
        );
    }
}
