//! Everything the three Lanzadera services share: the job domain (pure, no
//! I/O), wire formats, settings, and thin adapters that build the Kafka,
//! MongoDB and S3 clients from settings.

pub mod events;
pub mod job;
pub mod kafka;
pub mod mongo;
pub mod observation;
pub mod record;
pub mod secret;
pub mod settings;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod timestamp;

pub use events::{CancelRequest, JobMessage, StatusEvent};
pub use job::{JobId, JobSpec, RepoPolicy, RepoUrl, SpecError, SpecLimits};
pub use observation::{Observation, ScaleDecision};
pub use record::JobRecord;
pub use secret::Secret;
pub use state::JobState;
pub use storage::OutputPath;
