//! What the worker's consumer does on rebalances, and the partition state it
//! shares with the job loop.
//!
//! One job runs at a time. While it runs the consumer keeps polling, so
//! librdkafka's poll clock never runs out and the group keeps the worker;
//! messages that arrive meanwhile are buffered, and once the buffer is full
//! every assigned partition is paused until it drains. (Pausing at every
//! job would be simpler but costs about a second per job: librdkafka
//! drops what it had fetched and only fetches again at its broker thread's
//! next 1 s wake-up after the resume.) The running job's offset stays
//! uncommitted. If the job's partition is taken away by a rebalance while
//! the job runs, its offset is committed on the way out: the new owner
//! starts after it, so the job is never run twice while this worker still
//! runs it; this worker finishes it and publishes its end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

/// The message whose job is running.
#[derive(Debug, Clone)]
pub struct Running {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Its offset was committed when the partition was revoked: the end of
    /// the job must not commit it again (the new owner may be further).
    pub handed_over: bool,
}

#[derive(Default)]
pub struct PartitionState {
    pub running: Option<Running>,
    /// Messages delivered while a job ran; run next, in order, unless their
    /// partition is revoked first.
    pub buffered: VecDeque<OwnedMessage>,
    /// Whether the assigned partitions are paused (buffer full: see
    /// `WorkerSettings::max_buffered_jobs`).
    pub paused: bool,
    /// The offset each partition should deliver next, since the last
    /// rebalance: a delivery past it means the broker skipped records.
    next_offsets: HashMap<i32, i64>,
}

impl PartitionState {
    /// Notes a delivery from `partition`; answers the first offset the
    /// broker skipped, if it skipped any. The jobs topic has no
    /// transactions and no compaction, so its offsets have no holes of
    /// their own.
    pub fn delivered(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let expected = self.next_offsets.insert(partition, offset + 1);
        expected.filter(|&next| offset > next)
    }
}

#[derive(Clone)]
pub struct WorkerContext {
    state: Arc<Mutex<PartitionState>>,
    assigned: watch::Sender<usize>,
}

impl WorkerContext {
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            assigned: watch::channel(0).0,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, PartitionState> {
        // The state stays consistent across a panic: each field is replaced
        // whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many partitions this worker holds, for tests and readiness.
    pub fn assigned(&self) -> watch::Receiver<usize> {
        self.assigned.subscribe()
    }
}

impl Default for WorkerContext {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientContext for WorkerContext {}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let gone = |topic: &str, partition: i32| revoked.find_partition(topic, partition).is_some();
        let mut state = self.state();
        state.buffered.retain(|m| !gone(m.topic(), m.partition()));
        let Some(running) = state.running.as_mut() else {
            return;
        };
        if running.handed_over || !gone(&running.topic, running.partition) {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        let next = Offset::Offset(running.offset + 1);
        if tpl
            .add_partition_offset(&running.topic, running.partition, next)
            .is_ok()
        {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => tracing::info!(
                    partition = running.partition,
                    offset = running.offset,
                    "partition revoked while its job runs: offset committed, the job goes on here"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    partition = running.partition,
                    "partition revoked while its job runs and its offset could not be committed"
                ),
            }
        }
        running.handed_over = true;
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // A partition that comes back starts from its committed offset,
        // whatever this worker saw of it before.
        self.state().next_offsets.clear();
        match rebalance {
            Rebalance::Assign(tpl) => {
                if self.state().paused {
                    if let Err(e) = consumer.pause(tpl) {
                        tracing::warn!(error = %e, "cannot pause newly assigned partitions");
                    }
                }
                let count = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                tracing::info!(partitions = count, "partitions assigned");
                self.assigned.send_replace(count);
            }
            Rebalance::Revoke(_) => {
                self.assigned.send_replace(0);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_past_the_next_offset_is_a_skip() {
        let mut state = PartitionState::default();
        assert_eq!(
            state.delivered(0, 40),
            None,
            "the first delivery sets the start"
        );
        assert_eq!(state.delivered(0, 41), None);
        assert_eq!(state.delivered(1, 7), None, "partitions are counted apart");
        assert_eq!(state.delivered(0, 45), Some(42));
        assert_eq!(state.delivered(0, 46), None);
        assert_eq!(state.delivered(1, 8), None);
    }

    #[test]
    fn a_redelivery_is_not_a_skip() {
        let mut state = PartitionState::default();
        state.delivered(0, 10);
        state.delivered(0, 11);
        assert_eq!(state.delivered(0, 9), None);
        assert_eq!(state.delivered(0, 10), None);
    }
}
