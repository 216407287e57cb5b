//! What the full-system tests do through the API, on top of the shared
//! launcher.

#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::platform::Platform;

/// What the tests do through the API, on top of the shared launcher.
pub trait Client {
    async fn submit(&self, token: &str, body: Value) -> String;
    async fn job(&self, token: &str, id: &str) -> Value;
    async fn wait(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value;
    async fn download(&self, token: &str, url: &str) -> (u16, String);
}

impl Client for Platform {
    async fn submit(&self, token: &str, body: Value) -> String {
        let r = self
            .http
            .post(format!("{}/api/jobs", self.api))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{body}");
        let v: Value = r.json().await.unwrap();
        v["jobId"].as_str().unwrap().to_string()
    }

    async fn job(&self, token: &str, id: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/api/jobs/{id}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn wait(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(token, id).await;
            if check(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} never matched: {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn download(&self, token: &str, url: &str) -> (u16, String) {
        let r = self.http.get(url).bearer_auth(token).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// A repository whose start script sleeps, to hold a worker busy.
pub fn sleeper(repos: &Path, seconds: f64) -> String {
    let dir = repos.join(format!("sleep-{seconds}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("package.json"),
        json!({"name": "sleeper", "scripts": {"start": format!("echo started; sleep {seconds}; echo done > output/done.txt")}}).to_string(),
    )
    .unwrap();
    testkit::repos::commit_all(&dir);
    format!("file://{}", dir.display())
}
