//! The lease judge (`docs/dispatch.md` §7): claims read on the ignore topic
//! and heartbeats (fed by the observer loop) make the leases; a lapsed one
//! is queued again, or failed past `LZ_MAX_ATTEMPTS`, with one conditional
//! MongoDB update as the guard, so each attempt is re-queued once whatever
//! the number of observers or restarts.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::dispatch::Applied;
use common::ignore::IgnoreLog;
use common::kafka::Publisher;
use common::settings::KafkaSettings;
use common::{timestamp, Directive, JobId, JobState, Requeue, StatusEvent};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::fleet::{Fleet, Lapse};
use crate::observer::now_ms;

/// How often leases are checked.
const CHECK: Duration = Duration::from_millis(250);

pub type SharedFleet = Arc<Mutex<Fleet>>;

pub fn lock(fleet: &SharedFleet) -> MutexGuard<'_, Fleet> {
    fleet.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters for the observation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Verdicts {
    pub requeued: u64,
    pub failed: u64,
}

pub struct Judge {
    pub fleet: SharedFleet,
    pub log: IgnoreLog,
    pub jobs: Collection<Document>,
    pub producer: Publisher,
    pub kafka: KafkaSettings,
    pub max_attempts: u32,
    pub verdicts: Arc<Mutex<Verdicts>>,
}

