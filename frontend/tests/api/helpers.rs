//! Spawns the real application against the real local stack (see
//! `dev/stack.sh`), with its own topics, database and consumer groups so
//! tests never see each other's data.

use std::time::Duration;

use common::provision::Provisioner;
use common::{JobId, StatusEvent};
use frontend::settings::Settings;
use frontend::startup::Application;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde_json::Value;
use testkit::Namespace;

pub struct TestApp {
    pub address: String,
    pub settings: Settings,
    pub http: reqwest::Client,
}

pub use testkit::unique;

/// Settings for a fresh, isolated namespace on the local stack: the
/// stack's variables, the namespace's, then the test's overrides.
pub fn isolated_settings(extra: &[(&str, &str)]) -> Settings {
    let mut vars = vec![
        ("LZ_HTTP_ADDR", "127.0.0.1:0"),
        ("LZ_HTTP_WORKERS", "2"),
        ("LZ_JOBS_PARTITIONS", "2"),
        ("LZ_STATUS_PARTITIONS", "2"),
    ];
    vars.extend_from_slice(extra);
    Settings::from(&Namespace::new("test").settings_env(&vars)).expect("test settings")
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        Self::spawn_settings(isolated_settings(extra)).await
    }

    pub async fn spawn_settings(settings: Settings) -> Self {
        Provisioner::new()
            .topics(&settings.kafka)
            .within(Duration::from_secs(30))
            .await
            .expect("topics (is the stack up? dev/stack.sh up)");
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
        testkit::tokens::login(&self.http, &self.address, (user, password)).await
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
