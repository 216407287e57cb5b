//! The worker's side of the jobs topic: receiving, pausing and resuming
//! to hold no more than it has room for, and committing. The rebalance callbacks and
//! the state they share with this are in `consumer.rs`.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

use crate::consumer::{commit_list, WorkerContext};

pub struct Delivery {
    pub consumer: StreamConsumer<WorkerContext>,
    pub context: WorkerContext,
    /// See `Application::build`.
    pub poll_tick: Duration,
    pub topic: String,
}

impl Delivery {
    /// One poll of the consumer, bounded by the poll tick.
    pub async fn receive(&self) -> Option<OwnedMessage> {
        match tokio::time::timeout(self.poll_tick, self.consumer.recv()).await {
            Err(_) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                None
            }
            Ok(Ok(message)) => Some(self.take(message)),
        }
    }

    /// Pauses every partition when `room` is used up, resumes them when
    /// there is room again.
    pub fn fit(&self, room: usize) {
        let (held, paused) = {
            let state = self.context.state();
            (state.held.len(), state.paused)
        };
        if held >= room && !paused {
            self.pause_all();
        } else if held < room && paused {
            self.resume_all();
        }
    }

    /// Copies a delivered message out of the consumer, saying so loudly if
    /// the broker skipped records before it: the jobs they hold were never
    /// delivered here, and committing past them would lose them.
    fn take(&self, message: BorrowedMessage<'_>) -> OwnedMessage {
        let (partition, offset) = (message.partition(), message.offset());
        if let Some(first) = self.context.state().delivered(partition, offset) {
            tracing::error!(
                partition,
                first_skipped = first,
                last_skipped = offset - 1,
                "the broker skipped records of the jobs topic: their jobs were not delivered"
            );
        }
        message.detach()
    }

    /// Commits what the ledger says is due. A failed commit only means
    /// that jobs may be delivered again, where their claims skip them.
    pub fn commit_due(&self, mode: CommitMode) {
        let due = self.context.state().ledger.due();
        if due.is_empty() {
            return;
        }
        if let Err(e) = self.consumer.commit(&commit_list(&self.topic, &due), mode) {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }

    fn pause_all(&self) {
        tracing::debug!("no room for more jobs: partitions paused");
        self.context.state().paused = true;
        if let Ok(assignment) = self.consumer.assignment() {
            if let Err(e) = self.consumer.pause(&assignment) {
                tracing::warn!(error = %e, "cannot pause partitions");
            }
        }
    }

    fn resume_all(&self) {
        tracing::debug!("partitions resumed");
        self.context.state().paused = false;
        if let Ok(assignment) = self.consumer.assignment() {
            if let Err(e) = self.consumer.resume(&assignment) {
                tracing::warn!(error = %e, "cannot resume partitions");
            }
        }
    }

    /// Leaves the group at once, so its partitions move to the other
    /// workers without waiting for the session timeout.
    pub async fn leave(self) {
        self.consumer.unsubscribe();
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        tracing::info!("left the group");
    }
}