impl Judge {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut changes = self.log.changes();
        self.load_claims();
        let mut check = tokio::time::interval(CHECK);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = check.tick() => self.judge().await,
                change = changes.recv() => match change {
                    Ok(applied) => self.on_change(applied),
                    Err(RecvError::Lagged(_)) => self.load_claims(),
                    Err(RecvError::Closed) => break,
                },
            }
        }
        self.log.stop();
    }

    /// Every claim the book holds (at start, or after missing changes).
    fn load_claims(&self) {
        let now = now_ms();
        let book = self.log.book();
        let mut fleet = lock(&self.fleet);
        for (job, attempt, holder) in book.holders() {
            fleet.claimed(job, attempt, &holder.worker_id, holder.source, now);
        }
    }

    fn on_change(&self, applied: Applied) {
        match applied {
            Applied::Won {
                job,
                attempt,
                worker,
            } => {
                let source = self.log.book().holder(job, attempt).map(|h| h.source);
                if let Some(source) = source {
                    lock(&self.fleet).claimed(job, attempt, &worker, source, now_ms());
                }
            }
            Applied::Released { job, attempt } => lock(&self.fleet).settle(job, attempt),
            Applied::Requeued { job, attempt } => {
                lock(&self.fleet).ended(job, attempt.saturating_sub(1))
            }
            _ => {}
        }
    }

    async fn judge(&self) {
        let lapsed = lock(&self.fleet).lapsed(now_ms());
        if lapsed.is_empty() {
            return;
        }
        // One query tells which of them still wait on a lease: most lapses
        // after a restart are of jobs that ended long ago.
        let open = match self.still_open(&lapsed).await {
            Ok(open) => open,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read job records to judge lapsed leases");
                return;
            }
        };
        for lapse in lapsed {
            if !open.contains(&lapse.job) {
                lock(&self.fleet).settle(lapse.job, lapse.attempt);
                continue;
            }
            match self.verdict(&lapse).await {
                Ok(()) => lock(&self.fleet).settle(lapse.job, lapse.attempt),
                Err(e) => {
                    tracing::warn!(job_id = %lapse.job, error = %e, "cannot queue a lapsed job again yet")
                }
            }
        }
    }

    async fn still_open(&self, lapsed: &[Lapse]) -> mongodb::error::Result<HashSet<JobId>> {
        let ids: Vec<Bson> = lapsed
            .iter()
            .map(|l| Bson::from(l.job.to_string()))
            .collect();
        let mut open = HashSet::new();
        for chunk in ids.chunks(500) {
            let found: Vec<Document> = self
                .jobs
                .find(doc! {
                    "_id": {"$in": chunk.to_vec()},
                    "status": {"$in": [JobState::Queued.as_str(), JobState::Running.as_str()]},
                })
                .projection(doc! {"_id": 1})
                .await?
                .try_collect()
                .await?;
            open.extend(
                found
                    .iter()
                    .filter_map(|d| d.get_str("_id").ok())
                    .filter_map(JobId::parse),
            );
        }
        Ok(open)
    }

    /// Queues the attempt again, or fails the job past the maximum.
    async fn verdict(&self, lapse: &Lapse) -> anyhow::Result<()> {
        let next = lapse.attempt + 1;
        let why = format!(
            "worker {} stopped renewing its lease (no heartbeat for {:.1} s)",
            lapse.holder,
            lapse.silent_ms as f64 / 1000.0
        );
        let filter = doc! {
            "_id": lapse.job.to_string(),
            "status": {"$in": [JobState::Queued.as_str(), JobState::Running.as_str()]},
            "attempt": {"$lte": i64::from(lapse.attempt)},
        };
        if next > self.max_attempts {
            let times = match lapse.attempt {
                1 => "once".to_string(),
                n => format!("{n} times"),
            };
            let message = format!(
                "the job was started {times} and each time its worker stopped responding (last: {why}); it was not run again"
            );
            let update = doc! {"$set": {
                "status": JobState::Failed.as_str(),
                "finishedAt": timestamp::format(&timestamp::now()),
                "error": &message,
            }};
            if self.jobs.update_one(filter, update).await?.modified_count == 1 {
                tracing::warn!(job_id = %lapse.job, attempt = lapse.attempt, "lease lapsed for the last allowed attempt: job failed");
                lock_verdicts(&self.verdicts).failed += 1;
                let owner = self.owner(lapse.job).await.unwrap_or_default();
                let mut event = StatusEvent::new(lapse.job, owner, JobState::Failed);
                event.attempt = lapse.attempt;
                event.error = Some(message);
                self.producer
                    .send_json(&self.kafka.status_topic, &lapse.job.to_string(), &event)
                    .await?;
            }
            return Ok(());
        }
        let message = format!(
            "queued again for attempt {next} of {}: {why}",
            self.max_attempts
        );
        let update = doc! {"$set": {
            "status": JobState::Queued.as_str(),
            "attempt": i64::from(next),
            "error": &message,
        }};
        let won = self.jobs.update_one(filter, update).await?.modified_count == 1;
        // Lost the update: another observer (or this one before a crash)
        // re-queued it. Publish again only if its requeue never made it.
        let publish = won || self.requeue_missing(lapse.job, next).await?;
        if publish {
            let requeue = Directive::Requeue(Requeue {
                job_id: lapse.job,
                attempt: next,
                source: lapse.source,
                reason: message,
                at: timestamp::now(),
            });
            self.producer
                .send_json_at(self.log.topic(), Some(0), &lapse.job.to_string(), &requeue)
                .await?;
            tracing::warn!(job_id = %lapse.job, attempt = next, holder = %lapse.holder, "lease lapsed: job queued again");
            lock_verdicts(&self.verdicts).requeued += 1;
        }
        Ok(())
    }

    async fn requeue_missing(&self, job: JobId, next: u32) -> mongodb::error::Result<bool> {
        let record = self
            .jobs
            .find_one(doc! {"_id": job.to_string(), "status": JobState::Queued.as_str(), "attempt": i64::from(next)})
            .await?;
        Ok(record.is_some() && self.log.book().current_attempt(job) < next)
    }

    async fn owner(&self, job: JobId) -> Option<String> {
        let record = self
            .jobs
            .find_one(doc! {"_id": job.to_string()})
            .await
            .ok()??;
        record.get_str("owner").ok().map(str::to_string)
    }
}

fn lock_verdicts(v: &Arc<Mutex<Verdicts>>) -> MutexGuard<'_, Verdicts> {
    v.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn verdicts(v: &Arc<Mutex<Verdicts>>) -> Verdicts {
    *lock_verdicts(v)
}
