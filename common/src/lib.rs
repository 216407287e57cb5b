//! The adapters the three Lanzadera services share: settings, the Kafka,
//! MongoDB and S3 clients built from them, the provisioner that creates
//! what they need, and telemetry. The pure job domain lives in the
//! `domain` crate (no I/O dependency) and is re-exported here so that a
//! service has one import root; code that needs only the domain depends on
//! `domain` directly.

pub mod heartbeats;
pub mod ignore;
pub mod kafka;
pub mod mongo;
pub mod provision;
pub mod settings;
pub mod storage;
pub mod telemetry;

pub use domain::{
    dispatch, events, job, layout, observation, record, secret, secrets, state, timestamp,
};
pub use domain::{
    CancelRequest, Claim, ClaimBook, Directive, GitRef, Heartbeat, IgnoreRecord, JobId, JobMessage,
    JobRecord, JobSpec, JobState, Lease, LogStream, Masker, Observation, OutputPath, Release,
    RepoPolicy, RepoUrl, Requeue, ScaleDecision, Secret, Source, SpecError, SpecLimits,
    StatusEvent, StatusRecord, WorkerState,
};
