//! The worker process: builds its clients from settings, then runs up to
//! `LZ_WORKER_SLOTS` jobs at once, taken from its partitions or stolen from
//! busy or silent owners, each claimed before it runs, and commits each
//! partition's done prefix (see `docs/dispatch.md` and `docs/worker.md`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::heartbeats::{free_slots, Heartbeats};
use common::kafka::{self, Publisher};
use common::provision::Provisioner;
use common::{storage, timestamp, JobId, JobMessage, Lease, Source, WorkerState};
use rdkafka::consumer::Consumer;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::beat::Pulse;
use crate::board::Board;
use crate::consumer::WorkerContext;
use crate::deck::{Deck, Ticket, Why};
use crate::delivery::Delivery;
use crate::git;
use crate::lifecycle::Lifecycle;
use crate::outcome::{Outcome, Stop};
use crate::runner::{JobRunner, Prepared};
use crate::settings::WorkerSettings;
use crate::slot::{Slot, SlotPool};
use crate::source::{JobSource, KafkaSource};
use crate::steal::{ReadBack, Tailer};

/// See `Application::build`. Measured on an idle worker before slots and
/// stealing: 1.7 % of a core in all (mostly librdkafka fetching from tansu,
/// which answers empty fetches at once), of which this tick was 0.15 %.
const POLL_TICK: Duration = Duration::from_millis(25);

/// How often the worker looks for a job to steal while it has a free slot,
/// and how often the committed offsets follow the ledger.
const STEAL_TICK: Duration = Duration::from_millis(50);
const COMMIT_TICK: Duration = Duration::from_millis(100);
/// How often the heartbeat's count of the backlog is brought up to date.
const QUEUED_TICK: Duration = Duration::from_millis(100);

pub struct Application<S: JobSource = KafkaSource> {
    settings: Arc<WorkerSettings>,
    work: Arc<Work<S>>,
    assigned: watch::Receiver<usize>,
    /// The other workers' heartbeats: a job on deck here is released when
    /// one of them has a free slot.
    peers: Heartbeats,
}

/// What every job's task shares.
struct Work<S> {
    lifecycle: Lifecycle,
    source: S,
    pulse: Pulse,
}

/// Where a job's task will run it: in a slot taken for it, or on deck
/// until one frees.
enum Seat {
    Now(Slot),
    OnDeck(Ticket),
}

/// A job's task as the delivery loop tracks it.
#[derive(Debug, Clone, Copy)]
struct Taken {
    job: JobId,
    source: Source,
    /// From one of this worker's partitions (so in its ledger), not stolen.
    own: bool,
}

