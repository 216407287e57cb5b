//! Slots and work stealing on the real stack (`docs/dispatch.md`): jobs of
//! one worker run side by side, and a job queued behind a long one on a busy
//! worker's partition is taken by an idle worker.

mod support;

use std::time::Duration;

use common::JobState;
use support::{files, shell_job, GitServer, Stack};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_four_slots_runs_four_jobs_at_once() {
    let git = GitServer::start();
    let repo = shell_job("sleep 2\necho ok > output/ok.txt\n");
    let url = git.repo("public/slots.git", &files(&repo));
    let stack = Stack::new(1).await;
    let worker = stack.start_worker(&[("LZ_WORKER_SLOTS", "4")]).await;
    // One partition: the four jobs come one after the other and still run
    // together.
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(stack.submit(&url, &[], None).await);
    }
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for id in &ids {
        starts.push(stack.status.running(*id, WAIT).await.at);
    }
    for id in &ids {
        let end = stack.status.terminal(*id, WAIT).await;
        assert_eq!(end.status, JobState::Succeeded, "{end:?}");
        ends.push(end.at);
    }
    let first_end = ends.iter().min().unwrap();
    assert!(
        starts.iter().all(|s| s < first_end),
        "every job started before the first ended: starts {starts:?}, ends {ends:?}"
    );
    let span = (*ends.iter().max().unwrap() - *starts.iter().min().unwrap()).num_milliseconds();
    assert!(span < 3500, "4 × 2 s in {span} ms");
    for id in &ids {
        assert_eq!(stack.text(*id, "output/ok.txt").await, "ok\n");
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_job_behind_a_long_one_is_taken_by_the_idle_worker_every_time() {
    let git = GitServer::start();
    let long = git.repo("public/long.git", &files(&shell_job("sleep 1.5\n")));
    let short = git.repo("public/short.git", &files(&shell_job("true\n")));
    let stack = Stack::new(2).await;
    let mut a = stack.start_worker(&[("LZ_WORKER_SLOTS", "1")]).await;
    let mut b = stack.start_worker(&[("LZ_WORKER_SLOTS", "1")]).await;
    support::wait_for_partitions(&mut [&mut a, &mut b], 2).await;
    let mut waits = Vec::new();
    for round in 0..20 {
        // Both on one partition: its owner takes the long one first.
        let partition = round % 2;
        let long_id = stack.submit_to(Some(partition), &long, &[], None).await;
        stack.status.running(long_id, WAIT).await;
        let submitted = common::timestamp::now();
        let short_id = stack.submit_to(Some(partition), &short, &[], None).await;
        let started = stack.status.running(short_id, WAIT).await;
        let long_end = stack.status.terminal(long_id, WAIT).await;
        assert!(
            started.at < long_end.at,
            "round {round}: the short job waited for the long one"
        );
        waits.push((started.at - submitted).num_milliseconds());
        assert_eq!(
            stack.status.terminal(short_id, WAIT).await.status,
            JobState::Succeeded
        );
    }
    eprintln!("short job submit → running (ms): {waits:?}");
    assert!(
        waits.iter().all(|w| *w < 1200),
        "a free slot elsewhere takes the job within the steal delay: {waits:?}"
    );
    a.stop().await;
    b.stop().await;
}
