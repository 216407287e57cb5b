//! The workers' heartbeats as others see them (`docs/dispatch.md` §6, §4):
//! status-topic partition 0 read from its recent tail, without a group, so
//! a reader that starts has a view within one heartbeat interval. The
//! frontend places jobs by it; a worker releases its job on deck by it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::{Heartbeat, StatusRecord, WorkerState};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::settings::KafkaSettings;

/// A heartbeat older than this says nothing about its worker now (the
/// observer's default lease).
pub const FRESH: Duration = Duration::from_secs(6);

/// The last heartbeat of each worker, with when it was read.
#[derive(Clone)]
pub struct Heartbeats {
    seen: Arc<Mutex<HashMap<String, (Instant, Heartbeat)>>>,
}

impl Heartbeats {
    /// Starts the reader thread. `fetch_wait_ms` is how long the broker may
    /// hold an empty fetch: the longer, the less it costs the broker and
    /// the later a heartbeat is seen.
    pub fn start(
        kafka: &KafkaSettings,
        purpose: &str,
        fetch_wait_ms: u64,
    ) -> rdkafka::error::KafkaResult<Self> {
        let consumer = crate::kafka::direct_consumer(
            kafka,
            &crate::kafka::private_group(purpose),
            fetch_wait_ms,
            &[("fetch.queue.backoff.ms", "10")],
        )?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&kafka.status_topic, 0, Offset::OffsetTail(200))?;
        consumer.assign(&tpl)?;
        let beats = Self {
            seen: Arc::default(),
        };
        let seen = beats.seen.clone();
        std::thread::Builder::new()
            .name(purpose.into())
            .spawn(move || read(&consumer, &seen))
            .map_err(|_| {
                rdkafka::error::KafkaError::ClientCreation("cannot start a heartbeat reader".into())
            })?;
        Ok(beats)
    }

    /// `f` of the latest heartbeat of every worker heard within `FRESH`
    /// that is running (not draining), where `f` gives something; the
    /// heartbeats themselves (with their leases) are not copied.
    pub fn live<T>(&self, f: impl Fn(&Heartbeat) -> Option<T>) -> Vec<T> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, (at, _)| at.elapsed() < FRESH * 10);
        seen.values()
            .filter(|(at, b)| at.elapsed() < FRESH && b.state == WorkerState::Running)
            .filter_map(|(_, b)| f(b))
            .collect()
    }
}

fn read(consumer: &BaseConsumer, seen: &Mutex<HashMap<String, (Instant, Heartbeat)>>) {
    loop {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        if let Some(Ok(StatusRecord::Heartbeat(beat))) = message.payload().map(StatusRecord::parse)
        {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(beat.worker_id.clone(), (Instant::now(), beat));
        }
    }
}

/// Slots a worker had free at its heartbeat: neither running a job nor
/// promised to one it holds or to one waiting on its partitions.
pub fn free_slots(beat: &Heartbeat) -> u32 {
    beat.slots.saturating_sub(
        beat.busy
            .saturating_add(beat.held)
            .saturating_add(beat.queued),
    )
}
