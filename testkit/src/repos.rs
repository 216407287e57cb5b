//! Git repositories for jobs to run: the project's examples committed in a
//! folder, fixtures built from a few files, and `dev/git-http-server.py`
//! serving bare repositories over smart HTTP (with a private area behind
//! basic auth).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The credentials of the git server's `/private/` area.
pub const GIT_USER: &str = "bob";
pub const GIT_PASSWORD: &str = "pw-5f2c9a-correct";

/// A folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lz-test-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `git <args>` in `dir` as a test identity; panics if it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@lanzadera.local",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?} in {}", dir.display());
}

/// The commit id `rev` names in the repository at `dir`.
pub fn rev_parse(dir: &Path, rev: &str) -> String {
    let out = Command::new("git")
        .args(["rev-parse", &format!("{rev}^{{commit}}")])
        .current_dir(dir)
        .output()
        .expect("git rev-parse");
    assert!(out.status.success(), "git rev-parse {rev}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Makes `dir` a git repository with everything in it committed.
pub fn commit_all(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", "job"]);
}

/// Writes `files` (relative path, content) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let file = dir.join(name);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, content).expect("write");
    }
}

/// Every folder of `examples/` copied under `repos` and committed: one
/// repository per example, named like it.
pub fn publish_examples(repos: &Path) {
    let examples = crate::root().join("examples");
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let src = entry.expect("entry").path();
        let Some(name) = src.file_name() else {
            continue;
        };
        let dst = repos.join(name);
        std::fs::create_dir_all(&dst).expect("mkdir");
        let copied = Command::new("cp")
            .arg("-R")
            .arg(format!("{}/.", src.display()))
            .arg(&dst)
            .status()
            .expect("cp");
        assert!(copied.success());
        commit_all(&dst);
    }
}

/// A repository whose start script is `sh run.sh`, with `run.sh` as given.
pub fn shell_job(script: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "package.json",
            r#"{"name":"fixture","version":"1.0.0","scripts":{"start":"sh run.sh"}}"#.to_string(),
        ),
        ("run.sh", script.to_string()),
    ]
}

pub fn files<'a>(list: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    list.iter().map(|(n, c)| (*n, c.as_str())).collect()
}

/// `dev/git-http-server.py` over a folder of bare repositories; paths under
/// `/private/` need `GIT_USER:GIT_PASSWORD`.
pub struct GitServer {
    pub root: TempDir,
    pub port: u16,
    child: Child,
}

impl GitServer {
    pub fn start() -> Self {
        let root = TempDir::new("git");
        let script = crate::root().join("dev/git-http-server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--root")
            .arg(root.path())
            .arg("--auth")
            .arg(format!("{GIT_USER}:{GIT_PASSWORD}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the git server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the port");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the git server: {line:?}"));
        Self { root, port, child }
    }

    /// Creates a bare repository at `<root>/<path>` holding `files`, and
    /// returns its http url (without credentials).
    pub fn repo(&self, path: &str, files: &[(&str, &str)]) -> String {
        let work = TempDir::new("src");
        write_files(work.path(), files);
        commit_all(work.path());
        self.publish(path, work.path())
    }

    /// Publishes the repository at `work`, every branch and tag, as a bare
    /// repository at `<root>/<path>`, and returns its http url.
    pub fn publish(&self, path: &str, work: &Path) -> String {
        let bare = self.root.path().join(path);
        std::fs::create_dir_all(bare.parent().expect("parent")).expect("mkdir");
        let (src, dst) = (work.display().to_string(), bare.display().to_string());
        git(work, &["clone", "-q", "--bare", &src, &dst]);
        self.url(path)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    pub fn url_with(&self, path: &str, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
