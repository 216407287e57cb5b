//! Cancel requests from the ignore topic. Every worker reads the whole topic
//! (partition 0 assigned directly, no consumer group, from the earliest
//! retained offset) into a set, so a request reaches the worker that holds
//! the job whichever it is, including requests published before it started.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::settings::KafkaSettings;
use common::{CancelRequest, JobId};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum CancelsError {
    #[error("cancel topic: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the cancel topic was not read up to its end within {0:?}")]
    Lagging(Duration),
    #[error("cannot start the cancel reader thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A handle on the set of cancelled jobs; cheap to clone.
#[derive(Clone)]
pub struct Cancels {
    inner: Arc<Inner>,
}

struct Inner {
    cancelled: Mutex<HashSet<JobId>>,
    /// Bumped on every new request, to wake jobs waiting for their cancel.
    version: watch::Sender<u64>,
    /// The next offset the reader will read: the set holds every request
    /// below it.
    position: watch::Sender<i64>,
    consumer: BaseConsumer,
    topic: String,
    stop: AtomicBool,
}

impl Cancels {
    /// Starts the reader thread and waits until it has read every request
    /// already on the topic, so that no job starts before the worker knows
    /// of the requests made before it started.
    pub async fn start(kafka: &KafkaSettings) -> Result<Self, CancelsError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            // librdkafka wants a group id even for a direct assignment; this
            // one is never joined and nothing is committed in it, so every
            // worker reads everything.
            .set(
                "group.id",
                format!("lanzadera-cancel-reader-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", kafka.fetch_wait_max_ms.to_string())
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&kafka.cancel_topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let cancels = Self {
            inner: Arc::new(Inner {
                cancelled: Mutex::new(HashSet::new()),
                version: watch::channel(0).0,
                position: watch::channel(0).0,
                consumer,
                topic: kafka.cancel_topic.clone(),
                stop: AtomicBool::new(false),
            }),
        };
        let reader = cancels.inner.clone();
        std::thread::Builder::new()
            .name("cancel-reader".into())
            .spawn(move || reader.read_until_stopped())?;
        cancels.caught_up(Duration::from_secs(30)).await?;
        Ok(cancels)
    }

    /// Waits until every request acknowledged by the broker so far has been
    /// read. Called before each launch: a request published before the
    /// worker took the job is then always honoured. Costs one round trip.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), CancelsError> {
        let inner = self.inner.clone();
        let (low, high) = tokio::task::spawn_blocking(move || {
            inner
                .consumer
                .fetch_watermarks(&inner.topic, 0, Duration::from_secs(5))
        })
        .await
        .map_err(|_| CancelsError::Lagging(timeout))??;
        let mut position = self.inner.position.subscribe();
        // `low >= high`: nothing retained, nothing to read.
        let done = position.wait_for(|p| *p >= high || low >= high);
        let result = tokio::time::timeout(timeout, done).await;
        match result {
            Ok(_) => Ok(()),
            Err(_) => Err(CancelsError::Lagging(timeout)),
        }
    }

    pub fn is_cancelled(&self, job: JobId) -> bool {
        self.lock().contains(&job)
    }

    /// Resolves once `job` is cancelled.
    pub async fn wait_for(&self, job: JobId) {
        let mut version = self.inner.version.subscribe();
        loop {
            if self.is_cancelled(job) {
                return;
            }
            if version.changed().await.is_err() {
                // The reader is gone (shutdown): no cancel will come.
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<JobId>> {
        // A poisoned set is still a valid set: insertions are atomic.
        self.inner
            .cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn read_until_stopped(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading cancel requests");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(Ok(message)) => {
                    let request = message
                        .payload()
                        .map(serde_json::from_slice::<CancelRequest>);
                    match request {
                        Some(Ok(request)) => {
                            tracing::info!(job_id = %request.job_id, "cancel request");
                            self.cancelled
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(request.job_id);
                            self.version.send_modify(|v| *v += 1);
                        }
                        _ => tracing::warn!(
                            offset = message.offset(),
                            "ignoring a malformed cancel request"
                        ),
                    }
                    self.position.send_replace(message.offset() + 1);
                }
            }
        }
    }
}
