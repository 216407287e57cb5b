//! The `lanzadera` command as a developer uses it, the built binary against
//! the whole platform: sign in (password and device code), submit the hello
//! example and wait for it, read its logs, download its files, submit the
//! repository of the current folder, cancel a sleeper.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::sleeper;
use testkit::platform::Platform;
use testkit::repos::{git, rev_parse, TempDir};
use testkit::servers::binary;
use testkit::tokens::{approve_device, BOB};

struct Cli<'a> {
    api: &'a str,
    config: &'a Path,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("lanzadera"));
        command
            .args(args)
            .env("LANZADERA_API", self.api)
            .env("XDG_CONFIG_HOME", self.config)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("lanzadera runs")
    }

    fn run_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.command(args)
            .current_dir(dir)
            .output()
            .expect("lanzadera runs")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("--json prints JSON")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_developer_signs_in_submits_waits_reads_downloads_and_cancels_with_the_command() {
    let platform = Platform::start(1, &[]).await;
    let home = TempDir::new("cli-config");
    let cli = Cli {
        api: &platform.api,
        config: home.path(),
    };

    // Before signing in: a clear message and its own exit code.
    let out = cli.run(&["list"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run `lanzadera login`"),
        "{}",
        stderr(&out)
    );

    // Password from standard input, for scripts.
    let mut login = cli
        .command(&["login", "--user", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(login.stdin.as_mut().unwrap(), b"alice-pass\n").unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let file = home.path().join("lanzadera/credentials.json");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let token = saved[&platform.api]["access_token"]
        .as_str()
        .expect("saved token");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!printed.contains(token), "the token was printed");

    // Submit the hello example and wait: the exit code is the job's.
    let out = cli.run(&[
        "submit",
        &platform.repo("hello"),
        "--arg",
        "Ada Lovelace",
        "--wait",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap();

    let out = cli.run(&["logs", id]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello, Ada Lovelace!\n"
    );

    let into = TempDir::new("cli-download");
    let out = cli.run(&["download", id, "-o", into.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(into.path().join("greeting.txt")).unwrap(),
        "Hello, Ada Lovelace!\n"
    );
    assert!(into.path().join("run.json").exists());
    let out = cli.run(&["download", id, "no-such-file"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("has no file `no-such-file`"),
        "{}",
        stderr(&out)
    );

    // `submit .`: this folder's origin, pinned at its HEAD commit.
    let work = TempDir::new("cli-work");
    git(work.path(), &["clone", "-q", &platform.repo("hello"), "."]);
    let out = cli.run_in(work.path(), &["submit", ".", "--wait", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let here: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        here["commit"],
        rev_parse(work.path(), "HEAD").as_str(),
        "{here}"
    );
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    // A commit that was never pushed: warned about, and the job fails.
    std::fs::write(work.path().join("extra.txt"), "local only\n").unwrap();
    git(work.path(), &["add", "."]);
    git(
        work.path(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "local",
        ],
    );
    let out = cli.run_in(work.path(), &["submit", ".", "--wait"]);
    assert!(
        stderr(&out).contains("is on no remote branch"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // Cancel a sleeper.
    let sleeper = sleeper(&platform.repos, 60.0);
    let out = cli.run(&["submit", &sleeper]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = cli.run(&["cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = cli.json(&["status", &id, "--json"]);
        if job["status"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "never cancelled: {job}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let listed = cli.json(&["list", "--json"]);
    assert_eq!(listed["total"], 4, "{listed}");

    // Device code: the link is shown, the user signs in in a browser.
    let mut login = cli
        .command(&["login"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(login.stderr.take().unwrap()).lines();
    let link = loop {
        let line = lines.next().expect("a link").unwrap();
        if let Some(link) = line.strip_prefix("Open ") {
            break link.to_string();
        }
    };
    let page = approve_device(&link, BOB).await;
    assert!(page.contains("signed in"), "{page}");
    let status = tokio::task::spawn_blocking(move || login.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    // Now bob: alice's jobs are not his.
    let listed = cli.json(&["list", "--json"]);
    assert_eq!(listed["total"], 0, "{listed}");

    let out = cli.run(&["logout"]);
    assert!(out.status.success());
    assert_eq!(cli.run(&["list"]).status.code(), Some(4));
}