impl Application<KafkaSource> {
    /// Connects to the broker and storage, reads the ignore topic up to its
    /// end, and joins the workers' group.
    pub async fn build(settings: WorkerSettings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        git::init_timeouts();
        std::fs::create_dir_all(&settings.work_dir).with_context(|| {
            format!(
                "cannot create the work folder {}",
                settings.work_dir.display()
            )
        })?;
        remove_leftovers(&settings.work_dir);
        // Jobs are taken only once their topics and the bucket exist.
        Provisioner::new()
            .topics(&settings.kafka)
            .bucket(&settings.s3)
            .until_done()
            .await;
        let bucket = storage::bucket(&settings.s3).context("bucket settings")?;
        let producer = Publisher::new(&settings.kafka).context("kafka producer")?;
        let board = Board::start(&settings.kafka, producer.clone(), &settings.worker_id)
            .await
            .context("cannot read the ignore topic")?;

        let context = WorkerContext::new(&settings.kafka.jobs_topic);
        let max_poll = settings.max_poll_interval.as_millis().max(1000) as u64;
        // librdkafka refuses a session timeout above the poll interval.
        let session = u64::from(settings.kafka.session_timeout_ms).min(max_poll);
        let mut overrides = vec![
            ("max.poll.interval.ms", max_poll.to_string()),
            ("session.timeout.ms", session.to_string()),
            // A third of the session, as Kafka advises: a missed heartbeat
            // or two must not cost the worker its partitions.
            ("heartbeat.interval.ms", (session / 3).max(100).to_string()),
            ("client.id", settings.worker_id.clone()),
            // Little read-ahead: what librdkafka fetched is not held (others
            // may still steal it), but it need not fetch far ahead either.
            ("queued.min.messages", "1".to_string()),
            // With a one-message queue librdkafka's default (1 s) would hold
            // the next fetch back a second after each delivery.
            ("fetch.queue.backoff.ms", "10".to_string()),
            ("max.partition.fetch.bytes", "65536".to_string()),
        ];
        if let Some(debug) = &settings.kafka_debug {
            overrides.push(("debug", debug.clone()));
        }
        let consumer = kafka::consumer_with_context(
            &settings.kafka,
            &settings.kafka.workers_group,
            &overrides,
            context.clone(),
        )
        .context("kafka consumer")?;
        consumer
            .subscribe(&[&settings.kafka.jobs_topic])
            .context("cannot subscribe to the jobs topic")?;
        let tailer = Tailer::start(&settings.kafka).context("cannot tail the jobs topic")?;
        let read_back = ReadBack::new(&settings.kafka).context("kafka read-back consumer")?;
        // A peer's heartbeat after its last job ends is what releases a job
        // on deck here: the wait is short, so the release is prompt.
        let peers = Heartbeats::start(&settings.kafka, "peers", 50).context("heartbeat reader")?;
        // The consumer is polled at least this often, idle or busy:
        // librdkafka counts max.poll.interval.ms from the last poll, and the
        // StreamConsumer's waker can miss a new message when the queue held
        // an internal event (rust-rdkafka#665); the tick bounds that delay.
        let poll_tick = POLL_TICK.min(settings.max_poll_interval / 4);
        tracing::info!(worker_id = %settings.worker_id, slots = settings.slots, "worker ready");
        let assigned = context.assigned();
        let source = KafkaSource {
            delivery: Delivery {
                consumer,
                context,
                poll_tick,
                topic: settings.kafka.jobs_topic.clone(),
            },
            tailer,
            read_back,
        };
        Ok(Self {
            work: Arc::new(Work {
                lifecycle: Lifecycle {
                    settings: settings.clone(),
                    producer,
                    runner: JobRunner {
                        settings: settings.clone(),
                        bucket,
                        board,
                    },
                },
                source,
                pulse: Pulse::new(settings.slots as u32),
            }),
            assigned,
            peers,
            settings,
        })
    }
}

impl<S: JobSource> Application<S> {
    pub fn worker_id(&self) -> &str {
        &self.settings.worker_id
    }

    /// Number of partitions held; changes on rebalances.
    pub fn assigned_partitions(&self) -> watch::Receiver<usize> {
        self.assigned.clone()
    }

