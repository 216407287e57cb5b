//! Runs the observer against the real local stack (`dev/stack.sh up`:
//! Kafka on 127.0.0.1:9092, MongoDB on 27017; `LZ_KAFKA_BROKERS` and
//! `LZ_MONGO_URI` point elsewhere). Each test gets its own topics, groups
//! and database, so tests run in parallel without seeing each other. A
//! passing test drops its database; topics stay until the broker restarts
//! (the local one keeps them in memory).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use common::kafka;
use common::provision::Provisioner;
use common::settings::KafkaSettings;
use common::{JobId, JobMessage, JobState, Observation, Secret, StatusEvent};
use mongodb::bson::doc;
use observer::{Application, Settings};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use testkit::Namespace;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const REFRESH_MS: i64 = 500;

pub struct TestObserver {
    pub settings: Settings,
    pub port: u16,
    pub producer: FutureProducer,
    pub db: mongodb::Database,
    pub started_ms: i64,
}

/// Settings for one test: unique names, short windows, and `extra`
/// variables on top.
pub fn settings(extra: &[(&str, &str)]) -> Settings {
    let refresh = REFRESH_MS.to_string();
    let mut vars: Vec<(&str, &str)> = vec![
        ("LZ_JOBS_PARTITIONS", "4"),
        ("LZ_STATUS_PARTITIONS", "2"),
        ("LZ_OBSERVER_ADDR", "127.0.0.1:0"),
        ("REFRESH_RATE", &refresh),
        ("LZ_OBSERVER_GRACE_MS", "200"),
        ("LZ_RATE_WINDOWS", "4"),
    ];
    vars.extend_from_slice(extra);
    Settings::from_env(&Namespace::new("lz-obs-").settings_env(&vars))
        .expect("test settings are valid")
}

impl TestObserver {
    /// Creates the topics, then starts the application as `main` does.
    pub async fn start(settings: Settings) -> Self {
        Provisioner::new()
            .topics(&settings.kafka)
            .within(Duration::from_secs(30))
            .await
            .expect("Kafka reachable (dev/stack.sh up)");
        let producer = kafka::producer(&settings.kafka).expect("producer");
        let db = common::mongo::connect(&settings.mongo)
            .await
            .expect("mongo client");
        let started_ms = Utc::now().timestamp_millis();
        let app = Application::build(settings.clone())
            .await
            .expect("observer builds");
        let port = app.port();
        tokio::spawn(app.run_until(std::future::pending()));
        Self {
            settings,
            port,
            producer,
            db,
            started_ms,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn publish(&self, event: &StatusEvent) {
        kafka::produce_json(
            &self.producer,
            &self.settings.kafka.status_topic,
            &event.job_id.to_string(),
            event,
        )
        .await
        .expect("status event produced");
    }

    /// Puts `n` jobs on the jobs topic, which the (absent) workers' group
    /// has not consumed: a backlog of `n`.
    pub async fn enqueue_jobs(&self, n: usize) {
        enqueue_jobs(&self.producer, &self.settings.kafka, n).await;
    }

    /// Commits the workers' group at the end of every partition, as
    /// workers do once they have run everything: the backlog drops to 0.
    pub fn drain_backlog(&self) {
        let k = &self.settings.kafka;
        let consumer = kafka::consumer(k, &k.workers_group, &[]).expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..k.jobs_partitions {
            let (_, high) = consumer
                .fetch_watermarks(&k.jobs_topic, p, Duration::from_secs(5))
                .expect("watermarks");
            tpl.add_partition_offset(&k.jobs_topic, p, Offset::Offset(high))
                .expect("offset");
        }
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }

    pub async fn observations(&self) -> Vec<Observation> {
        use futures::TryStreamExt;
        self.db
            .collection::<Observation>(common::mongo::OBSERVATIONS)
            .find(doc! {})
            .sort(doc! {"timestamp": 1})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read")
    }

    pub async fn drop_database(&self) {
        let _ = self.db.drop().await;
    }

    pub async fn desired(&self) -> serde_json::Value {
        reqwest::get(self.url("/metrics/desired"))
            .await
            .expect("observer answers")
            .json()
            .await
            .expect("json")
    }
}

/// Puts `n` jobs on the jobs topic, which the (absent) workers' group
/// has not consumed: a backlog of `n`.
pub async fn enqueue_jobs(producer: &FutureProducer, k: &KafkaSettings, n: usize) {
    // All at once, so the burst lands between two of the observer's
    // lag probes rather than across several.
    let messages: Vec<JobMessage> = (0..n)
        .map(|_| JobMessage {
            id: JobId::new(),
            owner: "tester".into(),
            url: Secret::new("https://example.invalid/r.git".into()),
            redacted_url: "https://example.invalid/r.git".into(),
            args: vec![],
            config: None,
            git_ref: None,
            timeout_seconds: None,
            secrets: Default::default(),
            submitted_at: Utc::now(),
        })
        .collect();
    let sends = messages.iter().map(|message| async move {
        let key = message.id.to_string();
        kafka::produce_json(producer, &k.jobs_topic, &key, message).await
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("job produced");
    }
}

pub fn event(status: JobState, at_ms: i64, elapsed: Option<f64>) -> StatusEvent {
    let mut e = StatusEvent::new(JobId::new(), "tester", status);
    e.at = at(at_ms);
    e.elapsed_seconds = elapsed;
    e
}

pub fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().expect("valid time")
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// A tiny HTTP/1.1 server that records every request and answers with the
/// next status from `statuses` (200 once they run out): stands in for a
/// webhook receiver or the Kubernetes API server.
pub struct Recorder {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    pub async fn start(statuses: Vec<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(statuses.into_iter()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let statuses = Arc::clone(&statuses);
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    seen.lock().expect("lock").push(request);
                    let status = statuses.lock().expect("lock").next().unwrap_or(200);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.requests.lock().expect("lock").clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}
