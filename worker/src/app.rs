//! The worker process: builds its clients from settings, then takes one job
//! at a time from the jobs topic, runs it while the consumer keeps polling,
//! and commits it once its end is published (see `docs/worker.md`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::kafka::{self, Publisher};
use common::provision::Provisioner;
use common::{storage, JobId, JobMessage};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::cancels::Cancels;
use crate::consumer::{Running, WorkerContext};
use crate::delivery::{Delivery, Position};
use crate::git;
use crate::lifecycle::Lifecycle;
use crate::outcome::Outcome;
use crate::runner::JobRunner;
use crate::settings::WorkerSettings;

/// See `Application::build`. Measured on an idle worker: 1.7 % of a core in
/// all (mostly librdkafka fetching from tansu, which answers empty fetches at
/// once), of which this tick is 0.15 % (1.55 % with a 1 s tick).
const POLL_TICK: Duration = Duration::from_millis(25);

pub struct Application {
    settings: Arc<WorkerSettings>,
    delivery: Delivery,
    lifecycle: Lifecycle,
    /// Deliveries of each job seen by this process, for `attempt`.
    deliveries: HashMap<JobId, u32>,
}

/// Where a shutdown stands while a job runs.
struct Shutdown<'a, F> {
    signal: Pin<&'a mut F>,
    requested: bool,
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
        // Jobs are taken only once their topics and the bucket exist.
        Provisioner::new()
            .topics(&settings.kafka)
            .bucket(&settings.s3)
            .until_done()
            .await;
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
            delivery: Delivery {
                consumer,
                context,
                poll_tick,
                max_buffered: settings.max_buffered_jobs,
            },
            lifecycle: Lifecycle {
                settings: settings.clone(),
                producer,
                runner: JobRunner {
                    settings: settings.clone(),
                    bucket,
                    cancels,
                },
            },
            settings,
            deliveries: HashMap::new(),
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.settings.worker_id
    }

    /// Number of partitions held; changes on rebalances.
    pub fn assigned_partitions(&self) -> watch::Receiver<usize> {
        self.delivery.context.assigned()
    }

    /// Takes and runs jobs until `shutdown` resolves, then lets the running
    /// job finish within the grace period (or hands it back), and leaves the
    /// group.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut shutdown = Shutdown {
            signal: shutdown,
            requested: false,
        };
        while !shutdown.requested {
            let next = tokio::select! {
                biased;
                _ = shutdown.signal.as_mut() => break,
                next = self.delivery.next() => next,
            };
            if let Some(message) = next {
                self.handle(message, &mut shutdown).await;
            }
        }
        self.lifecycle.runner.cancels.stop();
        self.delivery.leave().await;
        Ok(())
    }

    /// Runs the message's job while the consumer keeps polling, then
    /// commits it unless it was handed back.
    async fn handle<F: Future<Output = ()>>(
        &mut self,
        message: OwnedMessage,
        shutdown: &mut Shutdown<'_, F>,
    ) {
        let at = Position::of(&message);
        let Some(job) = message
            .payload()
            .and_then(|p| serde_json::from_slice::<JobMessage>(p).ok())
        else {
            // Nothing can run it and nobody can be told: skip it rather
            // than block the partition.
            tracing::error!(
                partition = at.partition,
                offset = at.offset,
                "skipping a malformed job message"
            );
            self.delivery.commit(&at);
            return;
        };
        let attempt = {
            let seen = self.deliveries.entry(job.id).or_insert(0);
            *seen += 1;
            *seen
        };
        self.delivery.context.state().running = Some(Running {
            topic: at.topic.clone(),
            partition: at.partition,
            offset: at.offset,
            handed_over: false,
        });
        let outcome = self.supervise(&job, attempt, &at, shutdown).await;
        self.settle(&job, &at, outcome).await;
        self.delivery.after_job(shutdown.requested);
    }

    /// Runs the job to its outcome, buffering deliveries meanwhile and
    /// starting the grace period when the shutdown signal comes.
    async fn supervise<F: Future<Output = ()>>(
        &self,
        job: &JobMessage,
        attempt: u32,
        at: &Position,
        shutdown: &mut Shutdown<'_, F>,
    ) -> Outcome {
        let (grace_over, grace_rx) = watch::channel(false);
        let span = tracing::info_span!("job", job_id = %job.id, attempt, partition = at.partition, offset = at.offset);
        let work = self
            .lifecycle
            .process(job, attempt, grace_rx)
            .instrument(span);
        tokio::pin!(work);
        let mut grace_deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                outcome = &mut work => return outcome,
                received = self.delivery.receive() => {
                    if let Some(message) = received {
                        self.delivery.buffer(message);
                    }
                }
                _ = shutdown.signal.as_mut(), if !shutdown.requested => {
                    shutdown.requested = true;
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
        }
    }

    /// Commits an ended job; a handed-back one stays uncommitted, or is
    /// queued again when its partition moved away mid-run (its offset was
    /// committed then, so the group will not deliver it again).
    async fn settle(&self, job: &JobMessage, at: &Position, outcome: Outcome) {
        let running = self.delivery.context.state().running.take();
        let handed_over = running.is_some_and(|r| r.handed_over);
        match outcome {
            Outcome::Ended(_) if !handed_over => self.delivery.commit(at),
            Outcome::Ended(_) => {}
            Outcome::HandedBack if handed_over => self.lifecycle.requeue(job).await,
            Outcome::HandedBack => tracing::info!(job_id = %job.id, "job handed back uncommitted"),
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
