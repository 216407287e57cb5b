//! Dispatch records and the claim rule (`docs/dispatch.md`), with no I/O.
//!
//! The ignore topic has one partition, read in full by every worker and by
//! the observer, so its records have one order that everyone sees alike:
//! the first claim of (job, attempt) in that order wins. Heartbeats go to
//! status-topic partition 0 and carry each worker's slots and leases.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{timestamp, CancelRequest, JobId, StatusEvent};

/// Where one copy of a job sits on the jobs topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    pub partition: i32,
    pub offset: i64,
}

/// A worker's bid to run `attempt` of a job; the first one wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub job_id: JobId,
    pub attempt: u32,
    pub worker_id: String,
    #[serde(flatten)]
    pub source: Source,
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
}

/// The winner of a claim gives the attempt back unfinished (shutdown): the
/// next claim of the same attempt wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub job_id: JobId,
    pub attempt: u32,
    pub worker_id: String,
    #[serde(flatten)]
    pub source: Source,
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
}

/// The observer queues a job again whose lease lapsed: any worker may run
/// `attempt` from the original message at `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requeue {
    pub job_id: JobId,
    pub attempt: u32,
    #[serde(flatten)]
    pub source: Source,
    pub reason: String,
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
}

/// The records of the ignore topic after the cancel requests, told apart
/// by `kind`. A cancel request has no `kind` (it predates the others).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Directive {
    Claim(Claim),
    Release(Release),
    Requeue(Requeue),
}

/// One record of the ignore topic.
#[derive(Debug, Clone, PartialEq)]
pub enum IgnoreRecord {
    Cancel(CancelRequest),
    Directive(Directive),
}

impl IgnoreRecord {
    pub fn parse(payload: &[u8]) -> Result<Self, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_slice(payload)?;
        if value.get("kind").is_some() {
            serde_json::from_value(value).map(Self::Directive)
        } else {
            serde_json::from_value(value).map(Self::Cancel)
        }
    }
}

/// A running job as its worker's heartbeat lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub job_id: JobId,
    pub attempt: u32,
    #[serde(flatten)]
    pub source: Source,
    #[serde(with = "timestamp")]
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    Running,
    /// Shutting down: takes nothing new.
    Draining,
}

/// What a worker says of itself every heartbeat interval, on status-topic
/// partition 0 (one order for all heartbeats), keyed `worker:<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// Always `"heartbeat"`: status events have no `kind`.
    pub kind: String,
    pub worker_id: String,
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
    pub interval_ms: u64,
    pub state: WorkerState,
    pub slots: u32,
    pub busy: u32,
    /// Fetched from its partitions, not started yet.
    pub held: u32,
    /// Jobs on its partitions that nobody has claimed and it has not
    /// fetched: what it will get to after the held ones. Absent (0) from
    /// workers that predate it.
    #[serde(default)]
    pub queued: u32,
    pub partitions: Vec<i32>,
    pub leases: Vec<Lease>,
}

impl Heartbeat {
    pub const KIND: &'static str = "heartbeat";
}

/// One record of the status topic.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusRecord {
    Event(StatusEvent),
    Heartbeat(Heartbeat),
    /// A record of a kind this version does not know: skipped quietly, so
    /// that readers can be upgraded after writers.
    Other(String),
}

impl StatusRecord {
    pub fn parse(payload: &[u8]) -> Result<Self, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_slice(payload)?;
        match value.get("kind").and_then(|k| k.as_str()) {
            None => serde_json::from_value(value).map(Self::Event),
            Some(Heartbeat::KIND) => serde_json::from_value(value).map(Self::Heartbeat),
            Some(other) => Ok(Self::Other(other.to_string())),
        }
    }
}

/// Who holds an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub worker_id: String,
    pub source: Source,
}

/// What the ignore topic says of one job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobDirectives {
    /// The winner of each attempt claimed and not released.
    pub holders: HashMap<u32, Holder>,
    /// The latest attempt the observer queued again, and from where.
    pub requeued: Option<(u32, Source)>,
    /// Attempts handed back unfinished, and from where.
    pub released: HashMap<u32, Source>,
    pub cancelled: bool,
}