    /// Takes and runs jobs until `shutdown` resolves, then lets the running
    /// jobs finish within the grace period (or hands them back), and leaves
    /// the group.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let settings = self.settings.clone();
        let (beat_stop, beat_stop_rx) = watch::channel(false);
        let beat = tokio::spawn(self.work.pulse.clone().run(
            self.work.lifecycle.producer.clone(),
            settings.kafka.status_topic.clone(),
            settings.worker_id.clone(),
            settings.heartbeat,
            beat_stop_rx,
        ));
        let (grace_over, grace_rx) = watch::channel(false);
        let mut slots = Slots::new(settings.slots);
        let deck = Deck::new(slots.pool.clone());
        let mut released_for: Option<i64> = None;
        let mut draining = false;
        let mut grace_deadline: Option<Instant> = None;
        let mut ticks = Ticks::new();
        loop {
            if !draining {
                self.start_jobs(&mut slots, &deck, &grace_rx, &mut ticks);
                self.release_for_idle_peer(&deck, &mut released_for);
            }
            // Jobs on deck count as held: the bound does not grow with them.
            let room = if draining {
                0
            } else {
                (slots.pool.free() + settings.prefetch).saturating_sub(deck.len())
            };
            self.work.source.fit(room);
            self.update_vitals(&slots, &deck, draining, &mut ticks);
            if ticks.commit.elapsed() >= COMMIT_TICK {
                self.work.source.commit(false);
                ticks.commit = Instant::now();
            }
            if draining && slots.tasks.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.as_mut(), if !draining => {
                    draining = true;
                    // Held jobs are not done: their partitions' next
                    // owners get them.
                    self.work.source.drop_held();
                    deck.release_all();
                    grace_deadline = Some(Instant::now() + settings.shutdown_grace);
                    tracing::info!(
                        running = slots.tasks.len(),
                        grace_secs = settings.shutdown_grace.as_secs(),
                        "shutting down: waiting for the running jobs"
                    );
                }
                Some(joined) = slots.tasks.join_next_with_id(), if !slots.tasks.is_empty() => {
                    self.settle(&mut slots, joined);
                }
                _ = sleep_until_opt(grace_deadline) => {
                    tracing::warn!(running = slots.tasks.len(), "grace period over: stopping the jobs and handing them back");
                    grace_over.send_replace(true);
                    grace_deadline = None;
                }
                _ = slots.pool.freed(), if !draining => {}
                _ = self.work.source.receive(), if !draining => {}
                _ = tokio::time::sleep(POLL_TICK), if draining => {}
            }
        }
        self.work.source.commit(true);
        beat_stop.send_replace(true);
        let _ = beat.await;
        self.work.lifecycle.runner.board.stop();
        drop(slots);
        match Arc::try_unwrap(self.work) {
            Ok(work) => work.source.close().await,
            Err(_) => {
                tracing::warn!("a job task outlived the shutdown; leaving without a final commit")
            }
        }
        Ok(())
    }

    /// Fills free slots (held jobs first, in order, then a job to steal),
    /// then, with every slot busy, puts held jobs on deck.
    fn start_jobs(
        &self,
        slots: &mut Slots,
        deck: &Deck,
        grace: &watch::Receiver<bool>,
        ticks: &mut Ticks,
    ) {
        self.fill_free_slots(slots, deck, grace, ticks);
        self.fill_deck(slots, deck, grace);
    }

    fn fill_free_slots(
        &self,
        slots: &mut Slots,
        deck: &Deck,
        grace: &watch::Receiver<bool>,
        ticks: &mut Ticks,
    ) {
        // A slot is held from the claim until the job's processes end: its
        // upload and terminal event overlap the next job's start. It is
        // taken only for a job to start: a slot dropped unused would wake
        // this loop again at once. Slots that jobs on deck will take are
        // theirs.
        while slots.pool.free() > deck.len() {
            if let Some(held) = self.work.source.next_held() {
                let Some((taken, job)) = self.runnable(held) else {
                    continue;
                };
                let Some(slot) = slots.pool.try_take() else {
                    return;
                };
                let (work, grace, source) = (self.work.clone(), grace.clone(), taken.source);
                slots.start(taken, async move {
                    work.run_copy(job, source, grace, Seat::Now(slot)).await
                });
                continue;
            }
            if ticks.steal.elapsed() < STEAL_TICK {
                return;
            }
            ticks.steal = Instant::now();
            let Some((job, source, message)) = self.pick_steal(&slots.jobs) else {
                return;
            };
            let taken = Taken {
                job,
                source,
                own: false,
            };
            let Some(slot) = slots.pool.try_take() else {
                return;
            };
            let work = self.work.clone();
            let grace = grace.clone();
            slots.start(taken, async move {
                work.steal(job, source, message, grace, slot).await
            });
        }
    }

    /// One held job on deck per busy slot, claimed and prepared, so that
    /// it starts the moment a slot frees.
    fn fill_deck(&self, slots: &mut Slots, deck: &Deck, grace: &watch::Receiver<bool>) {
        // Not while a slot's job is still being prepared: its clone comes
        // first (the end of each preparation wakes this loop).
        while slots.pool.preparing() == 0
            && deck.len() < slots.pool.busy()
            && slots.pool.free() <= deck.len()
        {
            let Some(held) = self.work.source.next_held() else {
                return;
            };
            let Some((taken, job)) = self.runnable(held) else {
                continue;
            };
            let ticket = deck.board(job.id);
            let (work, grace, source) = (self.work.clone(), grace.clone(), taken.source);
            slots.start(taken, async move {
                work.run_copy(job, source, grace, Seat::OnDeck(ticket))
                    .await
            });
        }
    }

    /// A held job ready to be taken; a malformed message is skipped (and
    /// done) rather than left to block its partition.
    fn runnable(&self, held: crate::source::Held) -> Option<(Taken, JobMessage)> {
        let source = held.source;
        let Some(job) = held.job else {
            // Nothing can run it and nobody can be told.
            tracing::error!(
                partition = source.partition,
                offset = source.offset,
                "skipping a malformed job message"
            );
            self.work.source.done(source);
            return None;
        };
        let taken = Taken {
            job: job.id,
            source,
            own: true,
        };
        Some((taken, job))
    }

    /// Releases the job on deck that waited longest (at least the steal
    /// delay) when a peer's latest heartbeat shows a free slot: one job
    /// per such heartbeat, so that one idle peer does not empty every
    /// deck. The peer takes it from the book's released jobs
    /// (`docs/dispatch.md` §4).
    fn release_for_idle_peer(&self, deck: &Deck, released_for: &mut Option<i64>) {
        if deck.len() == 0 {
            return;
        }
        let me = &self.settings.worker_id;
        let idle = self
            .peers
            .live(|b| (&b.worker_id != me && free_slots(b) > 0).then(|| b.at.timestamp_millis()));
        let Some(idle_at) = idle.into_iter().max() else {
            return;
        };
        if released_for.is_some_and(|at| at >= idle_at) {
            return;
        }
        if deck.release_oldest(self.settings.steal_after) {
            *released_for = Some(idle_at);
        }
    }

    /// A re-queued or handed-back job first (they wait longest), then the
    /// oldest job on someone else's partition left unclaimed for longer
    /// than an owner with a free slot would take.
    fn pick_steal(&self, taking: &HashSet<JobId>) -> Option<(JobId, Source, Option<JobMessage>)> {
        let book = self.work.lifecycle.runner.board.log().book();
        if let Some((job, _, source)) = book.pending().find(|(j, _, _)| !taking.contains(j)) {
            return Some((job, source, None));
        }
        let now = timestamp::now().timestamp_millis();
        self.work
            .source
            .elsewhere(&book, taking, now, self.settings.steal_after)
    }

    fn settle(
        &self,
        slots: &mut Slots,
        joined: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>,
    ) {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, Some(outcome)),
            Err(e) => (e.id(), None),
        };
        let Some(taken) = slots.finish(id) else {
            return;
        };
        let Some(outcome) = outcome else {
            // Its offset stays open: after a restart the job is delivered
            // again, and its lease covers it meanwhile.
            tracing::error!(job_id = %taken.job, "a job's task panicked");
            return;
        };
        let done = !matches!(outcome, Outcome::HandedBack);
        if taken.own && done {
            self.work.source.done(taken.source);
        }
    }

    fn update_vitals(&self, slots: &Slots, deck: &Deck, draining: bool, ticks: &mut Ticks) {
        let (held, partitions) = (
            (self.work.source.held() + deck.len()) as u32,
            self.work.source.partitions(),
        );
        // Counting the backlog walks the tail's index: not on every pass.
        let queued = (ticks.queued.elapsed() >= QUEUED_TICK).then(|| {
            ticks.queued = Instant::now();
            let book = self.work.lifecycle.runner.board.log().book();
            self.work.source.queued(&book) as u32
        });
        let mut v = self.work.pulse.vitals();
        if let Some(queued) = queued {
            v.queued = queued;
        }
        v.busy = slots.pool.busy() as u32;
        v.held = held;
        v.partitions = partitions;
        if draining {
            v.state = WorkerState::Draining;
        }
    }
}

