//! The Lanzadera worker: takes jobs from the jobs topic, runs them, stores
//! their results and reports their status. See `docs/worker.md`.

pub mod cancels;
pub mod consumer;
pub mod git;
pub mod job;
pub mod process;
pub mod settings;
pub mod upload;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::kafka::{self, Publisher};
use common::{storage, JobId, JobMessage, JobState, StatusEvent};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::cancels::Cancels;
use crate::consumer::{Running, WorkerContext};
use crate::job::{Execution, JobRunner, Report};
pub use crate::settings::WorkerSettings;

type JobConsumer = StreamConsumer<WorkerContext>;

/// See `Application::build`. Measured on an idle worker: 1.7 % of a core in
/// all (mostly librdkafka fetching from tansu, which answers empty fetches at
/// once), of which this tick is 0.15 % (1.55 % with a 1 s tick).
const POLL_TICK: Duration = Duration::from_millis(25);

pub struct Application {
    settings: Arc<WorkerSettings>,
    consumer: JobConsumer,
    context: WorkerContext,
    producer: Publisher,
    runner: JobRunner,
    /// Deliveries of each job seen by this process, for `attempt`.
    deliveries: HashMap<JobId, u32>,
    poll_tick: Duration,
}

/// What became of a message.
enum Handled {
    /// Its end was published: commit it.
    Finished,
    /// Given back to the group uncommitted (shutdown).
    HandedBack,
}

impl Application {
    /// Connects to the broker and storage, reads the cancel requests already
    /// published, and joins the workers' group.
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
        kafka::ensure_topics(&settings.kafka)
            .await
            .context("cannot create the topics")?;
        storage::ensure_bucket(&settings.s3)
            .await
            .context("cannot reach the bucket")?;
        let bucket = storage::bucket(&settings.s3).context("bucket settings")?;
        let producer = Publisher::new(&settings.kafka).context("kafka producer")?;
        let cancels = Cancels::start(&settings.kafka)
            .await
            .context("cannot read the cancel topic")?;

        let context = WorkerContext::new();
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
        // The consumer is polled at least this often, idle or busy:
        // librdkafka counts max.poll.interval.ms from the last poll, and the
        // StreamConsumer's waker can miss a new message when the queue held
        // an internal event (rust-rdkafka#665); the tick bounds that delay.
        let poll_tick = POLL_TICK.min(settings.max_poll_interval / 4);
        tracing::info!(worker_id = %settings.worker_id, "worker ready");
        Ok(Self {
            runner: JobRunner {
                settings: settings.clone(),
                bucket,
                cancels,
            },
            settings,
            consumer,
            context,
            producer,
            deliveries: HashMap::new(),
            poll_tick,
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.settings.worker_id
    }

    /// Number of partitions held; changes on rebalances.
    pub fn assigned_partitions(&self) -> watch::Receiver<usize> {
        self.context.assigned()
    }

    /// Takes and runs jobs until `shutdown` resolves, then lets the running
    /// job finish within the grace period (or hands it back), and leaves the
    /// group.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut shutting_down = false;
        while !shutting_down {
            let buffered = self.context.state().buffered.pop_front();
            let message = match buffered {
                Some(message) => message,
                None => {
                    tokio::select! {
                        biased;
                        _ = &mut shutdown => break,
                        received = tokio::time::timeout(self.poll_tick, self.consumer.recv()) => {
                            match received {
                                Err(_) => continue,
                                Ok(Err(e)) => {
                                    tracing::warn!(error = %e, "consumer error");
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    continue;
                                }
                                Ok(Ok(message)) => self.take_delivery(message),
                            }
                        }
                    }
                }
            };
            self.handle(message, &mut shutdown, &mut shutting_down)
                .await;
        }
        self.leave().await;
        Ok(())
    }

    /// Runs the message's job while the consumer keeps polling, then
    /// commits it unless it was handed back.
    async fn handle(
        &mut self,
        message: OwnedMessage,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        shutting_down: &mut bool,
    ) {
        let (topic, partition, offset) = (
            message.topic().to_string(),
            message.partition(),
            message.offset(),
        );
        let job = match message.payload().map(serde_json::from_slice::<JobMessage>) {
            Some(Ok(job)) => job,
            _ => {
                // Nothing can run it and nobody can be told: skip it rather
                // than block the partition.
                tracing::error!(partition, offset, "skipping a malformed job message");
                self.commit(&topic, partition, offset).await;
                return;
            }
        };
        let attempt = {
            let seen = self.deliveries.entry(job.id).or_insert(0);
            *seen += 1;
            *seen
        };
        self.context.state().running = Some(Running {
            topic: topic.clone(),
            partition,
            offset,
            handed_over: false,
        });

        let (grace_over, grace_rx) = watch::channel(false);
        let span = tracing::info_span!("job", job_id = %job.id, attempt, partition, offset);
        let work = self.process(&job, attempt, grace_rx).instrument(span);
        tokio::pin!(work);
        let mut grace_deadline: Option<Instant> = None;
        let handled = loop {
            tokio::select! {
                handled = &mut work => break handled,
                received = tokio::time::timeout(self.poll_tick, self.consumer.recv()) => {
                    if let Ok(Ok(message)) = received {
                        let message = self.take_delivery(message);
                        let full = {
                            let mut state = self.context.state();
                            state.buffered.push_back(message);
                            state.buffered.len() >= self.settings.max_buffered_jobs && !state.paused
                        };
                        if full {
                            self.pause_all();
                        }
                    }
                }
                _ = shutdown.as_mut(), if !*shutting_down => {
                    *shutting_down = true;
                    tracing::info!(
                        grace_secs = self.settings.shutdown_grace.as_secs(),
                        "shutting down: waiting for the running job"
                    );
                    grace_deadline = Some(Instant::now() + self.settings.shutdown_grace);
                }
                _ = sleep_until_opt(grace_deadline) => {
                    tracing::warn!("grace period over: stopping the job and handing it back");
                    grace_over.send_replace(true);
                    grace_deadline = None;
                }
            }
        };
        let running = self.context.state().running.take();
        match handled {
            Handled::Finished => {
                if running.is_some_and(|r| !r.handed_over) {
                    self.commit(&topic, partition, offset).await;
                }
            }
            Handled::HandedBack if running.as_ref().is_some_and(|r| r.handed_over) => {
                // Its offset was committed when its partition moved away
                // mid-run, so the group will not deliver it again: queue it
                // anew for whichever worker comes next.
                self.requeue(&job).await;
            }
            Handled::HandedBack => {
                tracing::info!(job_id = %job.id, "job handed back uncommitted");
            }
        }
        if *shutting_down {
            // Messages fetched meanwhile belong to the group, not to us.
            self.context.state().buffered.clear();
        } else {
            // Half-empty before fetching again, so a deep backlog does not
            // pause and resume at every job.
            let resume = {
                let state = self.context.state();
                state.paused && state.buffered.len() <= self.settings.max_buffered_jobs / 2
            };
            if resume {
                self.resume_all();
            }
        }
    }