impl JobDirectives {
    /// The attempt a new run of this job would be: the latest re-queued
    /// one, else the first.
    pub fn current_attempt(&self) -> u32 {
        self.requeued.map_or(1, |(attempt, _)| attempt)
    }

    /// Whether someone holds the current attempt (so nobody else may run
    /// the job now).
    pub fn is_taken(&self) -> bool {
        self.holders.contains_key(&self.current_attempt())
    }

    /// Where a run of the current attempt must be read from, when it is
    /// free and the job is not cancelled but was re-queued or handed back
    /// (a job never claimed is found on its partition instead).
    pub fn pending(&self) -> Option<(u32, Source)> {
        if self.cancelled || self.is_taken() {
            return None;
        }
        let attempt = self.current_attempt();
        match self.requeued {
            Some((a, source)) if a == attempt => Some((a, source)),
            _ => self.released.get(&attempt).map(|s| (attempt, *s)),
        }
    }
}

/// The claim rule applied to the ignore topic in its order.
#[derive(Debug, Default)]
pub struct ClaimBook {
    jobs: HashMap<JobId, JobDirectives>,
    /// Jobs re-queued or released and not yet claimed again: the few that
    /// `pending` looks at (workers ask at every steal tick).
    reopened: std::collections::HashSet<JobId>,
}

/// What a record changed, for whoever waits on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Cancelled(JobId),
    /// `worker` won (job, attempt).
    Won {
        job: JobId,
        attempt: u32,
        worker: String,
    },
    /// A claim that came after the winner's: nobody runs it.
    Lost {
        job: JobId,
        attempt: u32,
    },
    Released {
        job: JobId,
        attempt: u32,
    },
    Requeued {
        job: JobId,
        attempt: u32,
    },
    /// A release by a worker that did not hold the attempt, or an older
    /// requeue than one already applied.
    Ignored,
}

impl ClaimBook {
    pub fn apply(&mut self, record: &IgnoreRecord) -> Applied {
        let applied = self.apply_rule(record);
        match &applied {
            Applied::Released { job, .. } | Applied::Requeued { job, .. } => {
                self.reopened.insert(*job);
            }
            Applied::Won { job, .. } | Applied::Cancelled(job) => {
                let still = self.jobs.get(job).is_some_and(|j| j.pending().is_some());
                if !still {
                    self.reopened.remove(job);
                }
            }
            _ => {}
        }
        applied
    }

    fn apply_rule(&mut self, record: &IgnoreRecord) -> Applied {
        match record {
            IgnoreRecord::Cancel(c) => {
                self.jobs.entry(c.job_id).or_default().cancelled = true;
                Applied::Cancelled(c.job_id)
            }
            IgnoreRecord::Directive(Directive::Claim(c)) => {
                let job = self.jobs.entry(c.job_id).or_default();
                if job.holders.contains_key(&c.attempt) {
                    return Applied::Lost {
                        job: c.job_id,
                        attempt: c.attempt,
                    };
                }
                job.holders.insert(
                    c.attempt,
                    Holder {
                        worker_id: c.worker_id.clone(),
                        source: c.source,
                    },
                );
                job.released.remove(&c.attempt);
                Applied::Won {
                    job: c.job_id,
                    attempt: c.attempt,
                    worker: c.worker_id.clone(),
                }
            }
            IgnoreRecord::Directive(Directive::Release(r)) => {
                let job = self.jobs.entry(r.job_id).or_default();
                let held_by_them = job
                    .holders
                    .get(&r.attempt)
                    .is_some_and(|h| h.worker_id == r.worker_id);
                if !held_by_them {
                    return Applied::Ignored;
                }
                job.holders.remove(&r.attempt);
                job.released.insert(r.attempt, r.source);
                Applied::Released {
                    job: r.job_id,
                    attempt: r.attempt,
                }
            }
            IgnoreRecord::Directive(Directive::Requeue(q)) => {
                let job = self.jobs.entry(q.job_id).or_default();
                if job.requeued.is_some_and(|(a, _)| a >= q.attempt) {
                    return Applied::Ignored;
                }
                job.requeued = Some((q.attempt, q.source));
                Applied::Requeued {
                    job: q.job_id,
                    attempt: q.attempt,
                }
            }
        }
    }

