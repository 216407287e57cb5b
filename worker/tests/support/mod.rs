//! Test helpers: an isolated namespace on the real stack per test (topics,
//! group, job ids), real git repositories served over smart HTTP, the real
//! worker in-process or as a process, and the user's view of a job (its
//! status events and its objects in S3).
//!
//! The stack is found through the usual variables (`LZ_KAFKA_BROKERS`,
//! `LZ_S3_ENDPOINT`, ...), defaulting to the local stack of `dev/stack.sh`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::kafka;
use common::provision::Provisioner;
use common::settings::{Env, KafkaSettings, S3Settings};
use common::{storage, timestamp, CancelRequest, JobId, JobMessage, Secret, StatusEvent};
use lanzadera_worker::{Application, WorkerSettings};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use s3::Bucket;
use testkit::Namespace;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

#[allow(unused_imports)] // each test binary uses its own part
pub use testkit::repos::{
    files, git, rev_parse, shell_job, write_files, GitServer, TempDir, GIT_PASSWORD as PASSWORD,
    GIT_USER as USER,
};

/// One test's namespace on the stack.
pub struct Stack {
    pub kafka: KafkaSettings,
    pub s3: S3Settings,
    pub bucket: Box<Bucket>,
    producer: FutureProducer,
    pub status: StatusLog,
    pub work: TempDir,
}

impl Stack {
    pub async fn new(jobs_partitions: i32) -> Self {
        let env = Env::from_process();
        let k = Namespace::new("lz-test-")
            .kafka(jobs_partitions)
            .expect("kafka settings");
        let s3 = S3Settings::from_env(&env).expect("s3 settings");
        Provisioner::new()
            .topics(&k)
            .bucket(&s3)
            .within(Duration::from_secs(30))
            .await
            .expect("topics and bucket (is the stack up? dev/stack.sh up)");
        let bucket = storage::bucket(&s3).expect("bucket");
        let producer = kafka::producer(&k).expect("producer");
        let status = StatusLog::start(&k).await;
        Self {
            kafka: k,
            s3,
            bucket,
            producer,
            status,
            work: TempDir::new("work"),
        }
    }