impl<S: JobSource> Work<S> {
    /// Reads a job back from its position unless its message is at hand,
    /// then runs it like one of ours.
    async fn steal(
        self: Arc<Self>,
        job: JobId,
        source: Source,
        message: Option<JobMessage>,
        grace: watch::Receiver<bool>,
        slot: Slot,
    ) -> Outcome {
        let read = match message {
            Some(m) => Some(m),
            None => {
                let work = self.clone();
                tokio::task::spawn_blocking(move || {
                    work.source.read(source, Duration::from_secs(3))
                })
                .await
                .ok()
                .flatten()
            }
        };
        let Some(message) = read.filter(|m| m.id == job) else {
            tracing::warn!(job_id = %job, partition = source.partition, offset = source.offset, "cannot read the job back to run it");
            return Outcome::Skipped;
        };
        tracing::debug!(job_id = %job, partition = source.partition, offset = source.offset, "taking a job that waited on another worker");
        self.run_copy(message, source, grace, Seat::Now(slot)).await
    }

    /// Claims the job's attempt and, if this worker won it, runs it under
    /// a lease that the heartbeats carry (on deck first, if so seated).
    async fn run_copy(
        &self,
        job: JobMessage,
        source: Source,
        grace: watch::Receiver<bool>,
        seat: Seat,
    ) -> Outcome {
        let board = &self.lifecycle.runner.board;
        let Some(attempt) = board.open_attempt(job.id) else {
            return Outcome::Skipped;
        };
        // The clone does not wait for the claim's round trip; a lost claim
        // interrupts it, a won one takes its lease at once.
        let (claimed, prepared) = {
            let prepare = self.lifecycle.runner.prepare(&job, attempt, grace.clone());
            let claim = self.claim(&job, attempt, source, &grace);
            tokio::pin!(prepare, claim);
            let mut prepared = None;
            let claimed = loop {
                tokio::select! {
                    claimed = &mut claim => break claimed,
                    done = &mut prepare, if prepared.is_none() => prepared = Some(done),
                }
            };
            if claimed.is_ok() {
                self.lease(&job, attempt, source, true);
            }
            match prepared {
                Some(done) => (claimed, done),
                None => (claimed, prepare.await),
            }
        };
        if let Err(outcome) = claimed {
            self.lifecycle.runner.discard(prepared).await;
            return outcome;
        }
        let slot = match seat {
            Seat::Now(mut slot) => {
                slot.prepared();
                Some(slot)
            }
            Seat::OnDeck(ticket) => {
                match self.on_deck(&job, attempt, source, &prepared, ticket).await {
                    Ok(slot) => slot,
                    Err(outcome) => {
                        self.lifecycle.runner.discard(prepared).await;
                        self.lease(&job, attempt, source, false);
                        return outcome;
                    }
                }
            }
        };
        let span = tracing::info_span!("job", job_id = %job.id, attempt, partition = source.partition, offset = source.offset);
        let outcome = self
            .lifecycle
            .process(&job, attempt, prepared, grace, slot)
            .instrument(span)
            .await;
        self.lease(&job, attempt, source, false);
        if outcome == Outcome::Superseded {
            tracing::warn!(job_id = %job.id, attempt, "a later attempt was queued while this one ran (this worker had stopped renewing its lease): run stopped, superseded, nothing published");
        }
        if outcome == Outcome::HandedBack {
            match board.release(job.id, attempt, source).await {
                Ok(()) => {
                    tracing::info!(job_id = %job.id, "job handed back: released for another worker")
                }
                Err(e) => {
                    tracing::warn!(job_id = %job.id, error = %e, "job handed back but not released; its lease will queue it again")
                }
            }
        }
        outcome
    }

