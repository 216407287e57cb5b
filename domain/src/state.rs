//! The job lifecycle (`docs/contract.md` §3) as a pure transition rule.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `queued` → `running` → `succeeded` | `failed`; `queued` | `running` →
/// `cancelled`. `succeeded`, `failed` and `cancelled` are terminal and never
/// change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether an event announcing `to` may be applied to a job in `self`.
    ///
    /// Nothing leaves a terminal state. `queued` is only ever written when
    /// the job is created, so no event moves a job back to it. `running`
    /// may repeat: a job re-delivered after its worker died starts again
    /// (the recorder keeps the newest attempt). A terminal event may arrive
    /// for a job still recorded `queued` (a replay, or a job cancelled or
    /// failed before launch), so the end always wins over the start.
    pub fn can_become(self, to: JobState) -> bool {
        use JobState::*;
        match (self, to) {
            (Succeeded | Failed | Cancelled, _) => false,
            (_, Queued) => false,
            (Queued | Running, Running) => true,
            (Queued | Running, Succeeded | Failed | Cancelled) => true,
        }
    }

    /// The states from which an event announcing `to` may be applied: the
    /// recorder turns this into a conditional update, so applying an event
    /// is atomic and a replay changes nothing.
    pub fn predecessors(to: JobState) -> Vec<JobState> {
        Self::ALL
            .into_iter()
            .filter(|from| from.can_become(to))
            .collect()
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::JobState::{self, *};

    #[test]
    fn every_pair_of_states() {
        // Rows: from; columns: to (queued, running, succeeded, failed, cancelled).
        let table: [(JobState, [bool; 5]); 5] = [
            (Queued, [false, true, true, true, true]),
            (Running, [false, true, true, true, true]),
            (Succeeded, [false, false, false, false, false]),
            (Failed, [false, false, false, false, false]),
            (Cancelled, [false, false, false, false, false]),
        ];
        for (from, row) in table {
            for (to, expected) in JobState::ALL.into_iter().zip(row) {
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn predecessors_follow_the_table() {
        assert_eq!(JobState::predecessors(Queued), vec![]);
        assert_eq!(JobState::predecessors(Running), vec![Queued, Running]);
        for end in [Succeeded, Failed, Cancelled] {
            assert_eq!(JobState::predecessors(end), vec![Queued, Running]);
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(JobState::parse("done"), None);
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, vec![Succeeded, Failed, Cancelled]);
    }
}