    /// The worker's environment: the same variables production uses.
    pub fn worker_env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let k = &self.kafka;
        let mut vars: Vec<(String, String)> = [
            ("LZ_KAFKA_BROKERS", k.brokers.as_str()),
            ("LZ_JOBS_TOPIC", &k.jobs_topic),
            ("LZ_STATUS_TOPIC", &k.status_topic),
            ("LZ_IGNORE_TOPIC", &k.cancel_topic),
            ("LZ_WORKERS_GROUP", &k.workers_group),
            ("LZ_S3_ENDPOINT", &self.s3.endpoint),
            ("LZ_S3_BUCKET", &self.s3.bucket),
            ("LZ_S3_ACCESS_KEY", self.s3.access_key.expose()),
            ("LZ_S3_SECRET_KEY", self.s3.secret_key.expose()),
            ("LZ_ALLOW_INSECURE_REPOS", "true"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        vars.push(("LZ_JOBS_PARTITIONS".into(), k.jobs_partitions.to_string()));
        vars.push((
            "LZ_STATUS_PARTITIONS".into(),
            k.status_partitions.to_string(),
        ));
        let dir = self
            .work
            .path()
            .join(uuid::Uuid::new_v4().simple().to_string());
        vars.push(("LZ_WORK_DIR".into(), dir.display().to_string()));
        // Diagnostics pass through: LZ_KAFKA_DEBUG=cgrp shows the group's life.
        if let Ok(debug) = std::env::var("LZ_KAFKA_DEBUG") {
            vars.push(("LZ_KAFKA_DEBUG".into(), debug));
        }
        for (name, value) in extra {
            vars.retain(|(n, _)| n != name);
            vars.push((name.to_string(), value.to_string()));
        }
        vars
    }

    /// Starts the worker in this process and waits until it holds
    /// partitions.
    pub async fn start_worker(&self, extra: &[(&str, &str)]) -> InProcessWorker {
        if std::env::var_os("LZ_TEST_LOG").is_some() {
            common::telemetry::init("lanzadera-worker-test");
        }
        let mut vars = self.worker_env(extra);
        // Workers in one process would otherwise share `hostname-pid`.
        if !vars.iter().any(|(n, _)| n == "LZ_WORKER_ID") {
            let id = format!(
                "in-process-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            vars.push(("LZ_WORKER_ID".into(), id));
        }
        let env = Env::from_pairs(vars.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        let settings = WorkerSettings::from_env(&env).expect("worker settings");
        let app = Application::build(settings).await.expect("worker starts");
        let id = app.worker_id().to_string();
        let mut assigned = app.assigned_partitions();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
        });
        tokio::time::timeout(Duration::from_secs(30), assigned.wait_for(|n| *n > 0))
            .await
            .expect("the worker got partitions within 30 s")
            .expect("assignment watch");
        InProcessWorker {
            id,
            assigned,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts the worker binary with `extra` variables; returns once it
    /// logged its partition assignment.
    pub fn spawn_worker_process(&self, extra: &[(&str, &str)]) -> ProcessWorker {
        let vars = self.worker_env(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_lanzadera-worker"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,rdkafka=warn")
            .envs(vars)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the worker binary");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("partitions assigned") {
                    let _ = ready_tx.send(());
                }
                eprintln!("[worker process] {line}");
                sink.lock().expect("log").push(line);
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the worker process got partitions within 30 s");
        ProcessWorker { child, lines }
    }

    pub async fn submit(&self, url: &str, args: &[&str], config: Option<&str>) -> JobId {
        self.submit_to(None, url, args, config).await
    }

    /// `submit` to a chosen partition (or the key's).
    pub async fn submit_to(
        &self,
        partition: Option<i32>,
        url: &str,
        args: &[&str],
        config: Option<&str>,
    ) -> JobId {
        let mut message = job_message(url);
        message.args = args.iter().map(|a| a.to_string()).collect();
        message.config = config.map(str::to_string);
        self.submit_message(partition, &message).await
    }

    /// Queues `message` as it is, on `partition` (or the key's).
    pub async fn submit_message(&self, partition: Option<i32>, message: &JobMessage) -> JobId {
        kafka::produce_json_at(
            &self.producer,
            &self.kafka.jobs_topic,
            partition,
            &message.id.to_string(),
            message,
        )
        .await
        .expect("submit");
        message.id
    }

    pub async fn cancel(&self, id: JobId) {
        let request = CancelRequest {
            job_id: id,
            owner: "test-owner".into(),
            requested_at: timestamp::now(),
        };
        kafka::produce_json(
            &self.producer,
            &self.kafka.cancel_topic,
            &id.to_string(),
            &request,
        )
        .await
        .expect("cancel");
    }

    /// Keys under the job's prefix, relative to it (`output/a.txt`,
    /// `logs/stdout.log`), sorted.
    pub async fn objects(&self, id: JobId) -> Vec<String> {
        let prefix = format!("jobs/{id}/");
        let mut keys: Vec<String> = self
            .bucket
            .list(prefix.clone(), None)
            .await
            .expect("list")
            .into_iter()
            .flat_map(|page| page.contents)
            .map(|o| o.key.trim_start_matches(&prefix).to_string())
            .collect();
        keys.sort();
        keys
    }

    pub async fn text(&self, id: JobId, rel: &str) -> String {
        let data = self
            .bucket
            .get_object(format!("jobs/{id}/{rel}"))
            .await
            .unwrap_or_else(|e| panic!("get {rel}: {e}"));
        String::from_utf8_lossy(data.as_slice()).into_owned()
    }

    pub async fn content_type(&self, id: JobId, rel: &str) -> String {
        let (head, _) = self
            .bucket
            .head_object(format!("jobs/{id}/{rel}"))
            .await
            .expect("head");
        head.content_type.unwrap_or_default()
    }
}

pub struct InProcessWorker {
    pub id: String,
    /// Partitions held, as the worker's rebalance callbacks report them.
    pub assigned: tokio::sync::watch::Receiver<usize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcessWorker {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
        }
    }
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub struct ProcessWorker {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl ProcessWorker {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.lines.lock().expect("log").join("\n")
    }
}

impl Drop for ProcessWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every event on the test's status topic, as the recorder would see them.
#[derive(Clone)]
pub struct StatusLog {
    events: Arc<Mutex<Vec<StatusEvent>>>,
    raw: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
}

impl StatusLog {
    async fn start(k: &KafkaSettings) -> Self {
        let consumer: StreamConsumer =
            kafka::consumer(k, &format!("{}-observer", k.workers_group), &[]).expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..k.status_partitions {
            tpl.add_partition_offset(&k.status_topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let log = Self {
            events: Arc::default(),
            raw: Arc::default(),
            notify: Arc::default(),
        };
        let sink = log.clone();
        tokio::spawn(async move {
            loop {
                match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
                    Ok(Ok(m)) => {
                        let payload = m.payload().unwrap_or_default();
                        sink.raw
                            .lock()
                            .expect("raw")
                            .push(String::from_utf8_lossy(payload).into_owned());
                        if let Ok(event) = serde_json::from_slice::<StatusEvent>(payload) {
                            sink.events.lock().expect("events").push(event);
                            sink.notify.notify_waiters();
                        }
                    }
                    Ok(Err(e)) => eprintln!("status consumer: {e}"),
                    Err(_) => {}
                }
            }
        });
        log
    }

    pub fn events_for(&self, id: JobId) -> Vec<StatusEvent> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|e| e.job_id == id)
            .cloned()
            .collect()
    }

    /// The raw JSON of every event, to look for leaks.
    pub fn raw(&self) -> String {
        self.raw.lock().expect("raw").join("\n")
    }

    /// Waits until `done` holds for the events seen so far.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[StatusEvent]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if done(&self.events.lock().expect("events")) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let events = self.events.lock().expect("events").clone();
                panic!("timed out waiting for {what}; events: {events:#?}");
            }
        }
    }

    /// Waits for the job's terminal event and returns it.
    pub async fn terminal(&self, id: JobId, timeout: Duration) -> StatusEvent {
        self.wait_until(timeout, &format!("the end of job {id}"), |events| {
            events
                .iter()
                .any(|e| e.job_id == id && e.status.is_terminal())
        })
        .await;
        self.events_for(id)
            .into_iter()
            .find(|e| e.status.is_terminal())
            .expect("terminal event")
    }

    pub async fn running(&self, id: JobId, timeout: Duration) -> StatusEvent {
        self.wait_until(timeout, &format!("job {id} to start"), |events| {
            events
                .iter()
                .any(|e| e.job_id == id && e.status == common::JobState::Running)
        })
        .await;
        self.events_for(id)
            .into_iter()
            .find(|e| e.status == common::JobState::Running)
            .expect("running event")
    }
}

/// Waits until each worker holds a partition and together they hold `total`.
pub async fn wait_for_partitions(workers: &mut [&mut InProcessWorker], total: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts: Vec<usize> = workers.iter().map(|w| *w.assigned.borrow()).collect();
        if counts.iter().all(|c| *c > 0) && counts.iter().sum::<usize>() == total {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions never spread: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A job of a fresh id that runs `url` with no args, config, ref or
/// timeout of its own.
pub fn job_message(url: &str) -> JobMessage {
    JobMessage {
        id: JobId::new(),
        owner: "test-owner".into(),
        url: Secret::new(url.to_string()),
        redacted_url: "(redacted)".into(),
        args: Vec::new(),
        config: None,
        git_ref: None,
        timeout_seconds: None,
        secrets: Default::default(),
        submitted_at: timestamp::now(),
    }
}
