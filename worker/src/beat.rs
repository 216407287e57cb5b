//! The worker's heartbeat (`docs/dispatch.md` §7): its slots, partitions
//! and a lease per running job, on status-topic partition 0 every interval
//! and soon after each start or end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::kafka::Publisher;
use common::{timestamp, Heartbeat, JobId, Lease, WorkerState};
use tokio::sync::{watch, Notify};

/// Heartbeats after a change are at least this far apart.
const MIN_SPACING: Duration = Duration::from_millis(200);

/// What the next heartbeat says; the delivery loop keeps it current.
#[derive(Debug, Clone)]
pub struct Vitals {
    pub state: WorkerState,
    pub slots: u32,
    pub busy: u32,
    pub held: u32,
    pub queued: u32,
    pub partitions: Vec<i32>,
    pub leases: BTreeMap<JobId, Lease>,
}

#[derive(Clone)]
pub struct Pulse {
    vitals: Arc<Mutex<Vitals>>,
    changed: Arc<Notify>,
}

impl Pulse {
    pub fn new(slots: u32) -> Self {
        Self {
            vitals: Arc::new(Mutex::new(Vitals {
                state: WorkerState::Running,
                slots,
                busy: 0,
                held: 0,
                queued: 0,
                partitions: Vec::new(),
                leases: BTreeMap::new(),
            })),
            changed: Arc::new(Notify::new()),
        }
    }

    pub fn vitals(&self) -> MutexGuard<'_, Vitals> {
        self.vitals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for a heartbeat soon (a lease began or ended).
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Publishes heartbeats until `stop` turns true, then one last one.
    pub async fn run(
        self,
        producer: Publisher,
        topic: String,
        worker_id: String,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let key = format!("worker:{worker_id}");
        loop {
            let beat = self.heartbeat(&worker_id, interval);
            if let Err(e) = producer.send_json_at(&topic, Some(0), &key, &beat).await {
                tracing::warn!(error = %e, "heartbeat not acknowledged");
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.changed.notified() => tokio::time::sleep(MIN_SPACING).await,
                _ = stop.changed() => {}
            }
        }
    }

    fn heartbeat(&self, worker_id: &str, interval: Duration) -> Heartbeat {
        let v = self.vitals();
        Heartbeat {
            kind: Heartbeat::KIND.into(),
            worker_id: worker_id.to_string(),
            at: timestamp::now(),
            interval_ms: interval.as_millis() as u64,
            state: v.state,
            slots: v.slots,
            busy: v.busy,
            held: v.held,
            queued: v.queued,
            partitions: v.partitions.clone(),
            leases: v.leases.values().cloned().collect(),
        }
    }
}
