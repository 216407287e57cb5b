//! One job at a time, end to end on the real stack: what its owner sees in
//! the status events and in S3.

mod support;

use std::time::Duration;

use common::JobState;
use support::{
    files, git, job_message, rev_parse, shell_job, write_files, GitServer, Stack, TempDir,
    PASSWORD, USER,
};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_with_nested_outputs_config_and_args_with_spaces_and_quotes() {
    let git = GitServer::start();
    let repo = shell_job(
        r#"mkdir -p output/nested/deeper
printf '%s\n' "$@" > output/args.txt
cp config.json output/nested/config-copy.json
echo '{"ok": true}' > output/nested/deeper/result.json
echo "hello from the job"
"#,
    );
    let url = git.repo("public/ok.git", &files(&repo));
    let stack = Stack::new(2).await;
    let worker = stack.start_worker(&[]).await;

    let args = [
        "two words",
        r#"it's "quoted""#,
        "$(touch output/pwned)",
        "; echo injected > output/injected",
        "",
    ];
    let id = stack.submit(&url, &args, Some(r#"{"n": 3}"#)).await;
    let end = stack.status.terminal(id, WAIT).await;

    assert_eq!(end.status, JobState::Succeeded, "{end:?}");
    assert_eq!(end.exit_code, Some(0));
    assert_eq!(end.error, None);
    assert_eq!(end.worker_id.as_deref(), Some(worker.id.as_str()));
    assert_eq!(end.attempt, 1);
    assert!(end.elapsed_seconds.is_some_and(|s| s > 0.0), "{end:?}");
    assert_eq!(
        end.output_files.clone().unwrap_or_default(),
        vec![
            "args.txt",
            "nested/config-copy.json",
            "nested/deeper/result.json"
        ]
    );
    let events = stack.status.events_for(id);
    let states: Vec<_> = events.iter().map(|e| e.status).collect();
    assert_eq!(states, vec![JobState::Running, JobState::Succeeded]);
    assert_eq!(events[0].worker_id.as_deref(), Some(worker.id.as_str()));

    assert_eq!(
        stack.objects(id).await,
        vec![
            "logs/stderr.log",
            "logs/stdout.log",
            "output/args.txt",
            "output/nested/config-copy.json",
            "output/nested/deeper/result.json",
        ]
    );
    // Each arg arrived whole and nothing was run by a shell.
    assert_eq!(
        stack.text(id, "output/args.txt").await,
        args.join("\n") + "\n"
    );
    assert_eq!(
        stack.text(id, "output/nested/config-copy.json").await,
        r#"{"n": 3}"#
    );
    assert_eq!(
        stack.text(id, "logs/stdout.log").await,
        "hello from the job\n"
    );
    assert_eq!(
        stack
            .content_type(id, "output/nested/deeper/result.json")
            .await,
        "application/json"
    );
    assert!(stack
        .content_type(id, "output/args.txt")
        .await
        .starts_with("text/plain"));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_zero_exit_fails_and_keeps_stderr_and_partial_outputs() {
    let git = GitServer::start();
    let repo = shell_job("echo partial > output/partial.txt\necho 'something broke' >&2\nexit 3\n");
    let url = git.repo("public/fails.git", &files(&repo));
    let stack = Stack::new(2).await;
    let worker = stack.start_worker(&[]).await;

    let id = stack.submit(&url, &[], None).await;
    let end = stack.status.terminal(id, WAIT).await;

    assert_eq!(end.status, JobState::Failed, "{end:?}");
    assert_eq!(end.exit_code, Some(3));
    assert!(
        end.error
            .as_deref()
            .unwrap_or_default()
            .contains("exited with code 3"),
        "{end:?}"
    );
    assert_eq!(
        end.output_files.clone().unwrap_or_default(),
        vec!["partial.txt"]
    );
    assert_eq!(stack.text(id, "logs/stderr.log").await, "something broke\n");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_and_package_errors_fail_with_messages_the_user_can_act_on() {
    let git = GitServer::start();
    let no_package = git.repo(
        "public/no-package.git",
        &[("README.md", "no package.json here\n")],
    );
    let no_start = git.repo(
        "public/no-start.git",
        &[("package.json", r#"{"name":"x","scripts":{"test":"true"}}"#)],
    );
    let missing = git.url("public/does-not-exist.git");
    let stack = Stack::new(2).await;
    let worker = stack.start_worker(&[]).await;

    let a = stack.submit(&no_package, &[], None).await;
    let b = stack.submit(&no_start, &[], None).await;
    let c = stack.submit(&missing, &[], None).await;

    let cases = [
        (a, "package.json not found"),
        (b, "no `scripts.start`"),
        (c, "repository not found"),
    ];
    for (id, expected) in cases {
        let end = stack.status.terminal(id, WAIT).await;
        assert_eq!(end.status, JobState::Failed, "{end:?}");
        let error = end.error.clone().unwrap_or_default();
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
        assert_eq!(end.exit_code, None);
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_repo_clones_with_credentials_and_wrong_ones_fail_without_leaking() {
    let git = GitServer::start();
    let repo = shell_job("echo private > output/who.txt\n");
    git.repo("private/app.git", &files(&repo));
    let wrong_password = "wr0ng-Passw0rd-77";
    let stack = Stack::new(2).await;
    let worker = stack.start_worker(&[]).await;

    let good = stack
        .submit(&git.url_with("private/app.git", USER, PASSWORD), &[], None)
        .await;
    let bad = stack
        .submit(
            &git.url_with("private/app.git", USER, wrong_password),
            &[],
            None,
        )
        .await;
    let none = stack.submit(&git.url("private/app.git"), &[], None).await;

    let end = stack.status.terminal(good, WAIT).await;
    assert_eq!(end.status, JobState::Succeeded, "{end:?}");
    assert_eq!(stack.text(good, "output/who.txt").await, "private\n");

    for id in [bad, none] {
        let end = stack.status.terminal(id, WAIT).await;
        assert_eq!(end.status, JobState::Failed, "{end:?}");
        let error = end.error.clone().unwrap_or_default();
        assert!(error.contains("authentication failed"), "{error}");
    }
    let everything = stack.status.raw();
    assert!(!everything.contains(wrong_password), "{everything}");
    assert!(!everything.contains(PASSWORD), "{everything}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group() {
    let git = GitServer::start();
    // The background sleep is the grandchild a plain kill would miss.
    let repo = shell_job("sleep 300 &\necho $! > \"$1\"\necho started\nsleep 300\n");
    let url = git.repo("public/slow.git", &files(&repo));
    let stack = Stack::new(2).await;
    let worker = stack.start_worker(&[("LZ_JOB_TIMEOUT_SECS", "2")]).await;
    let pid_file = stack.work.path().join("background.pid");

    let id = stack
        .submit(&url, &[&pid_file.display().to_string()], None)
        .await;
    let end = stack.status.terminal(id, WAIT).await;

    assert_eq!(end.status, JobState::Failed, "{end:?}");
    assert!(
        end.error
            .as_deref()
            .unwrap_or_default()
            .contains("timed out after 2 s"),
        "{end:?}"
    );
    assert!(
        end.elapsed_seconds
            .is_some_and(|s| (2.0..10.0).contains(&s)),
        "{end:?}"
    );
    assert_eq!(stack.text(id, "logs/stdout.log").await, "started\n");
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    assert!(
        !process_alive(pid.trim()),
        "background process {pid} survived"
    );
    worker.stop().await;
}

/// A repository whose start script writes which version it is: `first`
/// (tagged `v1`, annotated), `other` on branch `other` from there, and
/// `latest` on `main`. Returns the url and the three commit ids.
fn versioned_repo(git_server: &GitServer) -> (String, [String; 3]) {
    let work = TempDir::new("versions");
    let dir = work.path();
    let version = |name: &str| {
        write_files(
            dir,
            &files(&shell_job(&format!("echo {name} > output/which.txt\n"))),
        );
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", name]);
        rev_parse(dir, "HEAD")
    };
    git(dir, &["init", "-q", "-b", "main"]);
    let first = version("first");
    git(dir, &["tag", "-a", "v1", "-m", "the first"]);
    git(dir, &["checkout", "-q", "-b", "other"]);
    let other = version("other");
    git(dir, &["checkout", "-q", "main"]);
    let latest = version("latest");
    (
        git_server.publish("public/versions.git", dir),
        [first, other, latest],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_runs_that_branch_tag_or_commit_and_the_commit_run_is_reported() {
    let git_server = GitServer::start();
    let (url, [first, other, latest]) = versioned_repo(&git_server);
    let stack = Stack::new(2).await;
    let worker = stack.start_worker(&[]).await;
    let cases: [(Option<&str>, &str, &str); 5] = [
        (None, "latest", &latest),
        (Some("main"), "latest", &latest),
        (Some("other"), "other", &other),
        (Some("v1"), "first", &first),
        (Some(&first[..10]), "first", &first),
    ];
    for (wanted, text, commit) in cases {
        let mut message = job_message(&url);
        message.git_ref = wanted.map(str::to_string);
        let id = stack.submit_message(None, &message).await;
        let end = stack.status.terminal(id, WAIT).await;
        assert_eq!(end.status, JobState::Succeeded, "{wanted:?}: {end:?}");
        assert_eq!(
            stack.text(id, "output/which.txt").await,
            format!("{text}\n"),
            "{wanted:?}"
        );
        let running = &stack.status.events_for(id)[0];
        assert_eq!(running.status, JobState::Running);
        assert_eq!(running.commit.as_deref(), Some(commit), "{wanted:?}");
    }
    let mut message = job_message(&url);
    message.git_ref = Some("nope".into());
    let id = stack.submit_message(None, &message).await;
    let end = stack.status.terminal(id, WAIT).await;
    assert_eq!(end.status, JobState::Failed, "{end:?}");
    let error = end.error.unwrap_or_default();
    assert!(
        error.contains("`ref` nope is not a branch, tag or commit of"),
        "{error}"
    );
    // A revision expression never reaches git, even from the topic.
    message.git_ref = Some("main~1".into());
    message.id = common::JobId::new();
    let id = stack.submit_message(None, &message).await;
    let end = stack.status.terminal(id, WAIT).await;
    assert_eq!(end.status, JobState::Failed, "{end:?}");
    assert!(end.error.unwrap_or_default().contains("must not contain"));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_own_timeout_applies_within_the_operators_maximum() {
    let git_server = GitServer::start();
    let url = git_server.repo(
        "public/sleepy.git",
        &files(&shell_job("echo started\nsleep 60\n")),
    );
    let stack = Stack::new(2).await;
    let worker = stack
        .start_worker(&[
            ("LZ_JOB_TIMEOUT_SECS", "3600"),
            ("LZ_MAX_JOB_TIMEOUT_SECS", "3"),
        ])
        .await;
    // (asked, limit applied): its own; over the maximum, the maximum.
    for (asked, limit) in [(1, 1), (100, 3)] {
        let mut message = job_message(&url);
        message.timeout_seconds = Some(asked);
        let id = stack.submit_message(None, &message).await;
        let end = stack.status.terminal(id, WAIT).await;
        assert_eq!(end.status, JobState::Failed, "{end:?}");
        let error = end.error.clone().unwrap_or_default();
        assert!(
            error.contains(&format!("timed out after {limit} s")),
            "{asked}: {error}"
        );
        let elapsed = end.elapsed_seconds.unwrap_or_default();
        assert!(
            (limit as f64..limit as f64 + 5.0).contains(&elapsed),
            "{asked}: {end:?}"
        );
        assert_eq!(stack.text(id, "logs/stdout.log").await, "started\n");
    }
    worker.stop().await;
}

fn process_alive(pid: &str) -> bool {
    // A killed process may linger as a zombie until its new parent reaps it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_sees_none_of_the_workers_environment() {
    let git = GitServer::start();
    let repo = shell_job("env | sort\n");
    let url = git.repo("public/env.git", &files(&repo));
    let stack = Stack::new(2).await;
    // A separate process: its environment really holds the credentials.
    let worker = stack.spawn_worker_process(&[("LZ_CANARY_TOKEN", "canary-7f3e1b")]);

    let id = stack.submit(&url, &[], None).await;
    let end = stack.status.terminal(id, WAIT).await;
    assert_eq!(end.status, JobState::Succeeded, "{end:?}");

    let env = stack.text(id, "logs/stdout.log").await;
    for secret in [
        stack.s3.secret_key.expose().as_str(),
        stack.s3.access_key.expose().as_str(),
        "canary-7f3e1b",
        "LZ_S3",
        "LZ_KAFKA",
        &stack.kafka.brokers,
    ] {
        assert!(
            !env.contains(secret),
            "{secret:?} visible to the job:\n{env}"
        );
    }
    assert!(env.contains(&format!("LZ_JOB_ID={id}")), "{env}");
    assert!(env.contains("HOME=/"), "{env}");
    assert!(env.contains("npm_lifecycle_event=start"), "{env}");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_while_queued_never_runs() {
    let git = GitServer::start();
    let repo = shell_job("echo ran > output/ran.txt\n");
    let url = git.repo("public/queued.git", &files(&repo));
    let stack = Stack::new(2).await;

    // Queued and cancelled before any worker exists.
    let cancelled = stack.submit(&url, &[], None).await;
    stack.cancel(cancelled).await;
    let kept = stack.submit(&url, &[], None).await;
    let worker = stack.start_worker(&[]).await;

    let end = stack.status.terminal(cancelled, WAIT).await;
    assert_eq!(end.status, JobState::Cancelled, "{end:?}");
    assert_eq!(end.worker_id.as_deref(), Some(worker.id.as_str()));
    let kept_end = stack.status.terminal(kept, WAIT).await;
    assert_eq!(kept_end.status, JobState::Succeeded, "{kept_end:?}");

    let states: Vec<_> = stack
        .status
        .events_for(cancelled)
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(states, vec![JobState::Cancelled]);
    assert!(stack.objects(cancelled).await.is_empty());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_while_running_is_killed_and_reported_cancelled() {
    let git = GitServer::start();
    let repo = shell_job("echo started\nsleep 0.2\necho partial > output/partial.txt\nsleep 300\n");
    let url = git.repo("public/long.git", &files(&repo));
    let stack = Stack::new(2).await;
    let worker = stack.start_worker(&[]).await;

    let id = stack.submit(&url, &[], None).await;
    stack.status.running(id, WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let asked = std::time::Instant::now();
    stack.cancel(id).await;
    let end = stack.status.terminal(id, WAIT).await;
    let reaction = asked.elapsed();

    assert_eq!(end.status, JobState::Cancelled, "{end:?}");
    assert!(reaction < Duration::from_secs(10), "took {reaction:?}");
    assert_eq!(stack.text(id, "logs/stdout.log").await, "started\n");
    assert_eq!(
        end.output_files.clone().unwrap_or_default(),
        vec!["partial.txt"]
    );
    eprintln!("cancel to cancelled event: {reaction:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_as_another_user_cannot_read_the_workers_process_environment() {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        eprintln!("skipped: LZ_JOB_USER needs the worker to run as root");
        return;
    }
    let git = GitServer::start();
    let repo = shell_job(
        "id -u\nid -G\ntouch output/written.txt\ncat \"/proc/$1/environ\" > output/stolen.txt 2>/dev/null || echo denied\n",
    );
    let url = git.repo("public/steal.git", &files(&repo));
    let stack = Stack::new(2).await;
    let worker = stack.spawn_worker_process(&[("LZ_JOB_USER", "65534:65534")]);

    let id = stack.submit(&url, &[&worker.pid().to_string()], None).await;
    let end = stack.status.terminal(id, WAIT).await;
    assert_eq!(end.status, JobState::Succeeded, "{end:?}");
    assert_eq!(
        stack.text(id, "logs/stdout.log").await,
        "65534\n65534\ndenied\n"
    );
    let stolen = stack.text(id, "output/stolen.txt").await;
    assert!(
        !stolen.contains(stack.s3.secret_key.expose().as_str()),
        "{stolen}"
    );
    assert!(stolen.is_empty(), "{stolen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_output_limits_hold() {
    let git = GitServer::start();
    // 20,000 bytes of stdout against a 100-byte log limit.
    let chatty = git.repo(
        "public/chatty.git",
        &files(&shell_job(
            "i=0\nwhile [ $i -lt 2000 ]; do echo 123456789; i=$((i+1)); done\n",
        )),
    );
    // 2 MB into output/ against a 1 MB limit; it would go on for 300 s.
    let greedy = git.repo(
        "public/greedy.git",
        &files(&shell_job(
            "head -c 2000000 /dev/zero > output/big.bin\nsleep 300\n",
        )),
    );
    let stack = Stack::new(2).await;
    let worker = stack
        .start_worker(&[
            ("LZ_MAX_LOG_BYTES", "100"),
            ("LZ_MAX_OUTPUT_BYTES", "1000000"),
        ])
        .await;

    let a = stack.submit(&chatty, &[], None).await;
    let b = stack.submit(&greedy, &[], None).await;

    let end = stack.status.terminal(a, WAIT).await;
    assert_eq!(end.status, JobState::Succeeded, "{end:?}");
    let log = stack.text(a, "logs/stdout.log").await;
    assert!(log.starts_with(&"123456789\n".repeat(10)), "{log}");
    assert!(
        log.contains("log truncated at 100 bytes; 19900 more bytes were dropped"),
        "{log}"
    );

    let end = stack.status.terminal(b, WAIT).await;
    assert_eq!(end.status, JobState::Failed, "{end:?}");
    let error = end.error.clone().unwrap_or_default();
    assert!(error.contains("over the limit of 1000000 bytes"), "{error}");
    assert!(end.elapsed_seconds.is_some_and(|s| s < 30.0), "{end:?}");
    assert_eq!(end.output_files, Some(vec![]));
    assert_eq!(
        stack.objects(b).await,
        vec!["logs/stderr.log", "logs/stdout.log"]
    );
    worker.stop().await;
}