    /// Waits on deck for a slot. `Ok(None)`: the job will not run
    /// (cancelled, or ended while it was prepared) and needs no slot.
    /// `Err`: it leaves this worker unrun. A release that cannot be
    /// published keeps the job here: its lease, renewed, covers it.
    async fn on_deck(
        &self,
        job: &JobMessage,
        attempt: u32,
        source: Source,
        prepared: &Prepared,
        mut ticket: Ticket,
    ) -> Result<Option<Slot>, Outcome> {
        if !prepared.is_ready() {
            return Ok(None);
        }
        let board = &self.lifecycle.runner.board;
        tracing::info!(job_id = %job.id, attempt, "job on deck: claimed and prepared, waiting for a slot");
        loop {
            let why = tokio::select! {
                biased;
                seated = ticket.seat() => match seated {
                    Ok(slot) => return Ok(Some(slot)),
                    Err(why) => why,
                },
                stop = board.interrupted(job.id, attempt) => return match stop {
                    Stop::Cancelled => Ok(None),
                    Stop::Superseded => Err(Outcome::Superseded),
                    Stop::Shutdown => Err(Outcome::HandedBack),
                },
            };
            match board.release(job.id, attempt, source).await {
                Ok(()) => {
                    tracing::info!(job_id = %job.id, reason = ?why, "job on deck released for another worker");
                    return Err(Outcome::Released);
                }
                Err(e) if why == Why::Draining => {
                    tracing::warn!(job_id = %job.id, error = %e, "job on deck not released; its lease will queue it again");
                    return Err(Outcome::HandedBack);
                }
                Err(e) => {
                    tracing::warn!(job_id = %job.id, error = %e, "job on deck not released; it stays here")
                }
            }
        }
    }

