//! Latency and throughput of the worker on the real stack. Ignored by
//! default; run with
//! `cargo test -p lanzadera-worker --release --test bench -- --ignored --nocapture`.
//! Numbers go to docs/worker.md.

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{JobId, JobState};
use support::{GitServer, Stack};

const WAIT: Duration = Duration::from_secs(120);

fn ms(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (values.len() as f64 - 1.0)).round() as usize;
    values[rank]
}

/// A trivial job: one line into output/.
fn trivial_repo(git: &GitServer) -> String {
    git.repo(
        "public/trivial.git",
        &[(
            "package.json",
            r#"{"name":"trivial","scripts":{"start":"echo \"$LZ_JOB_ID\" > output/out.txt"}}"#,
        )],
    )
}

async fn one_by_one(stack: &Stack, url: &str, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut to_running = Vec::new();
    let mut to_end = Vec::new();
    for _ in 0..n {
        let submitted = common::timestamp::now();
        let id = stack.submit(url, &[], None).await;
        let end = stack.status.terminal(id, WAIT).await;
        assert_eq!(end.status, JobState::Succeeded, "{end:?}");
        let running = stack.status.running(id, WAIT).await;
        to_running.push(ms(submitted, running.at));
        to_end.push(ms(submitted, end.at));
    }
    (to_running, to_end)
}

async fn burst(stack: &Stack, url: &str, n: usize) -> f64 {
    let started = common::timestamp::now();
    let mut ids: Vec<JobId> = Vec::new();
    for _ in 0..n {
        ids.push(stack.submit(url, &[], None).await);
    }
    let mut last = started;
    for id in ids {
        let end = stack.status.terminal(id, WAIT).await;
        assert_eq!(end.status, JobState::Succeeded, "{end:?}");
        last = last.max(end.at);
    }
    n as f64 / (ms(started, last) / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on demand"]
async fn bench_latency_and_throughput() {
    let git = GitServer::start();
    let url = trivial_repo(&git);

    let stack = Stack::new(4).await;
    let worker = stack.start_worker(&[]).await;
    one_by_one(&stack, &url, 30).await; // warm-up
    let (mut running, mut end) = one_by_one(&stack, &url, 30).await;
    println!(
        "idle worker, 30 trivial jobs one by one: submit->running p50 {:.0} ms p95 {:.0} ms; submit->succeeded p50 {:.0} ms p95 {:.0} ms",
        percentile(&mut running, 50.0),
        percentile(&mut running, 95.0),
        percentile(&mut end, 50.0),
        percentile(&mut end, 95.0),
    );
    // The same repository over file://, to separate the test git server's
    // cost (Python spawning git http-backend per request) from the worker's.
    let local = format!(
        "file://{}",
        git.root.path().join("public/trivial.git").display()
    );
    let (mut running, mut end) = one_by_one(&stack, &local, 30).await;
    println!(
        "same over file://: submit->running p50 {:.0} ms p95 {:.0} ms; submit->succeeded p50 {:.0} ms p95 {:.0} ms",
        percentile(&mut running, 50.0),
        percentile(&mut running, 95.0),
        percentile(&mut end, 50.0),
        percentile(&mut end, 95.0),
    );
    let local_rate = burst(&stack, &local, 40).await;
    println!("1 worker, burst of 40 trivial jobs over file://: {local_rate:.1} jobs/s");
    let one = burst(&stack, &url, 40).await;
    println!("1 worker, burst of 40 trivial jobs: {one:.1} jobs/s");
    let second = stack.start_worker(&[]).await;
    // Let the group settle on the new member before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let two = burst(&stack, &url, 40).await;
    println!("2 workers, burst of 40 trivial jobs: {two:.1} jobs/s");
    worker.stop().await;
    second.stop().await;
}
