//! The worker's side of the ignore topic (`docs/dispatch.md` §5): cancel
//! requests, claims won and lost, releases, and re-queues that supersede a
//! run. Every worker reads the whole topic into one `ClaimBook`.

use std::time::Duration;

use common::ignore::{IgnoreError, IgnoreLog};
use common::kafka::{ProduceError, Publisher};
use common::settings::KafkaSettings;
use common::{timestamp, Claim, Directive, JobId, Release, Source};
use tokio::sync::broadcast::error::RecvError;

use crate::outcome::Stop;

/// A handle on the ignore topic; cheap to clone.
#[derive(Clone)]
pub struct Board {
    log: IgnoreLog,
    producer: Publisher,
    worker_id: String,
}

impl Board {
    /// Reads the topic up to its end before answering, so that no job
    /// starts before the worker knows what was published before it.
    pub async fn start(
        kafka: &KafkaSettings,
        producer: Publisher,
        worker_id: &str,
    ) -> Result<Self, IgnoreError> {
        Ok(Self {
            // A claim waits on this reader: the shortest wait.
            log: IgnoreLog::start(
                kafka,
                Duration::from_millis(u64::from(kafka.fetch_wait_max_ms)),
            )
            .await?,
            producer,
            worker_id: worker_id.to_string(),
        })
    }

    pub fn log(&self) -> &IgnoreLog {
        &self.log
    }

    pub fn is_cancelled(&self, job: JobId) -> bool {
        self.log.book().is_cancelled(job)
    }

    /// The attempt a run of `job` would be, or `None` when someone holds
    /// it already. A cancelled job is still claimed, so that exactly one
    /// worker publishes its `cancelled` end.
    pub fn open_attempt(&self, job: JobId) -> Option<u32> {
        let book = self.log.book();
        let attempt = book.current_attempt(job);
        book.holder(job, attempt).is_none().then_some(attempt)
    }

    /// Claims (job, attempt) and waits until the claim is read back:
    /// `true` when it is the first, so this worker runs it. A cancel
    /// published before the claim has been read by then too.
    pub async fn claim(
        &self,
        job: JobId,
        attempt: u32,
        source: Source,
    ) -> Result<bool, ProduceError> {
        let claim = Directive::Claim(Claim {
            job_id: job,
            attempt,
            worker_id: self.worker_id.clone(),
            source,
            at: timestamp::now(),
        });
        let (_, offset) = self
            .producer
            .send_json_at(self.log.topic(), Some(0), &job.to_string(), &claim)
            .await?;
        // The claim is in the topic: whoever won, this worker must learn
        // it, or a job it won would be held and never run.
        while let Err(e) = self.log.read_past(offset, Duration::from_secs(10)).await {
            tracing::warn!(error = %e, "waiting to read a claim back");
        }
        let book = self.log.book();
        Ok(book
            .holder(job, attempt)
            .is_some_and(|h| h.worker_id == self.worker_id))
    }

    /// Gives a won attempt back unfinished, so that another worker may
    /// run it at the same attempt.
    pub async fn release(
        &self,
        job: JobId,
        attempt: u32,
        source: Source,
    ) -> Result<(), ProduceError> {
        let release = Directive::Release(Release {
            job_id: job,
            attempt,
            worker_id: self.worker_id.clone(),
            source,
            at: timestamp::now(),
        });
        self.producer
            .send_json_at(self.log.topic(), Some(0), &job.to_string(), &release)
            .await
            .map(|_| ())
    }

    /// Resolves when a run of (job, attempt) must stop: its owner
    /// cancelled it, a later attempt was queued, or another worker won it.
    pub async fn interrupted(&self, job: JobId, attempt: u32) -> Stop {
        let mut changes = self.log.changes();
        loop {
            {
                let book = self.log.book();
                if book.is_cancelled(job) {
                    return Stop::Cancelled;
                }
                // A later attempt, or this one won by another worker (a
                // run prepared while its claim was decided, and lost).
                let lost = book
                    .holder(job, attempt)
                    .is_some_and(|h| h.worker_id != self.worker_id);
                if book.current_attempt(job) > attempt || lost {
                    return Stop::Superseded;
                }
            }
            match changes.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                // The reader is gone (shutdown): nothing more will come.
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }

    pub fn stop(&self) {
        self.log.stop();
    }
}