    /// Claims (job, attempt), retried until the broker has the claim:
    /// whether a failed produce landed is unknown, and a claim won but not
    /// known would leave the job held by a live worker. `Err` says what
    /// became of a claim not won.
    async fn claim(
        &self,
        job: &JobMessage,
        attempt: u32,
        source: Source,
        grace: &watch::Receiver<bool>,
    ) -> Result<(), Outcome> {
        let board = &self.lifecycle.runner.board;
        loop {
            match board.claim(job.id, attempt, source).await {
                Ok(true) => return Ok(()),
                Ok(false) => return Err(Outcome::Skipped),
                Err(e) => {
                    if *grace.borrow() {
                        return Err(Outcome::HandedBack);
                    }
                    tracing::warn!(job_id = %job.id, error = %e, "claim not acknowledged; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn lease(&self, job: &JobMessage, attempt: u32, source: Source, on: bool) {
        {
            let mut v = self.pulse.vitals();
            if on {
                v.leases.insert(
                    job.id,
                    Lease {
                        job_id: job.id,
                        attempt,
                        source,
                        since: timestamp::now(),
                    },
                );
            } else {
                v.leases.remove(&job.id);
            }
        }
        self.pulse.changed();
    }
}

/// The jobs running here, by task, and the slots they hold.
struct Slots {
    pool: SlotPool,
    tasks: JoinSet<Outcome>,
    by_task: HashMap<tokio::task::Id, Taken>,
    /// Jobs with a task here, so a job is not taken twice at once.
    jobs: HashSet<JobId>,
}

impl Slots {
    fn new(slots: usize) -> Self {
        Self {
            pool: SlotPool::new(slots),
            tasks: JoinSet::new(),
            by_task: HashMap::new(),
            jobs: HashSet::new(),
        }
    }

    fn start(&mut self, taken: Taken, task: impl Future<Output = Outcome> + Send + 'static) {
        let handle = self.tasks.spawn(task);
        self.by_task.insert(handle.id(), taken);
        self.jobs.insert(taken.job);
    }

    fn finish(&mut self, id: tokio::task::Id) -> Option<Taken> {
        let taken = self.by_task.remove(&id)?;
        self.jobs.remove(&taken.job);
        Some(taken)
    }
}

struct Ticks {
    steal: Instant,
    commit: Instant,
    queued: Instant,
}

impl Ticks {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            steal: now,
            commit: now,
            queued: now,
        }
    }
}

/// Job folders a previous process left behind (killed mid-job) in a work
/// folder that outlived it. Only folders named like a job id are touched, so
/// a mistaken `LZ_WORK_DIR` loses nothing else.
fn remove_leftovers(work_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_job = entry.file_name().to_str().and_then(JobId::parse).is_some();
        if is_job && std::fs::remove_dir_all(entry.path()).is_ok() {
            tracing::info!(folder = %entry.path().display(), "removed a job folder left by an earlier run");
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_only_job_folders() {
        let dir = std::env::temp_dir().join(format!("lz-leftovers-{}", JobId::new()));
        let job = dir.join(JobId::new().to_string());
        std::fs::create_dir_all(job.join("repo")).unwrap();
        std::fs::create_dir_all(dir.join("keep-me")).unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        remove_leftovers(&dir);
        assert!(!job.exists());
        assert!(dir.join("keep-me").exists());
        assert!(dir.join("notes.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
