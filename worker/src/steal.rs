//! Work stealing (`docs/dispatch.md` §6): every worker tails the whole jobs
//! topic and keeps an index of the jobs nobody has claimed yet (with their
//! messages, up to a bound), so that a worker with a free slot can take a
//! job that waits on a busy or silent owner; and it reads single messages
//! back by position, for jobs the observer queued again and for index
//! entries past the bound.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::kafka;
use common::settings::KafkaSettings;
use common::{ClaimBook, JobId, JobMessage, Source};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

/// A job seen on the jobs topic and not known to be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    /// Produce time (ms): the index is ordered oldest first.
    at_ms: i64,
    partition: i32,
    offset: i64,
}

/// The jobs topic as a whole, read without a group.
pub struct Tailer {
    inner: Arc<TailInner>,
}

/// Unclaimed jobs whose message the tail keeps, so that taking one costs no
/// read-back (a fresh assignment can wait up to a second for its first
/// fetch). Past this many only the position is kept.
const KEEP_MESSAGES: usize = 4096;

/// An unclaimed job in the index.
struct Entry {
    job: JobId,
    message: Option<JobMessage>,
}

struct TailInner {
    index: Mutex<BTreeMap<Seen, Entry>>,
    last_prune: Mutex<std::time::Instant>,
    consumer: BaseConsumer,
    stop: AtomicBool,
}

impl Tailer {
    /// Assigns every partition of the jobs topic from the workers' group's
    /// committed offsets (everything below them is done) and starts the
    /// reader thread.
    pub fn start(kafka: &KafkaSettings) -> Result<Self, KafkaError> {
        // The workers' group id is only used to read its committed offsets;
        // this consumer never joins it and never commits. Jobs are taken
        // from it only after LZ_STEAL_AFTER_MS, so it can let the broker
        // wait longer between fetches (every fetching client costs the
        // broker CPU, idle or not).
        let consumer = kafka::direct_consumer(kafka, &kafka.workers_group, 200, &[])?;
        let metadata = consumer.fetch_metadata(Some(&kafka.jobs_topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        let mut wanted = TopicPartitionList::new();
        for p in 0..partitions {
            wanted.add_partition(&kafka.jobs_topic, p as i32);
        }
        let committed = consumer.committed_offsets(wanted, Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        for e in committed.elements() {
            let from = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            tpl.add_partition_offset(&kafka.jobs_topic, e.partition(), from)?;
        }
        consumer.assign(&tpl)?;
        let inner = Arc::new(TailInner {
            index: Mutex::new(BTreeMap::new()),
            last_prune: Mutex::new(std::time::Instant::now()),
            consumer,
            stop: AtomicBool::new(false),
        });
        let reader = inner.clone();
        std::thread::Builder::new()
            .name("jobs-tailer".into())
            .spawn(move || reader.read_until_stopped())
            .map_err(|_| KafkaError::ClientCreation("cannot start the tailer thread".into()))?;
        Ok(Self { inner })
    }

    /// The oldest job produced at least `min_age_ms` ago on a partition
    /// not in `own`, that the book says nobody holds and nobody cancelled,
    /// and that is not in `taking`. Entries the book says are taken are
    /// dropped on the way.
    pub fn oldest_free(
        &self,
        book: &ClaimBook,
        own: &HashSet<i32>,
        taking: &HashSet<JobId>,
        now_ms: i64,
        min_age_ms: i64,
    ) -> Option<(JobId, Source, Option<JobMessage>)> {
        let mut index = self.index();
        let mut found = None;
        let mut gone = Vec::new();
        for (seen, entry) in index.iter() {
            if now_ms - seen.at_ms < min_age_ms {
                break;
            }
            if !book.is_free(entry.job) {
                gone.push(*seen);
                continue;
            }
            if own.contains(&seen.partition) || taking.contains(&entry.job) {
                continue;
            }
            found = Some(*seen);
            break;
        }
        for seen in gone {
            index.remove(&seen);
        }
        let seen = found?;
        let entry = index.remove(&seen)?;
        let source = Source {
            partition: seen.partition,
            offset: seen.offset,
        };
        Some((entry.job, source, entry.message))
    }

    /// How many jobs on the `own` partitions the book says nobody holds and
    /// nobody cancelled, leaving out those at `skip`.
    pub fn unclaimed_on(
        &self,
        book: &ClaimBook,
        own: &HashSet<i32>,
        skip: &HashSet<Source>,
    ) -> usize {
        self.index()
            .iter()
            .filter(|(seen, entry)| {
                own.contains(&seen.partition)
                    && book.is_free(entry.job)
                    && !skip.contains(&Source {
                        partition: seen.partition,
                        offset: seen.offset,
                    })
            })
            .count()
    }

    /// Drops the entries of jobs that are taken, so the index stays as
    /// small as the backlog; at most once a second.
    pub fn prune_every_second(&self, book: &ClaimBook) {
        {
            let mut last = self
                .inner
                .last_prune
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < Duration::from_secs(1) {
                return;
            }
            *last = std::time::Instant::now();
        }
        self.index().retain(|_, entry| book.is_free(entry.job));
    }

    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }

    fn index(&self) -> MutexGuard<'_, BTreeMap<Seen, Entry>> {
        self.inner.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TailInner {
    fn read_until_stopped(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "tailing the jobs topic");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(Ok(message)) => {
                    // The key is the job id; a message without one is not a
                    // job anyone can claim.
                    let Some(job) = message
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .and_then(JobId::parse)
                    else {
                        continue;
                    };
                    let seen = Seen {
                        at_ms: message.timestamp().to_millis().unwrap_or(0),
                        partition: message.partition(),
                        offset: message.offset(),
                    };
                    let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                    let message = (index.len() < KEEP_MESSAGES)
                        .then(|| {
                            message
                                .payload()
                                .and_then(|p| serde_json::from_slice(p).ok())
                        })
                        .flatten();
                    index.insert(seen, Entry { job, message });
                }
            }
        }
    }
}

