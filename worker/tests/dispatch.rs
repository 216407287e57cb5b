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

/// Waits until the ignore topic shows `job`'s first attempt claimed, and
/// says by whom.
async fn claimed_by(claims: &common::ignore::IgnoreLog, job: common::JobId) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        if let Some(h) = claims.book().holder(job, 1) {
            return Some(h.worker_id.clone());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A one-slot worker running a 3 s job, with `next` (a script) submitted
/// after it and seen claimed by the worker: on deck.
struct OnDeck {
    _git: GitServer,
    stack: Stack,
    worker: support::InProcessWorker,
    long_id: common::JobId,
    long_start: common::StatusEvent,
    next_id: common::JobId,
}

async fn job_on_deck(name: &str, next: &str) -> OnDeck {
    let git = GitServer::start();
    let long = git.repo(
        &format!("public/{name}-long.git"),
        &files(&shell_job("sleep 3\n")),
    );
    let next = git.repo(&format!("public/{name}-next.git"), &files(&shell_job(next)));
    let stack = Stack::new(1).await;
    let claims = common::ignore::IgnoreLog::start(&stack.kafka, Duration::from_millis(20))
        .await
        .expect("ignore topic");
    let worker = stack.start_worker(&[("LZ_WORKER_SLOTS", "1")]).await;
    let long_id = stack.submit(&long, &[], None).await;
    let long_start = stack.status.running(long_id, WAIT).await;
    let next_id = stack.submit(&next, &[], None).await;
    // Claimed while the only slot is busy: it is on deck.
    assert_eq!(
        claimed_by(&claims, next_id).await.as_deref(),
        Some(worker.id.as_str()),
        "the next job was not claimed while the slot was busy"
    );
    OnDeck {
        _git: git,
        stack,
        worker,
        long_id,
        long_start,
        next_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_job_waits_on_deck_claimed_and_starts_when_the_slot_frees() {
    // `_git` is bound: the server must outlive the jobs.
    let OnDeck {
        _git,
        stack,
        worker,
        long_start,
        next_id,
        ..
    } = job_on_deck("deck", "echo next > output/next.txt\n").await;
    assert!(
        stack.status.events_for(next_id).is_empty(),
        "the job on deck published something while the slot was busy: {:?}",
        stack.status.events_for(next_id)
    );
    let started = stack.status.running(next_id, WAIT).await;
    let after = (started.at - long_start.at).num_milliseconds();
    assert!(
        after >= 2900,
        "the job on deck started {after} ms after the 3 s job, in a slot it did not have"
    );
    let end = stack.status.terminal(next_id, WAIT).await;
    assert_eq!(end.status, JobState::Succeeded, "{end:?}");
    assert_eq!(stack.text(next_id, "output/next.txt").await, "next\n");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_on_deck_ends_cancelled_without_running() {
    // `_git` is bound: the server must outlive the jobs.
    let OnDeck {
        _git,
        stack,
        worker,
        long_id,
        next_id,
        ..
    } = job_on_deck("cancel", "echo ran > output/ran.txt\n").await;
    stack.cancel(next_id).await;
    let end = stack.status.terminal(next_id, WAIT).await;
    assert_eq!(end.status, JobState::Cancelled, "{end:?}");
    let long_end = stack.status.terminal(long_id, WAIT).await;
    assert!(
        end.at < long_end.at,
        "the cancel waited for the slot: {end:?} / {long_end:?}"
    );
    let statuses: Vec<JobState> = stack
        .status
        .events_for(next_id)
        .iter()
        .map(|e| e.status)
        .collect();
    assert!(!statuses.contains(&JobState::Running), "{statuses:?}");
    assert!(
        !stack
            .objects(next_id)
            .await
            .contains(&"output/ran.txt".to_string()),
        "the cancelled job ran"
    );
    worker.stop().await;
}