    pub fn job(&self, id: JobId) -> Option<&JobDirectives> {
        self.jobs.get(&id)
    }

    pub fn is_cancelled(&self, id: JobId) -> bool {
        self.jobs.get(&id).is_some_and(|j| j.cancelled)
    }

    pub fn current_attempt(&self, id: JobId) -> u32 {
        self.jobs.get(&id).map_or(1, JobDirectives::current_attempt)
    }

    /// The worker that won (job, attempt), if any.
    pub fn holder(&self, id: JobId, attempt: u32) -> Option<&Holder> {
        self.jobs.get(&id)?.holders.get(&attempt)
    }

    /// Whether a copy of the job may still be run by someone: not
    /// cancelled and its current attempt not taken.
    pub fn is_free(&self, id: JobId) -> bool {
        self.jobs
            .get(&id)
            .is_none_or(|j| !j.cancelled && !j.is_taken())
    }

    /// Re-queued or handed-back jobs nobody holds yet, with the attempt
    /// to run and where to read it.
    pub fn pending(&self) -> impl Iterator<Item = (JobId, u32, Source)> + '_ {
        self.reopened.iter().filter_map(|id| {
            let (attempt, source) = self.jobs.get(id)?.pending()?;
            Some((*id, attempt, source))
        })
    }

    /// Every winning claim, for the observer's leases.
    pub fn holders(&self) -> impl Iterator<Item = (JobId, u32, &Holder)> + '_ {
        self.jobs
            .iter()
            .flat_map(|(id, j)| j.holders.iter().map(move |(a, h)| (*id, *a, h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> JobId {
        JobId::parse(&uuid::Uuid::from_u128(n).to_string()).unwrap()
    }

    fn at() -> DateTime<Utc> {
        timestamp::now()
    }

    fn src(offset: i64) -> Source {
        Source {
            partition: 1,
            offset,
        }
    }

    fn claim(job: u128, attempt: u32, worker: &str) -> IgnoreRecord {
        IgnoreRecord::Directive(Directive::Claim(Claim {
            job_id: id(job),
            attempt,
            worker_id: worker.into(),
            source: src(7),
            at: at(),
        }))
    }

    fn release(job: u128, attempt: u32, worker: &str) -> IgnoreRecord {
        IgnoreRecord::Directive(Directive::Release(Release {
            job_id: id(job),
            attempt,
            worker_id: worker.into(),
            source: src(7),
            at: at(),
        }))
    }

    fn requeue(job: u128, attempt: u32) -> IgnoreRecord {
        IgnoreRecord::Directive(Directive::Requeue(Requeue {
            job_id: id(job),
            attempt,
            source: src(7),
            reason: "lease lapsed".into(),
            at: at(),
        }))
    }

    fn cancel(job: u128) -> IgnoreRecord {
        IgnoreRecord::Cancel(CancelRequest {
            job_id: id(job),
            owner: "o".into(),
            requested_at: at(),
        })
    }

    fn won(job: u128, attempt: u32, worker: &str) -> Applied {
        Applied::Won {
            job: id(job),
            attempt,
            worker: worker.into(),
        }
    }

    /// Each row: records applied in order, what the last one did, then
    /// whether the job is free and which attempt is pending from where.
    #[test]
    fn the_claim_rule() {
        type Row = (&'static str, Vec<IgnoreRecord>, Applied, bool, Option<u32>);
        let rows: Vec<Row> = vec![
            (
                "first claim wins",
                vec![claim(1, 1, "a")],
                won(1, 1, "a"),
                false,
                None,
            ),
            (
                "a second claim loses",
                vec![claim(1, 1, "a"), claim(1, 1, "b")],
                Applied::Lost {
                    job: id(1),
                    attempt: 1,
                },
                false,
                None,
            ),
            (
                "a release by the winner reopens the attempt",
                vec![claim(1, 1, "a"), release(1, 1, "a")],
                Applied::Released {
                    job: id(1),
                    attempt: 1,
                },
                true,
                Some(1),
            ),
            (
                "then the next claim wins",
                vec![claim(1, 1, "a"), release(1, 1, "a"), claim(1, 1, "b")],
                won(1, 1, "b"),
                false,
                None,
            ),
            (
                "a release by someone else is ignored",
                vec![claim(1, 1, "a"), release(1, 1, "b")],
                Applied::Ignored,
                false,
                None,
            ),
            (
                "a requeue frees the next attempt",
                vec![claim(1, 1, "a"), requeue(1, 2)],
                Applied::Requeued {
                    job: id(1),
                    attempt: 2,
                },
                true,
                Some(2),
            ),
            (
                "the old attempt cannot be claimed again after a requeue",
                vec![
                    claim(1, 1, "a"),
                    requeue(1, 2),
                    claim(1, 2, "b"),
                    claim(1, 1, "c"),
                ],
                Applied::Lost {
                    job: id(1),
                    attempt: 1,
                },
                false,
                None,
            ),
            (
                "an older requeue is ignored",
                vec![requeue(1, 3), requeue(1, 2)],
                Applied::Ignored,
                true,
                Some(3),
            ),
            (
                "a cancelled job is not free and not pending",
                vec![claim(1, 1, "a"), requeue(1, 2), cancel(1)],
                Applied::Cancelled(id(1)),
                false,
                None,
            ),
            (
                "other jobs do not interfere",
                vec![claim(2, 1, "a"), claim(1, 1, "b")],
                won(1, 1, "b"),
                false,
                None,
            ),
        ];
        for (name, records, last, free, pending) in rows {
            let mut book = ClaimBook::default();
            let mut applied = Applied::Ignored;
            for r in &records {
                applied = book.apply(r);
            }
            assert_eq!(applied, last, "{name}");
            assert_eq!(book.is_free(id(1)), free, "{name}: free");
            let p = book
                .pending()
                .find(|(j, _, _)| *j == id(1))
                .map(|(_, a, _)| a);
            assert_eq!(p, pending, "{name}: pending");
        }
        assert!(
            ClaimBook::default().is_free(id(9)),
            "an unknown job is free"
        );
        assert_eq!(ClaimBook::default().current_attempt(id(9)), 1);
    }

    #[test]
    fn ignore_records_parse_by_kind() {
        let c = serde_json::to_vec(&serde_json::json!({
            "jobId": id(1).to_string(), "owner": "o", "requestedAt": "2026-12-01T10:00:00.000Z"
        }))
        .unwrap();
        assert!(matches!(
            IgnoreRecord::parse(&c),
            Ok(IgnoreRecord::Cancel(_))
        ));
        let IgnoreRecord::Directive(d) = claim(1, 2, "w") else {
            unreachable!()
        };
        let wire = serde_json::to_value(&d).unwrap();
        assert_eq!(wire["kind"], "claim");
        assert_eq!(wire["partition"], 1);
        assert_eq!(wire["offset"], 7);
        assert_eq!(wire["attempt"], 2);
        let back = IgnoreRecord::parse(&serde_json::to_vec(&wire).unwrap()).unwrap();
        assert_eq!(back, IgnoreRecord::Directive(d));
        assert!(IgnoreRecord::parse(b"{\"kind\":\"claim\"}").is_err());
        assert!(IgnoreRecord::parse(b"nope").is_err());
    }

    #[test]
    fn status_records_parse_by_kind() {
        let hb = Heartbeat {
            kind: Heartbeat::KIND.into(),
            worker_id: "w-1".into(),
            at: at(),
            interval_ms: 2000,
            state: WorkerState::Running,
            slots: 4,
            busy: 1,
            held: 0,
            queued: 5,
            partitions: vec![0, 3],
            leases: vec![Lease {
                job_id: id(1),
                attempt: 1,
                source: src(3),
                since: at(),
            }],
        };
        let bytes = serde_json::to_vec(&hb).unwrap();
        assert_eq!(
            StatusRecord::parse(&bytes).unwrap(),
            StatusRecord::Heartbeat(hb)
        );
        let event = StatusEvent::new(id(1), "o", crate::JobState::Running);
        let bytes = serde_json::to_vec(&event).unwrap();
        assert_eq!(
            StatusRecord::parse(&bytes).unwrap(),
            StatusRecord::Event(event)
        );
        assert_eq!(
            StatusRecord::parse(b"{\"kind\":\"future\"}").unwrap(),
            StatusRecord::Other("future".into())
        );
    }
}
