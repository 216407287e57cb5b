//! Delivery guarantees with several workers in one group, on the real
//! stack: each job runs once, a worker killed mid-job loses nothing, a job
//! longer than the poll interval is not handed to a second worker, and
//! SIGTERM finishes or hands back the running job.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{JobId, JobState, StatusEvent};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{files, shell_job, wait_for_partitions, GitServer, ProcessWorker, Stack};

const WAIT: Duration = Duration::from_secs(90);

fn by_state(events: &[StatusEvent], state: JobState) -> Vec<&StatusEvent> {
    events.iter().filter(|e| e.status == state).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_burst_and_each_job_runs_once() {
    let git = GitServer::start();
    let repo = shell_job("sleep 0.3\necho \"$LZ_JOB_ID\" > output/id.txt\n");
    let url = git.repo("public/burst.git", &files(&repo));
    let stack = Stack::new(4).await;
    let mut a = stack.start_worker(&[]).await;
    let mut b = stack.start_worker(&[]).await;
    wait_for_partitions(&mut [&mut a, &mut b], 4).await;

    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(stack.submit(&url, &[], None).await);
    }
    for id in &ids {
        stack.status.terminal(*id, WAIT).await;
    }
    let took = started.elapsed();
    // Late duplicates, if any, would show up within this.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let events = stack.status.events_for(*id);
        let running = by_state(&events, JobState::Running);
        let ends: Vec<_> = events.iter().filter(|e| e.status.is_terminal()).collect();
        assert_eq!(
            running.len(),
            1,
            "job {id} started {} times: {events:#?}",
            running.len()
        );
        assert_eq!(
            ends.len(),
            1,
            "job {id} ended {} times: {events:#?}",
            ends.len()
        );
        assert_eq!(ends[0].status, JobState::Succeeded, "{events:#?}");
        assert_eq!(stack.text(*id, "output/id.txt").await, format!("{id}\n"));
        *per_worker
            .entry(running[0].worker_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    eprintln!("12 jobs over 2 workers in {took:?}: {per_worker:?}");
    assert_eq!(
        per_worker.keys().cloned().collect::<HashSet<_>>(),
        HashSet::from([a.id.clone(), b.id.clone()]),
        "both workers took jobs"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_the_poll_interval_runs_exactly_once() {
    let git = GitServer::start();
    let repo = shell_job("sleep 14\necho done > output/done.txt\n");
    let url = git.repo("public/long.git", &files(&repo));
    let stack = Stack::new(2).await;
    // The shortest interval librdkafka accepts with the 6 s session tansu
    // needs; the job outlives it more than twice.
    let short = [("LZ_MAX_POLL_INTERVAL_MS", "6000")];
    let mut a = stack.start_worker(&short).await;
    let mut b = stack.start_worker(&short).await;
    wait_for_partitions(&mut [&mut a, &mut b], 2).await;
    let mut watches = [a.assigned.clone(), b.assigned.clone()];
    for w in &mut watches {
        w.mark_unchanged();
    }

    let id = stack.submit(&url, &[], None).await;
    let end = stack.status.terminal(id, WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let events = stack.status.events_for(id);
    assert_eq!(end.status, JobState::Succeeded, "{events:#?}");
    assert!(end.elapsed_seconds.is_some_and(|s| s >= 14.0), "{end:?}");
    assert_eq!(by_state(&events, JobState::Running).len(), 1, "{events:#?}");
    assert_eq!(
        events.iter().filter(|e| e.status.is_terminal()).count(),
        1,
        "{events:#?}"
    );
    // No rebalance at all: the busy worker kept polling, so librdkafka never
    // took it out of the group.
    for w in &watches {
        assert!(
            !w.has_changed().unwrap_or(true),
            "a rebalance happened during the job"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// Stops the worker process with SIGTERM and checks it exits cleanly.
async fn sigterm_and_wait(mut worker: ProcessWorker) {
    kill(Pid::from_raw(worker.pid()), Signal::SIGTERM).expect("SIGTERM");
    let exit = tokio::task::spawn_blocking(move || worker.child.wait())
        .await
        .expect("join");
    assert!(exit.expect("wait").success());
}

/// The job (which writes `done by <worker>` to `output/result.txt`) ended
/// once, succeeded, on `worker`.
async fn ends_once_on(stack: &Stack, job: JobId, worker: &str) {
    let end = stack.status.terminal(job, WAIT).await;
    let events = stack.status.events_for(job);
    assert_eq!(end.status, JobState::Succeeded, "{events:#?}");
    assert_eq!(end.worker_id.as_deref(), Some(worker), "{events:#?}");
    assert_eq!(
        events.iter().filter(|e| e.status.is_terminal()).count(),
        1,
        "{events:#?}"
    );
    assert_eq!(
        stack.text(job, "output/result.txt").await,
        format!("done by {worker}\n")
    );
}

/// Submits jobs until one starts on `worker`; returns it and all submitted.
async fn submit_until_one_runs_on(stack: &Stack, url: &str, worker: &str) -> (JobId, Vec<JobId>) {
    let mut all = Vec::new();
    for _ in 0..8 {
        let batch = [
            stack.submit(url, &[], None).await,
            stack.submit(url, &[], None).await,
        ];
        all.extend(batch);
        let seen = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                for id in &all {
                    let on_it = stack.status.events_for(*id).iter().any(|e| {
                        e.status == JobState::Running && e.worker_id.as_deref() == Some(worker)
                    });
                    if on_it {
                        return *id;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if let Ok(id) = seen {
            return (id, all);
        }
    }
    panic!("no job reached worker {worker}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_within_the_grace_period() {
    let git = GitServer::start();
    let repo = shell_job("sleep 3\necho finished > output/result.txt\n");
    let url = git.repo("public/graceful.git", &files(&repo));
    let stack = Stack::new(2).await;
    let mut other = stack.start_worker(&[]).await;
    let mut leaving = stack.spawn_worker_process(&[
        ("LZ_WORKER_ID", "leaving"),
        ("LZ_SHUTDOWN_GRACE_SECS", "30"),
    ]);
    wait_for_partitions(&mut [&mut other], 1).await;

    let (job, all) = submit_until_one_runs_on(&stack, &url, "leaving").await;
    kill(Pid::from_raw(leaving.pid()), Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = leaving.child.wait();
        (status, leaving)
    });
    let end = stack.status.terminal(job, WAIT).await;
    assert_eq!(end.status, JobState::Succeeded, "{end:?}");
    assert_eq!(end.worker_id.as_deref(), Some("leaving"));
    let (exit, leaving) = tokio::time::timeout(Duration::from_secs(30), status)
        .await
        .expect("the worker exits after its job")
        .expect("join");
    assert!(exit.expect("wait").success(), "{}", leaving.log());
    assert!(
        leaving.log().contains("left the group"),
        "{}",
        leaving.log()
    );
    for id in &all {
        let end = stack.status.terminal(*id, WAIT).await;
        assert_eq!(end.status, JobState::Succeeded, "{end:?}");
    }
    let events = stack.status.events_for(job);
    assert_eq!(by_state(&events, JobState::Running).len(), 1, "{events:#?}");
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_the_grace_period_hands_the_job_back_to_another_worker() {
    let git = GitServer::start();
    let repo = shell_job("sleep 6\necho \"done by $LZ_WORKER_ID\" > output/result.txt\n");
    let url = git.repo("public/handback.git", &files(&repo));
    let stack = Stack::new(2).await;
    let mut other = stack.start_worker(&[]).await;
    let leaving =
        stack.spawn_worker_process(&[("LZ_WORKER_ID", "leaving"), ("LZ_SHUTDOWN_GRACE_SECS", "1")]);
    wait_for_partitions(&mut [&mut other], 1).await;

    let (job, _) = submit_until_one_runs_on(&stack, &url, "leaving").await;
    sigterm_and_wait(leaving).await;
    ends_once_on(&stack, job, &other.id).await;
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_behind_a_long_job_pauses_and_resumes_without_loss_or_duplicates() {
    let git = GitServer::start();
    let slow = git.repo("public/slow.git", &files(&shell_job("sleep 3\n")));
    let quick = git.repo(
        "public/quick.git",
        &files(&shell_job("echo ok > output/ok.txt\n")),
    );
    let stack = Stack::new(1).await;
    // One slot holds at most one job more: the backlog pauses the
    // partition during the long job.
    let worker = stack.start_worker(&[("LZ_WORKER_SLOTS", "1")]).await;

    let mut ids = vec![stack.submit(&slow, &[], None).await];
    stack.status.running(ids[0], WAIT).await;
    for _ in 0..8 {
        ids.push(stack.submit(&quick, &[], None).await);
    }
    for id in &ids {
        let end = stack.status.terminal(*id, WAIT).await;
        assert_eq!(end.status, JobState::Succeeded, "{end:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut starts = Vec::new();
    for id in &ids {
        let events = stack.status.events_for(*id);
        let running = by_state(&events, JobState::Running);
        assert_eq!(running.len(), 1, "{events:#?}");
        assert_eq!(
            events.iter().filter(|e| e.status.is_terminal()).count(),
            1,
            "{events:#?}"
        );
        starts.push(running[0].at);
    }
    // One partition: the jobs ran in the order they were submitted.
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_produced_at_once_runs_in_full_through_pauses_and_resumes() {
    let git = GitServer::start();
    let quick = git.repo(
        "public/quick.git",
        &files(&shell_job("echo ok > output/ok.txt\n")),
    );
    let stack = Stack::new(2).await;
    // One slot and one prefetched job pause the partitions during nearly
    // every job, and each resume fetches from the middle of what the
    // producer sent together.
    let worker = stack.start_worker(&[("LZ_WORKER_SLOTS", "1")]).await;

    // Produced concurrently, the records leave in as few requests as the
    // producer's batching allows.
    let ids: Vec<JobId> =
        futures::future::join_all((0..40).map(|_| stack.submit(&quick, &[], None))).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let unfinished: Vec<JobId> = ids
            .iter()
            .copied()
            .filter(|id| {
                !stack
                    .status
                    .events_for(*id)
                    .iter()
                    .any(|e| e.status.is_terminal())
            })
            .collect();
        if unfinished.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} jobs never ended: {unfinished:?}",
            unfinished.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in &ids {
        let events = stack.status.events_for(*id);
        assert_eq!(by_state(&events, JobState::Running).len(), 1, "{events:#?}");
        let ends = by_state(&events, JobState::Succeeded);
        assert_eq!(ends.len(), 1, "{events:#?}");
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_partition_moved_mid_run_is_released_to_another_worker_when_its_worker_stops() {
    let git = GitServer::start();
    let repo = shell_job("sleep 8\necho \"done by $LZ_WORKER_ID\" > output/result.txt\n");
    let url = git.repo("public/moved.git", &files(&repo));
    let stack = Stack::new(2).await;
    let leaving =
        stack.spawn_worker_process(&[("LZ_WORKER_ID", "leaving"), ("LZ_SHUTDOWN_GRACE_SECS", "1")]);
    let job = stack.submit(&url, &[], None).await;
    stack.status.running(job, WAIT).await;

    // A second worker joins: the rebalance may take the running job's
    // partition away from its worker; the job goes on there under its
    // claim, and the newcomer skips the copy it is given.
    let other = stack.start_worker(&[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !leaving.log().contains("partitions assigned partitions=1") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rebalance reached the running job:\n{}",
            leaving.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then its worker is stopped before the job ends: it releases the
    // job, which the other worker takes at the same attempt.
    sigterm_and_wait(leaving).await;
    ends_once_on(&stack, job, &other.id).await;
    other.stop().await;
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_leaves_no_process_of_its_job_alive() {
    let git = GitServer::start();
    // The script's shell, a child, and a grandchild under another shell,
    // each writing its pid where the test can read it.
    let repo = shell_job(
        "echo $$ >> \"$1\"\n\
         sleep 120 &\n\
         echo $! >> \"$1\"\n\
         sh -c 'sleep 120 & echo $! >> \"$0\"; wait' \"$1\" &\n\
         echo $! >> \"$1\"\n\
         wait\n",
    );
    let url = git.repo("public/tree.git", &files(&repo));
    let stack = Stack::new(1).await;
    let worker = stack.spawn_worker_process(&[("LZ_WORKER_SLOTS", "1")]);
    let pids_file = stack.work.path().join("pids.txt");
    let pids_arg = pids_file.display().to_string();
    let job = stack.submit(&url, &[&pids_arg], None).await;
    stack.status.running(job, WAIT).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let pids: Vec<i32> = loop {
        let pids: Vec<i32> = std::fs::read_to_string(&pids_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.len() >= 4 {
            break pids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job never wrote its pids: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");
    kill(Pid::from_raw(worker.pid()), Signal::SIGKILL).expect("kill -9");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|p| alive(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let survivors: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    for p in &survivors {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    assert!(
        survivors.is_empty(),
        "processes of the job outlived its worker: {survivors:?} of {pids:?}"
    );
}
