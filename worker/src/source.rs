//! Where a worker's jobs come from (`docs/dispatch.md` §10). The delivery
//! loop only talks to `JobSource`; `KafkaSource` is the consumer group with
//! its ledger and work stealing. A share-group consumer (KIP-932) would be
//! another source: the broker spreads records itself, so `elsewhere`
//! answers nothing, and claims and leases stay as they are.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use common::{ClaimBook, JobId, JobMessage, Source};
use rdkafka::consumer::CommitMode;
use rdkafka::message::{Message, OwnedMessage};

use crate::delivery::Delivery;
use crate::steal::{ReadBack, Tailer};

/// A job delivered to this worker and not started yet.
pub struct Held {
    pub source: Source,
    /// `None` when the message does not parse: nothing can run it.
    pub job: Option<JobMessage>,
}

pub trait JobSource: Send + Sync + 'static {
    /// Waits up to one poll tick for a delivery and holds it.
    fn receive(&self) -> impl Future<Output = ()> + Send;
    /// Keeps what is held within `room` (pausing deliveries past it).
    fn fit(&self, room: usize);
    /// The oldest held job.
    fn next_held(&self) -> Option<Held>;
    /// Drops every held job; they are not done, so they are delivered again
    /// (to whoever holds their partitions next).
    fn drop_held(&self);
    fn held(&self) -> usize;
    /// The job at `source` that this source delivered is done (ended or
    /// skipped): never delivered again.
    fn done(&self, source: Source);
    /// A job waiting elsewhere that a free slot here should take: the
    /// oldest one left unclaimed for `min_age` on someone else's partition,
    /// with its message when the source has it at hand.
    fn elsewhere(
        &self,
        book: &ClaimBook,
        taking: &HashSet<JobId>,
        now_ms: i64,
        min_age: Duration,
    ) -> Option<(JobId, Source, Option<JobMessage>)>;
    /// Jobs on this worker's partitions that nobody has claimed and that
    /// it does not hold yet: its backlog, which its heartbeat reports so
    /// that placement does not pile new jobs behind it.
    fn queued(&self, book: &ClaimBook) -> usize;
    /// Reads a job back from its position (blocking).
    fn read(&self, source: Source, timeout: Duration) -> Option<JobMessage>;
    /// Makes what is done durable; `wait` for the broker's answer.
    fn commit(&self, wait: bool);
    /// What this worker owns, for its heartbeat.
    fn partitions(&self) -> Vec<i32>;
    /// Leaves: commits and hands everything not done back.
    fn close(self) -> impl Future<Output = ()> + Send;
}

pub struct KafkaSource {
    pub delivery: Delivery,
    pub tailer: Tailer,
    pub read_back: ReadBack,
}

impl JobSource for KafkaSource {
    async fn receive(&self) {
        let Some(message) = self.delivery.receive().await else {
            return;
        };
        let (partition, offset) = (message.partition(), message.offset());
        let mut state = self.delivery.context.state();
        state.ledger.open(partition, offset);
        let done = state
            .done_ahead
            .get_mut(&partition)
            .is_some_and(|d| d.remove(&offset));
        if done {
            tracing::debug!(
                partition,
                offset,
                "skipping a job the committed metadata lists as done"
            );
            state.ledger.done(partition, offset);
        } else {
            state.held.push_back(message);
        }
    }

    fn fit(&self, room: usize) {
        self.delivery.fit(room);
    }

    fn next_held(&self) -> Option<Held> {
        let message = self.delivery.context.state().held.pop_front()?;
        Some(Held {
            source: source_of(&message),
            job: parse(&message),
        })
    }

    fn drop_held(&self) {
        self.delivery.context.state().held.clear();
    }

    fn held(&self) -> usize {
        self.delivery.context.state().held.len()
    }

    fn done(&self, source: Source) {
        self.delivery
            .context
            .state()
            .ledger
            .done(source.partition, source.offset);
    }

    fn elsewhere(
        &self,
        book: &ClaimBook,
        taking: &HashSet<JobId>,
        now_ms: i64,
        min_age: Duration,
    ) -> Option<(JobId, Source, Option<JobMessage>)> {
        let own: HashSet<i32> = self.partitions().into_iter().collect();
        self.tailer.prune_every_second(book);
        let min_age = i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX);
        self.tailer.oldest_free(book, &own, taking, now_ms, min_age)
    }

    fn queued(&self, book: &ClaimBook) -> usize {
        let (own, held): (HashSet<i32>, HashSet<Source>) = {
            let state = self.delivery.context.state();
            (
                state.owned.iter().copied().collect(),
                state.held.iter().map(source_of).collect(),
            )
        };
        self.tailer.unclaimed_on(book, &own, &held)
    }

    fn read(&self, source: Source, timeout: Duration) -> Option<JobMessage> {
        let message = self.read_back.read(source, timeout)?;
        parse(&message)
    }

    fn commit(&self, wait: bool) {
        let mode = if wait {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        self.delivery.commit_due(mode);
    }

    fn partitions(&self) -> Vec<i32> {
        self.delivery.context.state().owned.clone()
    }

    async fn close(self) {
        self.delivery.commit_due(CommitMode::Sync);
        self.tailer.stop();
        self.delivery.leave().await;
    }
}

fn source_of(message: &OwnedMessage) -> Source {
    Source {
        partition: message.partition(),
        offset: message.offset(),
    }
}

fn parse(message: &OwnedMessage) -> Option<JobMessage> {
    message
        .payload()
        .and_then(|p| serde_json::from_slice::<JobMessage>(p).ok())
}
