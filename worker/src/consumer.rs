//! What the worker's consumer does on rebalances, and the partition state it
//! shares with the delivery loop (`docs/dispatch.md`).
//!
//! Jobs fetched and not started yet are held here, at most as many as the
//! free slots allow plus a small margin; past that the partitions are
//! paused. Offsets are committed from the ledger: the lowest one not done,
//! so a crash re-delivers every job that had not ended. On a revoke the
//! held jobs of the lost partitions are dropped (their new owner gets them
//! from the committed offset) and the ledger commits what it can; running
//! jobs go on here under their claims, and the new owner skips them.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::ledger::{self, Ledger};

#[derive(Default)]
pub struct PartitionState {
    /// Fetched and not started, in order.
    pub held: VecDeque<OwnedMessage>,
    pub ledger: Ledger,
    /// Whether the assigned partitions are paused (no room to hold more).
    pub paused: bool,
    /// Partitions assigned now.
    pub owned: Vec<i32>,
    /// Offsets the committed metadata lists as done beyond the committed
    /// offset, read at assignment: skipped without asking the claims.
    pub done_ahead: HashMap<i32, BTreeSet<i64>>,
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

/// The commits `due` stands for, as one list.
pub fn commit_list(topic: &str, due: &[(i32, i64, String)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (partition, offset, metadata) in due {
        let mut e = tpl.add_partition(topic, *partition);
        if e.set_offset(Offset::Offset(*offset)).is_ok() {
            e.set_metadata(metadata.as_str());
        }
    }
    tpl
}

#[derive(Clone)]
pub struct WorkerContext {
    state: Arc<Mutex<PartitionState>>,
    assigned: watch::Sender<usize>,
    topic: String,
}

impl WorkerContext {
    pub fn new(topic: &str) -> Self {
        Self {
            state: Arc::default(),
            assigned: watch::channel(0).0,
            topic: topic.to_string(),
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

impl ClientContext for WorkerContext {}

/// The done offsets the committed metadata of each assigned partition
/// lists (none on a broker that does not return metadata, like tansu
/// 0.6.0: the claims skip those jobs then).
fn done_ahead(consumer: &BaseConsumer<WorkerContext>, topic: &str) -> HashMap<i32, BTreeSet<i64>> {
    let Ok(committed) = consumer.committed(std::time::Duration::from_secs(5)) else {
        return HashMap::new();
    };
    committed
        .elements_for_topic(topic)
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(base) => Some((e.partition(), ledger::decode(base, e.metadata()))),
            _ => None,
        })
        .filter(|(_, done)| !done.is_empty())
        .collect()
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let gone: Vec<i32> = revoked
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect();
        let due = {
            let mut state = self.state();
            state.held.retain(|m| !gone.contains(&m.partition()));
            let due: Vec<_> = state
                .ledger
                .due()
                .into_iter()
                .filter(|(p, _, _)| gone.contains(p))
                .collect();
            for p in &gone {
                state.ledger.drop_partition(*p);
            }
            due
        };
        if due.is_empty() {
            return;
        }
        if let Err(e) = consumer.commit(&commit_list(&self.topic, &due), CommitMode::Sync) {
            tracing::warn!(error = %e, "partitions revoked and their offsets could not be committed");
        }
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
                let owned: Vec<i32> = consumer
                    .assignment()
                    .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                let done_ahead = done_ahead(consumer, &self.topic);
                tracing::info!(partitions = owned.len(), "partitions assigned");
                self.state().done_ahead = done_ahead;
                self.assigned.send_replace(owned.len());
                self.state().owned = owned;
            }
            Rebalance::Revoke(_) => {
                self.state().owned.clear();
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
