//! The status recorder: a consumer group on the status topic that applies
//! events to the job records. Several frontend replicas share the
//! partitions. An offset is committed only after its event was applied, so
//! a crash replays events, which the conditional update makes harmless.

use std::time::Duration;

use common::settings::KafkaSettings;
use common::{StatusEvent, StatusRecord};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::sync::watch;

use crate::store::{Applied, JobStore};

pub async fn run(
    kafka: KafkaSettings,
    group: String,
    store: JobStore,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = common::kafka::consumer(&kafka, &group, &[])?;
    consumer.subscribe(&[&kafka.status_topic])?;
    tracing::info!(topic = %kafka.status_topic, %group, "status recorder started");
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "status topic read failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        match message.payload().map(StatusRecord::parse) {
            Some(Ok(StatusRecord::Event(event))) => {
                apply_until_done(&store, &event, &mut stop).await
            }
            // Workers' heartbeats share the topic (`docs/dispatch.md`);
            // they change no record.
            Some(Ok(StatusRecord::Heartbeat(_) | StatusRecord::Other(_))) => {}
            // Nothing can ever apply a malformed event: skip it, loudly.
            Some(Err(e)) => {
                tracing::error!(error = %e, offset = message.offset(), "unreadable status event skipped")
            }
            None => tracing::error!(offset = message.offset(), "empty status event skipped"),
        }
        if *stop.borrow() {
            break;
        }
        if let Err(e) = consumer.commit_message(&message, CommitMode::Async) {
            tracing::warn!(error = %e, "offset commit failed; the event may be applied again");
        }
    }
    // Leave the group now, so another replica takes the partitions at once.
    consumer.unsubscribe();
    tracing::info!("status recorder stopped");
    Ok(())
}

/// Retries while MongoDB is unreachable: an event is never skipped because
/// the database was down.
async fn apply_until_done(store: &JobStore, event: &StatusEvent, stop: &mut watch::Receiver<bool>) {
    let mut delay = Duration::from_millis(100);
    loop {
        match store.apply(event).await {
            Ok(applied) => {
                tracing::debug!(job = %event.job_id, status = %event.status, changed = (applied == Applied::Changed), "status event recorded");
                return;
            }
            Err(e) => {
                tracing::warn!(job = %event.job_id, error = %e, "recording a status event failed; retrying");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
