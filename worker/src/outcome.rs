//! What became of a delivered job, from its run to its commit: one type,
//! so that every step of the way says the same thing.

use common::JobState;

/// The end of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The job reached a terminal state (the report says which). Once its
    /// event is acknowledged the offset is committed.
    Ended(Report),
    /// The worker is shutting down and the job did not end within the grace
    /// period: it is released (`docs/dispatch.md` §8), to run elsewhere.
    HandedBack,
    /// The job waited on deck while a peer had a free slot, and its claim
    /// was released for that peer (`docs/dispatch.md` §4): done here, run
    /// elsewhere at the same attempt.
    Released,
    /// Another worker holds the job's attempt (or it was cancelled before
    /// anyone took it): this copy is skipped, nothing is published.
    Skipped,
    /// The observer queued the job again while it ran here (this worker
    /// had stopped renewing its lease): the run was stopped and publishes
    /// nothing, the later attempt is the one that counts.
    Superseded,
}

/// What the user sees at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub output_files: Vec<String>,
}

impl Report {
    pub fn succeeded() -> Self {
        Self {
            state: JobState::Succeeded,
            exit_code: Some(0),
            error: None,
            output_files: Vec::new(),
        }
    }

    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            state: JobState::Failed,
            exit_code: None,
            error: Some(error.into()),
            output_files: Vec::new(),
        }
    }

    pub fn cancelled(error: &str) -> Self {
        Self {
            state: JobState::Cancelled,
            exit_code: None,
            error: Some(error.into()),
            output_files: Vec::new(),
        }
    }

    /// The same failure, keeping the exit code the run had.
    pub fn failed_after(self, error: impl Into<String>) -> Self {
        Self {
            exit_code: self.exit_code,
            ..Self::failed(error)
        }
    }
}

impl From<Report> for Outcome {
    fn from(report: Report) -> Self {
        Self::Ended(report)
    }
}

/// Why a job was interrupted before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its owner cancelled it.
    Cancelled,
    /// The worker is shutting down and the grace period is over.
    Shutdown,
    /// A later attempt of the job was queued.
    Superseded,
}

impl Stop {
    /// The outcome of a job interrupted while `doing` (e.g. "cloning").
    pub fn outcome(self, doing: &str) -> Outcome {
        match self {
            Self::Cancelled => Report::cancelled(&format!("cancelled while {doing}")).into(),
            Self::Shutdown => Outcome::HandedBack,
            Self::Superseded => Outcome::Superseded,
        }
    }
}
