//! The platform as a user meets it: the frontend, two workers and the
//! observer run as separate processes on the real local stack, and the test
//! talks only HTTP to the API with real tokens, like a client.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{sleeper, Client};
use testkit::platform::Platform;
use testkit::tokens::{ALICE, BOB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_run_download_cancel_and_see_the_load() {
    let mut platform = Platform::start(2, &[]).await;
    let alice = platform.token(ALICE).await;
    let bob = platform.token(BOB).await;
    let long = Duration::from_secs(90);

    // Alice: the Node hello job and the numeric job; Bob: nested outputs.
    let hello = platform
        .submit(
            &alice,
            json!({"url": platform.repo("hello"), "args": "'Ada Lovelace'", "ref": "main"}),
        )
        .await;
    let roots = platform
        .submit(
            &alice,
            json!({"url": platform.repo("roots"), "args": ["--tol", "1e-12", "--label", "cubic"],
                   "config": {"coefficients": [1, 0, -7, 6], "interval": [-4, 4]}}),
        )
        .await;
    let nested = platform
        .submit(
            &bob,
            json!({"url": platform.repo("nested"), "args": "run-7 extra"}),
        )
        .await;

    let job = platform
        .wait(&alice, &hello, long, |j| j["status"] == "succeeded")
        .await;
    assert_eq!(job["exitCode"], 0);
    // The branch asked for, and the commit it ran, as the worker resolved it.
    assert_eq!(job["ref"], "main");
    let head = testkit::repos::rev_parse(&platform.repos.join("hello"), "main");
    assert_eq!(job["commit"], head.as_str(), "{job}");
    let files: Vec<&str> = job["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.contains(&"greeting.txt"), "{job}");
    let url = job["outputFiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u.as_str().unwrap().ends_with("greeting.txt"))
        .unwrap();
    assert_eq!(
        platform.download(&alice, url.as_str().unwrap()).await,
        (200, "Hello, Ada Lovelace!\n".into())
    );
    let (status, stdout) = platform
        .download(&alice, job["logs"]["stdout"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    assert!(stdout.contains("Hello, Ada Lovelace!"), "{stdout}");
    // Bob cannot fetch Alice's file even with the exact link.
    assert_eq!(platform.download(&bob, url.as_str().unwrap()).await.0, 404);

    let job = platform
        .wait(&alice, &roots, long, |j| j["status"] == "succeeded")
        .await;
    let csv_url = job["outputFiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u.as_str().unwrap().ends_with("roots.csv"))
        .unwrap();
    let (_, csv) = platform.download(&alice, csv_url.as_str().unwrap()).await;
    let roots_found: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(roots_found, vec!["-3", "1", "2"], "{csv}");

    let job = platform
        .wait(&bob, &nested, long, |j| j["status"] == "succeeded")
        .await;
    let mut files: Vec<String> = job["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "run-7/logs/notes.txt",
            "run-7/tables/table-1.csv",
            "run-7/tables/table-2.csv",
            "run-7/tables/table-3.csv"
        ]
    );
    let notes = job["outputFiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u.as_str().unwrap().ends_with("notes.txt"))
        .unwrap();
    assert_eq!(
        platform.download(&bob, notes.as_str().unwrap()).await.1,
        "run run-7 with 2 argument(s)\n"
    );

    // Both workers busy with sleepers; a further job waits in the queue and
    // is deleted there: it never runs. A job goes to the worker that owns
    // its partition (key = random id), so sleepers are added until two run
    // at once — two may well share one worker's partitions.
    let sleep_url = sleeper(&platform.repos, 60.0);
    let users = [&alice, &bob];
    let mut sleepers: Vec<(&String, String)> = Vec::new();
    let mut running = 0;
    for i in 0..8 {
        let token = users[i % 2];
        sleepers.push((
            token,
            platform.submit(token, json!({"url": sleep_url})).await,
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            running = 0;
            for (token, id) in &sleepers {
                if platform.job(token, id).await["status"] == "running" {
                    running += 1;
                }
            }
            if running >= 2 || (running == 1 && sleepers.len() == 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if running >= 2 {
            break;
        }
    }
    assert_eq!(running, 2, "two workers run sleepers at once");
    let queued = platform
        .submit(&alice, json!({"url": platform.repo("hello")}))
        .await;
    let r = platform
        .http
        .delete(format!("{}/api/jobs/{queued}", platform.api))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Cancel the sleepers: running ones have their process groups stopped
    // (202, then `cancelled`), queued ones are cancelled at once (200).
    // Queued ones first, while both workers are still busy.
    let mut states = Vec::new();
    for (token, id) in &sleepers {
        states.push((
            platform.job(token, id).await["status"] == "running",
            token,
            id,
        ));
    }
    states.sort_by_key(|(running, _, _)| *running);
    for (was_running, token, id) in states {
        let r = platform
            .http
            .delete(format!("{}/api/jobs/{id}", platform.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let expected = if was_running { 202 } else { 200 };
        assert_eq!(r.status(), expected, "{}", platform.job(token, id).await);
        let job = platform
            .wait(token, id, Duration::from_secs(30), |j| {
                j["status"] == "cancelled"
            })
            .await;
        assert!(
            job["files"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f != "done.txt"),
            "{job}"
        );
    }
    // The freed workers skip the deleted job; give them time to reach it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let job = platform.job(&alice, &queued).await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(
        job["startedAt"],
        Value::Null,
        "a deleted queued job never runs: {job}"
    );

    // The observer's windows show the work.
    let load: Vec<Value> = platform
        .http
        .get(format!("{}/health/load", platform.api))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!load.is_empty() && load.len() <= 10, "{load:?}");
    assert!(load
        .windows(2)
        .all(|w| w[0]["timestamp"].as_i64() > w[1]["timestamp"].as_i64()));
    let since_start: f64 = load
        .iter()
        .map(|o| o["avgRateOfFinished"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(
        since_start >= 1.0,
        "the last windows saw the cancellations: {load:?}"
    );
    platform.assert_running();
}

/// Receives the observer's webhook calls: a minimal HTTP/1.1 server that
/// records each JSON body with the time it arrived.
async fn webhook_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(Instant, Value)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/scale", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    if let Ok(body) = serde_json::from_slice(&buf[end + 4..end + 4 + length]) {
                        let _ = tx.send((Instant::now(), body));
                    }
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_scales_up_within_two_windows_and_back_down_after_it_drains() {
    let (hook, mut calls) = webhook_receiver().await;
    let platform = Platform::start(
        1,
        &[
            ("LZ_ACTUATOR", "webhook"),
            ("LZ_WEBHOOK_URL", &hook),
            ("LZ_MIN_WORKERS", "1"),
            ("LZ_MAX_WORKERS", "4"),
            ("LZ_SCALE_DOWN_STABILISATION_MS", "5000"),
            ("LZ_TARGET_DRAIN_SECONDS", "10"),
        ],
    )
    .await;
    let alice = platform.token(ALICE).await;
    let url = sleeper(&platform.repos, 0.5);
    // Let the idle platform settle on one worker first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    while calls.try_recv().is_ok() {}

    let burst = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(platform.submit(&alice, json!({"url": url})).await);
    }
    let window = Duration::from_millis(1000);
    let (at, up) = loop {
        let (at, body) = tokio::time::timeout(Duration::from_secs(20), calls.recv())
            .await
            .expect("a scale decision reaches the webhook")
            .expect("receiver open");
        if body["desiredReplicas"].as_u64().unwrap_or(0) > 1 {
            break (at, body);
        }
    };
    let reaction = at - burst;
    println!("burst -> scale-up webhook: {reaction:?}, decision {up}");
    // One window to close (plus its 1 s grace for late events), one to decide.
    assert!(
        reaction <= 2 * window + Duration::from_millis(1500),
        "took {reaction:?}"
    );
    assert!(up["observation"]["backlog"].as_u64().unwrap() > 0, "{up}");
    assert!(up["reason"].as_str().is_some_and(|r| !r.is_empty()));

    // Scale-down comes once the rest of the backlog can drain within the
    // target time, and only after the stabilisation window (5 s) since the
    // last higher recommendation.
    let (down_at, down) = loop {
        let (at, body) = tokio::time::timeout(Duration::from_secs(30), calls.recv())
            .await
            .expect("a scale-down decision after the stabilisation window")
            .expect("receiver open");
        if body["desiredReplicas"] == 1 {
            break (at, body);
        }
    };
    println!(
        "scale-up -> scale-down webhook: {:?}, decision {down}",
        down_at - at
    );
    assert!(
        down_at - at >= Duration::from_secs(5),
        "not before the stabilisation window"
    );
    for id in &ids {
        platform
            .wait(&alice, id, Duration::from_secs(120), |j| {
                j["status"] == "succeeded"
            })
            .await;
    }
    println!("30 jobs drained by one worker in {:?}", burst.elapsed());

    let load: Vec<Value> = platform
        .http
        .get(format!("{}/health/load", platform.api))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(load.len(), 10);
}
