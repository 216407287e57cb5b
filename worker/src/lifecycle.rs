//! One job's way through the lifecycle of `docs/contract.md` §3 as the
//! worker sees it, once its claim is won: the cancel check, the `running`
//! event, the run, and the terminal event, each event published until the
//! broker has it.

use std::sync::Arc;
use std::time::Duration;

use common::kafka::Publisher;
use common::{JobMessage, JobState, StatusEvent};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::outcome::{Outcome, Report};
use crate::runner::{JobRunner, Prepared};
use crate::settings::WorkerSettings;
use crate::slot::Slot;

pub struct Lifecycle {
    pub settings: Arc<WorkerSettings>,
    pub producer: Publisher,
    pub runner: JobRunner,
}

impl Lifecycle {
    /// From the cancel check to the acknowledged terminal event. The
    /// claim read back before this saw every cancel published before it.
    /// `grace_over` turns true when a shutdown's grace period is over.
    /// `slot` is `None` only for a job that will not run (cancelled, or
    /// ended while it was prepared).
    pub async fn process(
        &self,
        job: &JobMessage,
        attempt: u32,
        prepared: Prepared,
        grace_over: watch::Receiver<bool>,
        slot: Option<Slot>,
    ) -> Outcome {
        if self.runner.board.is_cancelled(job.id) {
            tracing::info!("cancelled before it started: skipped");
            self.runner.discard(prepared).await;
            let report = Report::cancelled("cancelled before it started");
            return self.end(job, attempt, report, None, &grace_over).await;
        }
        debug_assert!(slot.is_some() || !prepared.is_ready());
        let started = Instant::now();
        let mut running = self.event(job, JobState::Running, attempt);
        running.commit = prepared.commit().map(str::to_string);
        if !self.publish(job, &running, &grace_over).await {
            self.runner.discard(prepared).await;
            return Outcome::HandedBack;
        }
        tracing::info!(url = %job.redacted_url, "job started");
        let report = match self
            .runner
            .execute(job, attempt, prepared, grace_over.clone(), slot)
            .await
        {
            Outcome::Ended(report) => report,
            other => return other,
        };
        let elapsed = started.elapsed().as_secs_f64();
        tracing::info!(
            status = %report.state,
            exit_code = ?report.exit_code,
            elapsed_seconds = elapsed,
            outputs = report.output_files.len(),
            "job ended"
        );
        self.end(job, attempt, report, Some(elapsed), &grace_over)
            .await
    }

    /// Publishes the terminal event; the job has ended once it is
    /// acknowledged.
    async fn end(
        &self,
        job: &JobMessage,
        attempt: u32,
        report: Report,
        elapsed: Option<f64>,
        grace_over: &watch::Receiver<bool>,
    ) -> Outcome {
        let mut event = self.event(job, report.state, attempt);
        event.exit_code = report.exit_code;
        event.error = report.error.clone();
        if let Some(elapsed) = elapsed {
            // Milliseconds are all a user reads.
            event.elapsed_seconds = Some((elapsed * 1000.0).round() / 1000.0);
            event.output_files = Some(report.output_files.clone());
        }
        if self.publish(job, &event, grace_over).await {
            Outcome::Ended(report)
        } else {
            Outcome::HandedBack
        }
    }

    fn event(&self, job: &JobMessage, status: JobState, attempt: u32) -> StatusEvent {
        let mut event = StatusEvent::new(job.id, job.owner.clone(), status);
        event.worker_id = Some(self.settings.worker_id.clone());
        event.attempt = attempt;
        event
    }

    /// Publishes until the broker acknowledges (true), or until the grace
    /// period is over (false: the job goes back uncommitted and runs again).
    async fn publish(
        &self,
        job: &JobMessage,
        event: &StatusEvent,
        grace_over: &watch::Receiver<bool>,
    ) -> bool {
        let topic = &self.settings.kafka.status_topic;
        let key = job.id.to_string();
        loop {
            match self.producer.send_json(topic, &key, event).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, status = %event.status, "status event not acknowledged; retrying");
                    if *grace_over.borrow() {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