    /// From the cancel check to the terminal event.
    async fn process(
        &self,
        job: &JobMessage,
        attempt: u32,
        grace_over: watch::Receiver<bool>,
    ) -> Handled {
        let cancels = &self.runner.cancels;
        if let Err(e) = cancels.caught_up(Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "going on with the cancel requests read so far");
        }
        if cancels.is_cancelled(job.id) {
            tracing::info!("cancelled before it started: skipped");
            let mut event = self.event(job, JobState::Cancelled, attempt);
            event.error = Some("cancelled before it started".into());
            return self.publish(job, event, &grace_over).await;
        }
        let started = Instant::now();
        let running = self.event(job, JobState::Running, attempt);
        if let Handled::HandedBack = self.publish(job, running, &grace_over).await {
            return Handled::HandedBack;
        }
        tracing::info!(url = %job.redacted_url, "job started");
        let report = match self.runner.execute(job, attempt, grace_over.clone()).await {
            Execution::Done(report) => report,
            Execution::HandedBack => return Handled::HandedBack,
        };
        let elapsed = started.elapsed().as_secs_f64();
        tracing::info!(
            status = %report.state,
            exit_code = ?report.exit_code,
            elapsed_seconds = elapsed,
            outputs = report.output_files.len(),
            "job ended"
        );
        let event = self.terminal_event(job, attempt, report, elapsed);
        self.publish(job, event, &grace_over).await
    }

    fn event(&self, job: &JobMessage, status: JobState, attempt: u32) -> StatusEvent {
        let mut event = StatusEvent::new(job.id, job.owner.clone(), status);
        event.worker_id = Some(self.settings.worker_id.clone());
        event.attempt = attempt;
        event
    }

    fn terminal_event(
        &self,
        job: &JobMessage,
        attempt: u32,
        report: Report,
        elapsed: f64,
    ) -> StatusEvent {
        let mut event = self.event(job, report.state, attempt);
        event.exit_code = report.exit_code;
        // Milliseconds are all a user reads.
        event.elapsed_seconds = Some((elapsed * 1000.0).round() / 1000.0);
        event.output_files = Some(report.output_files);
        event.error = report.error;
        event
    }

    /// Publishes until the broker acknowledges, or until the grace period
    /// is over (then the job goes back uncommitted and runs again).
    async fn publish(
        &self,
        job: &JobMessage,
        event: StatusEvent,
        grace_over: &watch::Receiver<bool>,
    ) -> Handled {
        let topic = &self.settings.kafka.status_topic;
        let key = job.id.to_string();
        loop {
            match self.producer.send_json(topic, &key, &event).await {
                Ok(()) => return Handled::Finished,
                Err(e) => {
                    tracing::warn!(error = %e, status = %event.status, "status event not acknowledged; retrying");
                    if *grace_over.borrow() {
                        return Handled::HandedBack;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn requeue(&self, job: &JobMessage) {
        let topic = &self.settings.kafka.jobs_topic;
        for _ in 0..3 {
            match self
                .producer
                .send_json(topic, &job.id.to_string(), job)
                .await
            {
                Ok(()) => {
                    tracing::info!(job_id = %job.id, "job handed back: queued again");
                    return;
                }
                Err(e) => {
                    tracing::warn!(job_id = %job.id, error = %e, "cannot queue the job again")
                }
            }
        }
        tracing::error!(job_id = %job.id, "job handed back but not queued again: it will not run");
    }

    /// Copies a delivered message out of the consumer, saying so loudly if
    /// the broker skipped records before it: the jobs they hold were never
    /// delivered here, and committing past them would lose them.
    fn take_delivery(&self, message: BorrowedMessage<'_>) -> OwnedMessage {
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

    async fn commit(&self, topic: &str, partition: i32, offset: i64) {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(topic, partition, Offset::Offset(offset + 1))
            .is_err()
        {
            return;
        }
        // A failed commit only means the job may run again after a
        // rebalance; the recorder keeps its first end.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, partition, offset, "offset commit failed");
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
    async fn leave(self) {
        self.runner.cancels.stop();
        self.consumer.unsubscribe();
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        tracing::info!("left the group");
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
