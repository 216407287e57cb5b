//! Cloning the job's repository with libgit2.
//!
//! Credentials never reach libgit2 inside the URL: they are taken out and
//! handed over through the credentials callback, so they cannot appear in
//! libgit2's error messages or in the clone's `.git/config` (which the job
//! can read). Error messages are also scrubbed of them, in case.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{GitRef, RepoPolicy, RepoUrl};
use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{
    Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, RemoteCallbacks, Repository,
};
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

/// Clones `raw_url` into `dest` (which must not exist) and checks out
/// `wanted` (a branch, tag or commit; the remote's HEAD when `None`).
/// Returns the commit id checked out. Blocking: run it on a blocking
/// thread. `abort` is checked during the transfer.
pub fn clone(
    raw_url: &str,
    policy: &RepoPolicy,
    wanted: Option<&GitRef>,
    dest: &Path,
    abort: &AtomicBool,
) -> Result<String, CloneError> {
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
    // A named ref may be any branch, tag or commit: the whole history is
    // fetched so that each can be found (a server need not serve a commit
    // by id).
    if wanted.is_none() && matches!(url.scheme(), "http" | "https") {
        fetch.depth(1);
    }
    let result = RepoBuilder::new()
        .fetch_options(fetch)
        .clone(url.as_str(), dest);
    let repo = match result {
        Ok(repo) => repo,
        Err(_) if abort.load(Ordering::Relaxed) => return Err(CloneError::Aborted),
        Err(e) => return Err(CloneError::Failed(explain(&e, &shown, &secrets))),
    };
    let commit = match wanted {
        None => repo.head().and_then(|h| h.peel_to_commit()),
        Some(wanted) => return check_out(&repo, wanted, &shown),
    };
    commit.map(|c| c.id().to_string()).map_err(|e| {
        CloneError::Failed(format!(
            "could not read the commit cloned from {shown}: {}",
            e.message()
        ))
    })
}

/// Checks out `wanted` detached: a remote branch of that name first, then
/// a tag, then a commit id (or a unique prefix of one).
fn check_out(repo: &Repository, wanted: &GitRef, shown: &str) -> Result<String, CloneError> {
    let name = wanted.as_str();
    let candidates = [
        format!("refs/remotes/origin/{name}"),
        format!("refs/tags/{name}"),
    ];
    let object = candidates
        .iter()
        .find_map(|r| repo.revparse_single(r).ok())
        .or_else(|| {
            // Only a hex string is tried as a commit id: anything else
            // revparse would read as some other local name.
            let hex = name.len() >= 4 && name.chars().all(|c| c.is_ascii_hexdigit());
            hex.then(|| repo.revparse_single(name).ok()).flatten()
        })
        .ok_or_else(|| {
            CloneError::Failed(format!(
                "`ref` {name} is not a branch, tag or commit of {shown}"
            ))
        })?;
    let failed = |e: git2::Error| {
        CloneError::Failed(format!(
            "could not check out {name} from {shown}: {}",
            e.message()
        ))
    };
    let commit = object.peel_to_commit().map_err(failed)?;
    repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().force()))
        .map_err(failed)?;
    repo.set_head_detached(commit.id()).map_err(failed)?;
    Ok(commit.id().to_string())
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
        let err = clone(
            "http://h/o/r.git",
            &RepoPolicy::default(),
            None,
            &dir,
            &abort,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("scheme `http` is not allowed"),
            "{err}"
        );
    }
}
