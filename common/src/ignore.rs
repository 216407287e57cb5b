//! The ignore topic read in full: cancel requests, claims, releases and
//! re-queues applied to one `ClaimBook` in the topic's order
//! (`docs/dispatch.md`). Partition 0 is assigned directly (no consumer
//! group) from the earliest retained offset, so every reader sees every
//! record, including those published before it started.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use domain::dispatch::Applied;
use domain::{ClaimBook, IgnoreRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{broadcast, watch};

use crate::settings::KafkaSettings;

#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("ignore topic: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the ignore topic was not read up to offset {0} within {1:?}")]
    Lagging(i64, Duration),
    #[error("cannot start the ignore-topic reader thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A handle on the book; cheap to clone.
#[derive(Clone)]
pub struct IgnoreLog {
    inner: Arc<Inner>,
}

struct Inner {
    book: Mutex<ClaimBook>,
    /// Every change the book took, for tasks that wait on one (a cancel,
    /// a claim's result, a re-queue that supersedes a run).
    changes: broadcast::Sender<Applied>,
    /// The next offset the reader will read: the book holds every record
    /// below it.
    position: watch::Sender<i64>,
    consumer: BaseConsumer,
    topic: String,
    stop: AtomicBool,
}

impl IgnoreLog {
    /// Starts the reader thread and waits until it has read every record
    /// already on the topic. `fetch_wait` is the broker's wait for new
    /// records (`fetch.wait.max.ms`): short where a claim waits on it, longer
    /// where a fraction of a second does not matter, since every fetching
    /// client costs the broker CPU even when there is nothing to fetch.
    pub async fn start(kafka: &KafkaSettings, fetch_wait: Duration) -> Result<Self, IgnoreError> {
        let consumer = crate::kafka::direct_consumer(
            kafka,
            &crate::kafka::private_group("ignore-reader"),
            fetch_wait.as_millis() as u64,
            &[],
        )?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&kafka.cancel_topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let log = Self {
            inner: Arc::new(Inner {
                book: Mutex::new(ClaimBook::default()),
                changes: broadcast::channel(1024).0,
                position: watch::channel(0).0,
                consumer,
                topic: kafka.cancel_topic.clone(),
                stop: AtomicBool::new(false),
            }),
        };
        let reader = log.inner.clone();
        std::thread::Builder::new()
            .name("ignore-reader".into())
            .spawn(move || reader.read_until_stopped())?;
        log.caught_up(Duration::from_secs(30)).await?;
        Ok(log)
    }

    /// Waits until every record acknowledged by the broker so far has been
    /// read. Costs one round trip.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), IgnoreError> {
        let inner = self.inner.clone();
        let (low, high) = tokio::task::spawn_blocking(move || {
            inner
                .consumer
                .fetch_watermarks(&inner.topic, 0, Duration::from_secs(5))
        })
        .await
        .map_err(|_| IgnoreError::Lagging(0, timeout))??;
        if low >= high {
            return Ok(());
        }
        self.read_past(high - 1, timeout).await
    }

    /// Waits until the record at `offset` has been applied.
    pub async fn read_past(&self, offset: i64, timeout: Duration) -> Result<(), IgnoreError> {
        let mut position = self.inner.position.subscribe();
        let read = matches!(
            tokio::time::timeout(timeout, position.wait_for(|p| *p > offset)).await,
            Ok(Ok(_))
        );
        if read {
            Ok(())
        } else {
            Err(IgnoreError::Lagging(offset, timeout))
        }
    }

    /// The book as read so far.
    pub fn book(&self) -> MutexGuard<'_, ClaimBook> {
        // A poisoned book is still consistent: each record is applied whole.
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes from now on.
    pub fn changes(&self) -> broadcast::Receiver<Applied> {
        self.inner.changes.subscribe()
    }

    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}

impl Inner {
    fn read_until_stopped(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading the ignore topic");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(Ok(message)) => {
                    match message.payload().map(IgnoreRecord::parse) {
                        Some(Ok(record)) => {
                            if let IgnoreRecord::Cancel(c) = &record {
                                tracing::info!(job_id = %c.job_id, "cancel request");
                            }
                            let applied = self
                                .book
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .apply(&record);
                            // Nobody listening is fine: waiters look at the
                            // book before they wait.
                            let _ = self.changes.send(applied);
                        }
                        _ => tracing::warn!(
                            offset = message.offset(),
                            "ignoring an unreadable record of the ignore topic"
                        ),
                    }
                    self.position.send_replace(message.offset() + 1);
                }
            }
        }
    }
}
