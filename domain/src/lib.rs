//! The Lanzadera job domain, with no I/O: the job contract parsed once at
//! the edge, the lifecycle, the wire formats of the topics and the stored
//! record, the bucket layout, and the observer's observation. Anything that
//! only needs these types (a CLI, a test) depends on this crate alone and
//! does not link librdkafka, the MongoDB driver or an S3 client.

pub mod dispatch;
pub mod events;
pub mod job;
pub mod layout;
pub mod observation;
pub mod record;
pub mod secret;
pub mod secrets;
pub mod state;
pub mod timestamp;

pub use dispatch::{
    Claim, ClaimBook, Directive, Heartbeat, IgnoreRecord, Lease, Release, Requeue, Source,
    StatusRecord, WorkerState,
};
pub use events::{CancelRequest, JobMessage, StatusEvent};
pub use job::{GitRef, JobId, JobSpec, RepoPolicy, RepoUrl, SpecError, SpecLimits};
pub use layout::{LogStream, OutputPath};
pub use observation::{Observation, ScaleDecision};
pub use record::JobRecord;
pub use secret::Secret;
pub use secrets::{JobSecrets, Masker};
pub use state::JobState;
