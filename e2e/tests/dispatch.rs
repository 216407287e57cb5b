//! Dispatch under failure (`docs/dispatch.md`), with the services as
//! processes: a worker killed with jobs in flight, one frozen and thawed,
//! one killed after its partition moved, a job out of attempts, and a
//! graceful shutdown with slots busy and a job on deck.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use support::{sleeper, Client};
use testkit::platform::Platform;
use testkit::tokens::ALICE;

const LONG: Duration = Duration::from_secs(60);

fn signal(platform: &mut Platform, service: &str, signal: Signal) {
    let pid = platform.service(service).child.id();
    kill(Pid::from_raw(pid as i32), signal).expect("signal delivered");
}

/// Waits until every job in `ids` matches.
async fn wait_all(
    platform: &Platform,
    token: &str,
    ids: &[String],
    check: impl Fn(&Value) -> bool + Copy,
) -> Vec<Value> {
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(platform.wait(token, id, LONG, check).await);
    }
    jobs
}

async fn wait_log(platform: &Platform, service: &str, text: &str) {
    let path = platform.logs.join(format!("{service}.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "{service} never logged {text:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seconds from `since` until the job is running at `attempt`.
async fn until_running_again(
    platform: &Platform,
    token: &str,
    id: &str,
    attempt: u64,
    since: Instant,
) -> f64 {
    platform
        .wait(token, id, Duration::from_secs(30), |j| {
            j["status"] != "queued" && j["attempt"].as_u64() >= Some(attempt)
        })
        .await;
    since.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_four_jobs_in_flight_loses_none_and_reruns_no_finished_one() {
    let mut platform = Platform::start(0, &[]).await;
    let a = platform.add_worker(&[("LZ_WORKER_SLOTS", "6")]);
    let token = platform.token(ALICE).await;
    let long = sleeper(&platform.repos, 6.0);
    let short = sleeper(&platform.repos, 0.2);
    let longs: Vec<String> = futures_join(&platform, &token, &long, 4).await;
    let shorts: Vec<String> = futures_join(&platform, &token, &short, 2).await;
    let ended = wait_all(&platform, &token, &shorts, |j| j["status"] == "succeeded").await;
    let running = wait_all(&platform, &token, &longs, |j| j["status"] == "running").await;
    let a_id = platform.worker_id(&a);
    assert!(running.iter().all(|j| j["workerId"] == a_id.as_str()));
    let b = platform.add_worker(&[("LZ_WORKER_SLOTS", "4")]);
    let b_id = platform.worker_id(&b);
    wait_log(&platform, &b, "worker ready").await;

    signal(&mut platform, &a, Signal::SIGKILL);
    let killed = Instant::now();
    let mut waits = Vec::new();
    for id in &longs {
        waits.push(until_running_again(&platform, &token, id, 2, killed).await);
    }
    let done = wait_all(&platform, &token, &longs, |j| j["status"] == "succeeded").await;
    for job in &done {
        assert_eq!(job["attempt"], 2, "each ran once more, no more: {job}");
        assert_eq!(job["workerId"], b_id.as_str(), "{job}");
        let files: Vec<&str> = job["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        assert!(files.contains(&"done.txt"), "{job}");
    }
    for (before, id) in ended.iter().zip(&shorts) {
        let after = platform.job(&token, id).await;
        assert_eq!(
            after["attempt"], 1,
            "a finished job is not run again: {after}"
        );
        assert_eq!(after["startedAt"], before["startedAt"], "{after}");
        assert_eq!(after["workerId"], a_id.as_str(), "{after}");
    }
    eprintln!("kill -9 → running again: {waits:.2?} s");
    assert!(
        waits.iter().all(|w| *w <= 10.0),
        "every job runs again within 10 s of the kill: {waits:?}"
    );
}

/// Submits `n` jobs of `url`.
async fn futures_join(platform: &Platform, token: &str, url: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(platform.submit(token, json!({ "url": url })).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_is_superseded_once_and_its_late_run_counts_for_nothing() {
    let mut platform = Platform::start(0, &[]).await;
    let a = platform.add_worker(&[("LZ_WORKER_SLOTS", "1")]);
    let token = platform.token(ALICE).await;
    let job = platform
        .submit(&token, json!({"url": sleeper(&platform.repos, 4.0)}))
        .await;
    platform
        .wait(&token, &job, LONG, |j| j["status"] == "running")
        .await;
    let b = platform.add_worker(&[("LZ_WORKER_SLOTS", "1")]);
    // Frozen, not dead: its process and its job's process group stay.
    signal(&mut platform, &a, Signal::SIGSTOP);
    let frozen = Instant::now();
    let again = until_running_again(&platform, &token, &job, 2, frozen).await;
    signal(&mut platform, &a, Signal::SIGCONT);
    let end = platform
        .wait(&token, &job, LONG, |j| j["status"] == "succeeded")
        .await;
    assert_eq!(end["attempt"], 2, "queued again exactly once: {end}");
    assert_eq!(end["workerId"], platform.worker_id(&b).as_str(), "{end}");
    // The thawed worker stopped its stale run without publishing: the
    // record stays the second attempt's.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = platform.job(&token, &job).await;
    assert_eq!(later["attempt"], 2, "{later}");
    assert_eq!(later["finishedAt"], end["finishedAt"], "{later}");
    wait_log(&platform, &a, "superseded").await;
    eprintln!("frozen → running again: {again:.2} s");
    assert!(again <= 10.0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_its_running_jobs_partition_moved_strands_nothing() {
    // One partition, so that when a second worker joins the partition is
    // either kept or moved, and a worker id that sorts first makes the
    // group's range assignor give it to the newcomer.
    let mut platform = Platform::start(0, &[("LZ_JOBS_PARTITIONS", "1")]).await;
    let a = platform.add_worker(&[("LZ_WORKER_SLOTS", "1")]);
    let token = platform.token(ALICE).await;
    let job = platform
        .submit(&token, json!({"url": sleeper(&platform.repos, 5.0)}))
        .await;
    platform
        .wait(&token, &job, LONG, |j| j["status"] == "running")
        .await;
    let newcomer = format!("{}-worker-0", platform.namespace.name());
    let b = platform.add_worker(&[("LZ_WORKER_SLOTS", "1"), ("LZ_WORKER_ID", &newcomer)]);
    wait_log(&platform, &b, "partitions assigned partitions=1").await;
    signal(&mut platform, &a, Signal::SIGKILL);
    let killed = Instant::now();
    let again = until_running_again(&platform, &token, &job, 2, killed).await;
    let end = platform
        .wait(&token, &job, LONG, |j| j["status"] == "succeeded")
        .await;
    assert_eq!(end["workerId"], newcomer.as_str(), "{end}");
    eprintln!("kill -9 after the move → running again: {again:.2} s");
    assert!(again <= 10.0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_workers_keep_dying_fails_with_the_reason() {
    let mut platform = Platform::start(0, &[("LZ_MAX_ATTEMPTS", "1")]).await;
    let a = platform.add_worker(&[("LZ_WORKER_SLOTS", "1")]);
    let token = platform.token(ALICE).await;
    let job = platform
        .submit(&token, json!({"url": sleeper(&platform.repos, 30.0)}))
        .await;
    platform
        .wait(&token, &job, LONG, |j| j["status"] == "running")
        .await;
    platform.add_worker(&[("LZ_WORKER_SLOTS", "1")]);
    signal(&mut platform, &a, Signal::SIGKILL);
    let end = platform
        .wait(&token, &job, LONG, |j| j["status"] == "failed")
        .await;
    let error = end["error"].as_str().unwrap_or_default();
    assert!(error.contains("stopped responding"), "{end}");
    assert!(error.contains(&platform.worker_id(&a)), "{end}");
    // Nobody runs it again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(platform.job(&token, &job).await["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_slots_busy_hands_back_only_the_unfinished_jobs() {
    // The short job outlasts the second worker's start (the job on deck
    // must still wait at the SIGTERM) and ends within the grace.
    let mut platform = Platform::start(0, &[("LZ_SHUTDOWN_GRACE_SECS", "6")]).await;
    // A steal delay this long keeps the job on deck there until the
    // SIGTERM: no idle peer's heartbeat releases it first.
    let a = platform.add_worker(&[("LZ_WORKER_SLOTS", "2"), ("LZ_STEAL_AFTER_MS", "60000")]);
    let token = platform.token(ALICE).await;
    let short = platform
        .submit(&token, json!({"url": sleeper(&platform.repos, 4.0)}))
        .await;
    let long = platform
        .submit(&token, json!({"url": sleeper(&platform.repos, 12.0)}))
        .await;
    wait_all(&platform, &token, &[short.clone(), long.clone()], |j| {
        j["status"] == "running"
    })
    .await;
    let next = platform
        .submit(&token, json!({"url": sleeper(&platform.repos, 1.0)}))
        .await;
    // The only job that can wait on deck there.
    wait_log(&platform, &a, "job on deck: claimed").await;
    let b = platform.add_worker(&[("LZ_WORKER_SLOTS", "1")]);
    wait_log(&platform, &b, "worker ready").await;
    let before = platform.job(&token, &short).await;
    assert_eq!(
        before["status"], "running",
        "too late for the test: {before}"
    );
    signal(&mut platform, &a, Signal::SIGTERM);
    let s = platform
        .wait(&token, &short, LONG, |j| j["status"] == "succeeded")
        .await;
    let l = platform
        .wait(&token, &long, LONG, |j| j["status"] == "succeeded")
        .await;
    let n = platform
        .wait(&token, &next, LONG, |j| j["status"] == "succeeded")
        .await;
    let (a_id, b_id) = (platform.worker_id(&a), platform.worker_id(&b));
    assert_eq!(
        s["workerId"],
        a_id.as_str(),
        "the short job ended in the grace: {s}"
    );
    assert_eq!(s["attempt"], 1, "{s}");
    assert_eq!(
        l["workerId"],
        b_id.as_str(),
        "the long one was handed back: {l}"
    );
    assert_eq!(l["attempt"], 1, "a hand-back is not a failed attempt: {l}");
    assert_eq!(
        n["workerId"],
        b_id.as_str(),
        "the job on deck was released: {n}"
    );
    assert_eq!(n["attempt"], 1, "a release is not a failed attempt: {n}");
    let log = std::fs::read_to_string(platform.logs.join(format!("{a}.log"))).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains(&next)
            && l.contains("job on deck released")
            && l.contains("Draining")),
        "worker a did not release the job on deck at the SIGTERM"
    );
    let exit = platform.service(&a).child.wait().expect("worker exits");
    assert!(exit.success(), "{exit:?}");
}
