//! The job workflows behind the routes: submit, look up, list and cancel.
//! Handlers parse the request, call one of these and turn the result into
//! a response; the rules of `docs/contract.md` §3 live here.

use std::sync::Arc;

use common::kafka::Publisher;
use common::settings::KafkaSettings;
use common::{
    timestamp, CancelRequest, JobId, JobMessage, JobRecord, JobSpec, JobState, StatusEvent,
};

use crate::auth::Caller;
use crate::error::{unavailable, ApiError};
use crate::metrics::Metrics;
use crate::placement::Placement;
use crate::store::{JobStore, Page};

#[derive(Clone)]
pub struct Jobs {
    store: JobStore,
    producer: Publisher,
    kafka: KafkaSettings,
    metrics: Metrics,
    placement: Placement,
    /// Ended jobs by id: a terminal record never changes again
    /// (`docs/contract.md` §3), so it can be served without the database.
    ended: moka::sync::Cache<JobId, Arc<JobRecord>>,
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The job was queued: it is cancelled now and will never run.
    Now(JobId),
    /// The job is running: its worker stops it and records `cancelled`.
    Requested(JobId),
}

/// Which of the caller's jobs to list.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter {
    pub status: Option<JobState>,
    pub skip: u64,
    pub limit: i64,
}

impl Jobs {
    pub fn new(
        store: JobStore,
        producer: Publisher,
        kafka: KafkaSettings,
        metrics: Metrics,
        placement: Placement,
        ended_entries: u64,
    ) -> Self {
        Self {
            store,
            producer,
            kafka,
            metrics,
            placement,
            ended: moka::sync::Cache::new(ended_entries),
        }
    }

    /// Records the job, then queues it. The answer comes only after both
    /// succeeded; if queueing fails the record is removed again, so nothing
    /// is left that a user would see as queued.
    pub async fn submit(&self, caller: Caller, spec: JobSpec) -> Result<JobId, ApiError> {
        // The work runs in a task of its own: a client that hangs up drops
        // the handler, and dropping it between the insert and the produce
        // would leave a record queued for ever with no message.
        let jobs = self.clone();
        tokio::spawn(async move { jobs.enqueue(caller, spec).await })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the submission task failed");
                ApiError::Internal
            })?
    }

    async fn enqueue(&self, caller: Caller, spec: JobSpec) -> Result<JobId, ApiError> {
        let id = JobId::new();
        let now = timestamp::now();
        let record = JobRecord::queued(id, &caller.subject, &caller.username, &spec, now);
        if let Err(e) = self.store.insert(&record).await {
            // An insert that timed out may still land on a hung server
            // that wakes up: remove it, so that no record stays queued
            // with no message behind it.
            let jobs = self.clone();
            tokio::spawn(async move { jobs.forget(id).await });
            return Err(unavailable("the job database", e));
        }
        let key = id.to_string();
        let message = JobMessage::new(id, &caller.subject, &spec, now);
        let partition = self.placement.partition(id);
        if let Err(e) = self
            .producer
            .send_json_at(&self.kafka.jobs_topic, partition, &key, &message)
            .await
        {
            self.forget(id).await;
            return Err(unavailable("the job queue", e));
        }
        self.metrics.jobs_submitted.inc();
        tracing::info!(job = %id, owner = %caller.subject, url = %record.url, "job queued");
        // The observer counts arrivals from this event; the job is already
        // accepted, so its loss would only skew one window's count. It is
        // awaited all the same: sent in the background, these events piled
        // up in the producer at overload until they timed out, where
        // waiting slows submissions to what the broker takes.
        let mut event = StatusEvent::new(id, caller.subject, JobState::Queued);
        event.at = now;
        let topic = &self.kafka.status_topic;
        if let Err(e) = self.producer.send_json(topic, &key, &event).await {
            tracing::warn!(job = %id, error = %e, "queued event not published");
        }
        Ok(id)
    }

    /// Removes the record of a job that could not be queued.
    async fn forget(&self, id: JobId) {
        for _ in 0..3 {
            match self.store.delete(id).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "could not remove the record of an unqueued job")
                }
            }
        }
    }

    /// The caller's job, or 404 for a malformed id, a missing one and
    /// another tenant's alike.
    pub async fn get(&self, caller: &Caller, raw_id: &str) -> Result<JobRecord, ApiError> {
        let id = JobId::parse(raw_id).ok_or_else(ApiError::job_not_found)?;
        if let Some(record) = self.ended.get(&id) {
            self.metrics
                .ended_job_reads
                .with_label_values(&["memory"])
                .inc();
            // Someone else's job is as unknown from memory as from the
            // database.
            return (record.owner == caller.subject)
                .then(|| JobRecord::clone(&record))
                .ok_or_else(ApiError::job_not_found);
        }
        let record = self
            .store
            .get(&caller.subject, id)
            .await
            .map_err(|e| unavailable("the job database", e))?
            .ok_or_else(ApiError::job_not_found)?;
        if record.status.is_terminal() {
            self.metrics
                .ended_job_reads
                .with_label_values(&["database"])
                .inc();
            self.ended.insert(id, Arc::new(record.clone()));
        }
        Ok(record)
    }

    /// The caller's jobs, newest first.
    pub async fn list(&self, caller: &Caller, filter: ListFilter) -> Result<Page, ApiError> {
        self.store
            .list(&caller.subject, filter.status, filter.skip, filter.limit)
            .await
            .map_err(|e| unavailable("the job database", e))
    }

    /// Cancels a queued or running job; an ended one is a conflict. The
    /// request goes on the ignore topic first (every worker sees it), then a
    /// queued record is marked cancelled.
    pub async fn cancel(&self, caller: &Caller, raw_id: &str) -> Result<Cancelled, ApiError> {
        let record = self.get(caller, raw_id).await?;
        if record.status.is_terminal() {
            return Err(ApiError::Conflict(format!(
                "the job is already {}; only queued or running jobs can be cancelled",
                record.status
            )));
        }
        let request = CancelRequest {
            job_id: record.id,
            owner: caller.subject.clone(),
            requested_at: timestamp::now(),
        };
        self.producer
            .send_json(&self.kafka.cancel_topic, &record.id.to_string(), &request)
            .await
            .map_err(|e| unavailable("the job queue", e))?;
        let cancelled_now = record.status == JobState::Queued
            && self
                .store
                .cancel_queued(&caller.subject, record.id)
                .await
                .map_err(|e| unavailable("the job database", e))?;
        tracing::info!(job = %record.id, was = %record.status, "cancel requested");
        Ok(if cancelled_now {
            Cancelled::Now(record.id)
        } else {
            Cancelled::Requested(record.id)
        })
    }
}
