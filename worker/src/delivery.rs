//! The worker's side of the jobs topic: receiving, buffering while a job
//! runs, pausing and resuming, and committing. The rebalance callbacks and
//! the state they share with this are in `consumer.rs`.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use crate::consumer::WorkerContext;

/// Where a delivered message sits in its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    pub fn of(message: &OwnedMessage) -> Self {
        Self {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
        }
    }
}

pub struct Delivery {
    pub consumer: StreamConsumer<WorkerContext>,
    pub context: WorkerContext,
    /// See `Application::build`.
    pub poll_tick: Duration,
    pub max_buffered: usize,
}

impl Delivery {
    /// The next job: a buffered one first, else one received within a poll
    /// tick (`None` when nothing came).
    pub async fn next(&self) -> Option<OwnedMessage> {
        if let Some(message) = self.context.state().buffered.pop_front() {
            return Some(message);
        }
        self.receive().await
    }

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

    /// Keeps a message that arrived while a job runs; pauses every
    /// partition once the buffer is full.
    pub fn buffer(&self, message: OwnedMessage) {
        let full = {
            let mut state = self.context.state();
            state.buffered.push_back(message);
            state.buffered.len() >= self.max_buffered && !state.paused
        };
        if full {
            self.pause_all();
        }
    }

    /// After a job: drops the buffer on shutdown (those messages belong to
    /// the group, not to us); otherwise resumes once the buffer is half
    /// empty, so a deep backlog does not pause and resume at every job.
    pub fn after_job(&self, shutting_down: bool) {
        if shutting_down {
            self.context.state().buffered.clear();
            return;
        }
        let resume = {
            let state = self.context.state();
            state.paused && state.buffered.len() <= self.max_buffered / 2
        };
        if resume {
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

    pub fn commit(&self, at: &Position) {
        let mut tpl = TopicPartitionList::new();
        let next = Offset::Offset(at.offset + 1);
        if tpl
            .add_partition_offset(&at.topic, at.partition, next)
            .is_err()
        {
            return;
        }
        // A failed commit only means the job may run again after a
        // rebalance; the recorder keeps its first end.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, partition = at.partition, offset = at.offset, "offset commit failed");
        }
    }

    fn pause_all(&self) {
        tracing::info!("job buffer full: partitions paused");
        self.context.state().paused = true;
        if let Ok(assignment) = self.consumer.assignment() {
            if let Err(e) = self.consumer.pause(&assignment) {
                tracing::warn!(error = %e, "cannot pause partitions");
            }
        }
    }

    fn resume_all(&self) {
        tracing::info!("partitions resumed");
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