/// Reads single messages of the jobs topic by position.
pub struct ReadBack {
    consumer: Mutex<BaseConsumer>,
    topic: String,
}

impl ReadBack {
    pub fn new(kafka: &KafkaSettings) -> Result<Self, KafkaError> {
        // One message is wanted, not the megabyte of backlog after it
        // (librdkafka still fetches a larger message whole).
        let consumer = kafka::direct_consumer(
            kafka,
            &kafka::private_group("read-back"),
            u64::from(kafka.fetch_wait_max_ms),
            &[
                ("max.partition.fetch.bytes", "16384"),
                ("queued.min.messages", "1"),
                // librdkafka 2.12 holds the next fetch back 1 s once its
                // queue is at `queued.min.messages`: a read-back after the
                // previous one's leftovers waited that second (measured).
                ("fetch.queue.backoff.ms", "10"),
            ],
        )?;
        Ok(Self {
            consumer: Mutex::new(consumer),
            topic: kafka.jobs_topic.clone(),
        })
    }

    /// The message at `source`, or `None` if it cannot be read within
    /// `timeout` (gone with retention, or the broker away). Blocking.
    pub fn read(&self, source: Source, timeout: Duration) -> Option<OwnedMessage> {
        let consumer = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, source.partition, Offset::Offset(source.offset))
            .ok()?;
        consumer.assign(&tpl).ok()?;
        let deadline = std::time::Instant::now() + timeout;
        let mut found = None;
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) if m.partition() == source.partition && m.offset() == source.offset => {
                    found = Some(m.detach());
                    break;
                }
                // A fetch may start at its batch's first record, before
                // the one asked for.
                Some(Ok(m)) if m.offset() < source.offset => {}
                Some(Ok(_)) => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "reading a job message back");
                }
                None => {}
            }
        }
        let _ = consumer.unassign();
        found
    }
}
