//! MongoDB going away and coming back, with a MongoDB-speaking server of
//! the test's own (the shared one stays up for the other tests).

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::servers::Server;

use crate::helpers::{isolated_settings, TestApp};

/// A MongoDB-speaking server of the test's own, and the frontend on it with
/// a 1 s database timeout.
struct PrivateMongo {
    port: u16,
    data: testkit::TempDir,
    server: Server,
    app: TestApp,
}

impl PrivateMongo {
    async fn start(tag: &str) -> Self {
        let port = testkit::free_port();
        let data = testkit::TempDir::new(tag);
        let server = Server::secantus(port, data.path()).await;
        let uri = format!("mongodb://127.0.0.1:{port}");
        let settings =
            isolated_settings(&[("LZ_MONGO_URI", &uri), ("LZ_MONGO_TIMEOUT_MS", "1000")]);
        let app = TestApp::spawn_settings(settings).await;
        Self {
            port,
            data,
            server,
            app,
        }
    }
}

#[tokio::test]
async fn mongodb_down_means_not_ready_and_quick_503s_then_recovery() {
    let PrivateMongo {
        port,
        data,
        server: mut mongo,
        app,
    } = PrivateMongo::start("mongo").await;
    let token = app.alice().await;
    let first = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    assert_eq!(
        app.http
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    mongo.stop();
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["mongodb"], "down");
    assert_eq!(body["checks"]["kafka"], "up");

    let started = Instant::now();
    let refused = app
        .submit(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    assert_eq!(refused.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    assert!(!body["message"].as_str().unwrap().contains("127.0.0.1"));
    assert_eq!(
        app.get(&token, &format!("/api/jobs/{first}"))
            .await
            .status(),
        503
    );

    // Back up: ready again, the old job is still there, new ones go through.
    let _mongo = Server::secantus(port, data.path()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app
        .http
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.job(&token, first).await["status"], "queued");
    let second = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;

    // Only the two accepted jobs ever reached the queue.
    let queued = app
        .read_topic(&app.settings.kafka.jobs_topic, Duration::from_secs(3))
        .await;
    // (In any order: the two may sit on different partitions.)
    let mut ids: Vec<&str> = queued.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut accepted = vec![first.to_string(), second.to_string()];
    accepted.sort_unstable();
    assert_eq!(ids, accepted);
}

/// A hung server (SIGSTOP: connections accepted, nothing answered) gets the
/// same quick 503s as a stopped one: every call is bounded by
/// `LZ_MONGO_TIMEOUT_MS`, and nothing submitted meanwhile is queued.
#[tokio::test]
async fn mongodb_hung_answers_503_within_its_timeout_then_recovers() {
    // (The data folder is kept until the end: dropping it removes it.)
    let PrivateMongo {
        server: mongo,
        app,
        data: _data,
        ..
    } = PrivateMongo::start("mongo-hung").await;
    let token = app.alice().await;
    let first = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;

    mongo.signal("STOP");
    let bound = Duration::from_millis(2500);
    let started = Instant::now();
    let refused = app
        .submit(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    let took = started.elapsed();
    assert_eq!(refused.status(), 503);
    assert!(took < bound, "submit took {took:?}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");

    let started = Instant::now();
    let read = app.get(&token, &format!("/api/jobs/{first}")).await;
    assert_eq!(read.status(), 503);
    assert!(
        started.elapsed() < bound,
        "read took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let list = app.get(&token, "/api/jobs").await;
    assert_eq!(list.status(), 503);
    assert!(
        started.elapsed() < bound,
        "list took {:?}",
        started.elapsed()
    );

    mongo.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.get(&token, &format!("/api/jobs/{first}")).await;
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never answered again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    // The refused submission left no record behind once the server woke.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let listed: serde_json::Value = app.get(&token, "/api/jobs").await.json().await.unwrap();
    let mut ids: Vec<String> = listed["jobs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|j| j["id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    let mut accepted = vec![first.to_string(), second.to_string()];
    accepted.sort_unstable();
    assert_eq!(ids, accepted, "{listed}");
}
