//! One observer window (`docs/contract.md` §6). The first five field names are the
//! original service's and are kept for its clients.

use serde::{Deserialize, Serialize};

/// One observer window. The first five fields keep the original service's
/// names. The three rates are counts of events in the window (not per
/// second): divide by `windowMs` / 1000 for a rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// Jobs queued in the window.
    pub avg_rate_of_arrival: f64,
    /// Jobs that started in the window.
    pub avg_rate_of_service: f64,
    /// Jobs that ended (succeeded, failed or cancelled) in the window.
    pub avg_rate_of_finished: f64,
    /// Mean `elapsedSeconds` of the jobs that ended in the window; 0 if
    /// none did.
    pub avg_response_time: f64,
    /// End of the window, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Window length in milliseconds (`REFRESH_RATE`).
    #[serde(default)]
    pub window_ms: u64,
    /// Jobs waiting in the jobs topic: the consumer lag of the workers'
    /// group.
    #[serde(default)]
    pub backlog: u64,
    /// Members of the workers' consumer group.
    #[serde(default)]
    pub workers: u32,
    /// Partitions of the jobs topic.
    #[serde(default)]
    pub partitions: u32,
    /// Job slots of the live workers, as their heartbeats tell
    /// (`docs/dispatch.md`); 0 before any heartbeat.
    #[serde(default)]
    pub slots: u32,
    /// Slots running a job.
    #[serde(default)]
    pub slots_busy: u32,
    #[serde(default)]
    pub slots_free: u32,
    /// Workers whose heartbeat is younger than the lease time.
    #[serde(default)]
    pub live_workers: u32,
    /// Workers heard from before whose heartbeats stopped.
    #[serde(default)]
    pub silent_workers: u32,
    /// Partitions last listed by a silent worker and by no live one: their
    /// jobs are taken by other workers (stealing).
    #[serde(default)]
    pub orphaned_partitions: Vec<i32>,
    /// Running jobs covered by a lease.
    #[serde(default)]
    pub leases: u32,
    /// Jobs this observer queued again after their lease lapsed, since it
    /// started.
    #[serde(default)]
    pub requeued: u64,
    /// The scaling decision taken on this window, if any.
    #[serde(default)]
    pub decision: Option<ScaleDecision>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ScaleDecision {
    /// Workers when the decision was taken.
    pub current: u32,
    /// Workers the platform should run.
    pub desired: u32,
    pub reason: String,
}
