//! MongoDB going away and coming back, with a MongoDB-speaking server of
//! the test's own (the shared one stays up for the other tests).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{isolated_settings, TestApp};

fn secantus_binary() -> PathBuf {
    let cache = std::env::var("LANZADERA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/lanzadera")
        });
    cache.join("secantus-0.5.3-beta.196/bin/secantusd-rs")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Mongo {
    child: Child,
}

impl Mongo {
    async fn start(port: u16, data: &std::path::Path) -> Self {
        let child = Command::new(secantus_binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--log-file-max",
                "1MB",
            ])
            .arg("--storage-path")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("secantusd-rs starts (run dev/install.sh)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mongo did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child }
    }

    /// Stops the server the way an operator would (SIGTERM). A `kill -9`
    /// right after a write can lose it in secantusd-rs even with journaled
    /// writes (seen here), which real MongoDB does not.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn mongodb_down_means_not_ready_and_quick_503s_then_recovery() {
    let port = free_port();
    let data = std::env::temp_dir().join(crate::helpers::unique("lz-mongo"));
    let mut mongo = Mongo::start(port, &data).await;
    let uri = format!("mongodb://127.0.0.1:{port}");
    let settings = isolated_settings(&[("LZ_MONGO_URI", &uri), ("LZ_MONGO_TIMEOUT_MS", "1000")]);
    let app = TestApp::spawn_settings(settings).await;
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
    let _mongo = Mongo::start(port, &data).await;
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
    let _ = std::fs::remove_dir_all(&data);
}
