//! One observer window (`docs/contract.md` §6). The first five field names are the
//! original service's and are kept for its clients.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// Jobs queued in the window.
    pub avg_rate_of_arrival: f64,
    /// Jobs that started in the window.
    pub avg_rate_of_service: f64,
    /// Jobs that ended in the window.
    pub avg_rate_of_finished: f64,
    /// Mean elapsed seconds of the jobs that ended in the window; 0 if none.
    pub avg_response_time: f64,
    /// Window end, milliseconds since the epoch.
    pub timestamp: i64,
    /// Window length in milliseconds.
    #[serde(default)]
    pub window_ms: u64,
    /// Jobs waiting in the jobs topic (consumer lag of the workers' group).
    #[serde(default)]
    pub backlog: u64,
    /// Members of the workers' consumer group.
    #[serde(default)]
    pub workers: u32,
    #[serde(default)]
    pub partitions: u32,
    #[serde(default)]
    pub decision: Option<ScaleDecision>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDecision {
    pub current: u32,
    pub desired: u32,
    pub reason: String,
}
