//! Spawns the real application against the real local stack (see
//! `dev/stack.sh`), with its own topics, database and consumer groups so
//! tests never see each other's data.

use std::time::Duration;

use common::settings::Env;
use common::{JobId, StatusEvent};
use frontend::settings::Settings;
use frontend::startup::Application;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde_json::Value;

pub struct TestApp {
    pub address: String,
    pub settings: Settings,
    pub http: reqwest::Client,
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Settings for a fresh, isolated namespace on the local stack.
pub fn isolated_settings(extra: &[(&str, &str)]) -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let jobs = format!("test.jobs.{id}");
    let status = format!("test.status.{id}");
    let ignore = format!("test.ignore.{id}");
    let db = format!("lz_test_{}", &id[..12]);
    let group = format!("test-recorder-{id}");
    let mut pairs: Vec<(&str, &str)> = vec![
        ("LZ_HTTP_ADDR", "127.0.0.1:0"),
        ("LZ_HTTP_WORKERS", "2"),
        ("LZ_JOBS_TOPIC", &jobs),
        ("LZ_STATUS_TOPIC", &status),
        ("LZ_IGNORE_TOPIC", &ignore),
        ("LZ_JOBS_PARTITIONS", "2"),
        ("LZ_STATUS_PARTITIONS", "2"),
        ("LZ_MONGO_DB", &db),
        ("LZ_RECORDER_GROUP", &group),
    ];
    // The process environment (the stack's env file) comes first, then
    // the test's own namespace, then the test's overrides.
    let process: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("LZ_"))
        .collect();
    let mut all: Vec<(&str, &str)> = process
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.append(&mut pairs);
    all.extend_from_slice(extra);
    Settings::from(&Env::from_pairs(all)).expect("test settings")
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        Self::spawn_settings(isolated_settings(extra)).await
    }

    pub async fn spawn_settings(settings: Settings) -> Self {
        common::kafka::ensure_topics(&settings.kafka)
            .await
            .expect("topics");
        let app = Application::build(settings.clone())
            .await
            .expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        Self {
            address,
            settings,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn token(&self, user: &str, password: &str) -> String {
        let response = self
            .http
            .post(self.url("/auth/token"))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), 200, "login of {user}");
        let body: Value = response.json().await.expect("login body");
        body["token"].as_str().expect("token").to_string()
    }

    pub async fn alice(&self) -> String {
        self.token("alice", "alice-pass").await
    }

    pub async fn bob(&self) -> String {
        self.token("bob", "bob-pass").await
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn submit(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/addJob"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Submits a job that must be accepted and returns its id.
    pub async fn submit_ok(&self, token: &str, body: &Value) -> JobId {
        let response = self.submit(token, body).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        JobId::parse(body["jobId"].as_str().expect("jobId")).expect("uuid")
    }

    pub async fn job(&self, token: &str, id: JobId) -> Value {
        let response = self.get(token, &format!("/api/jobs/{id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    pub async fn publish_status(&self, event: &StatusEvent) {
        let producer = common::kafka::producer(&self.settings.kafka).expect("producer");
        common::kafka::produce_json(
            &producer,
            &self.settings.kafka.status_topic,
            &event.job_id.to_string(),
            event,
        )
        .await
        .expect("status event produced");
    }

    /// Polls the job until `check` holds or the deadline passes.
    pub async fn wait_for_job(
        &self,
        token: &str,
        id: JobId,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let job = self.job(token, id).await;
            if check(&job) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job never matched: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads every message of `topic` published so far (within `wait`).
    pub async fn read_topic(&self, topic: &str, wait: Duration) -> Vec<Value> {
        let consumer: StreamConsumer =
            common::kafka::consumer(&self.settings.kafka, &unique("test-reader"), &[])
                .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(m)) = tokio::time::timeout_at(deadline, consumer.recv()).await {
            if let Some(Ok(v)) = m.payload().map(serde_json::from_slice::<Value>) {
                out.push(v);
            }
        }
        out
    }
}
