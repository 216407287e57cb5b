//! The workers as their heartbeats tell, and the leases of running jobs
//! (`docs/dispatch.md` §7, §9), with no I/O. Time is the observer's own
//! clock when it read a record, in milliseconds.

use std::collections::{HashMap, HashSet};

use common::{Heartbeat, JobId, Source, WorkerState};

#[derive(Debug, Clone)]
struct Heard {
    at_ms: i64,
    beat: Heartbeat,
}

/// One claimed attempt and when it was last known to be alive.
#[derive(Debug, Clone, PartialEq)]
pub struct Cover {
    pub holder: String,
    pub source: Source,
    /// When the claim was read or a heartbeat of its holder last listed it.
    pub covered_ms: i64,
}

/// An attempt whose lease lapsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Lapse {
    pub job: JobId,
    pub attempt: u32,
    pub holder: String,
    pub source: Source,
    pub silent_ms: i64,
}

/// What the observation reports of the fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    pub live_workers: u32,
    pub silent_workers: u32,
    pub slots: u32,
    pub busy: u32,
    /// The most slots a live worker has.
    pub per_worker: u32,
    /// Partitions last listed by a silent worker and by no live one.
    pub orphaned: Vec<i32>,
    pub leases: u32,
}

#[derive(Debug)]
pub struct Fleet {
    lease_ms: i64,
    workers: HashMap<String, Heard>,
    last_any_ms: Option<i64>,
    covers: HashMap<(JobId, u32), Cover>,
    /// Attempts known to have ended, so that their claims make no lease.
    settled: HashSet<(JobId, u32)>,
}

impl Fleet {
    pub fn new(lease_ms: i64) -> Self {
        Self {
            lease_ms,
            workers: HashMap::new(),
            last_any_ms: None,
            covers: HashMap::new(),
            settled: HashSet::new(),
        }
    }

    pub fn heartbeat(&mut self, beat: Heartbeat, now_ms: i64) {
        // A new observer reads the status topic from its start: what was
        // sent before its forgetting time is history, not a live worker.
        // The margin is wide enough for clocks that disagree.
        let forget = 10 * self.lease_ms;
        if now_ms - beat.at.timestamp_millis() > forget {
            return;
        }
        // After a spell with no heartbeat at all (broker stall, observer
        // behind) every lease counts from now: silence that nobody could
        // have broken is no sign of a dead worker.
        let interval = i64::try_from(beat.interval_ms).unwrap_or(i64::MAX);
        if self
            .last_any_ms
            .is_some_and(|last| now_ms - last > 2 * interval.max(1))
        {
            for cover in self.covers.values_mut() {
                cover.covered_ms = cover.covered_ms.max(now_ms);
            }
        }
        self.last_any_ms = Some(now_ms);
        for lease in &beat.leases {
            let key = (lease.job_id, lease.attempt);
            if self.settled.contains(&key) {
                continue;
            }
            let cover = self.covers.entry(key).or_insert_with(|| Cover {
                holder: beat.worker_id.clone(),
                source: lease.source,
                covered_ms: now_ms,
            });
            cover.covered_ms = now_ms;
        }
        let id = beat.worker_id.clone();
        self.workers.insert(
            id,
            Heard {
                at_ms: now_ms,
                beat,
            },
        );
        // Workers silent for long are forgotten (their leases stay).
        self.workers.retain(|_, h| now_ms - h.at_ms <= forget);
    }

    /// A claim won by `holder`, read on the ignore topic.
    pub fn claimed(&mut self, job: JobId, attempt: u32, holder: &str, source: Source, now_ms: i64) {
        if self.settled.contains(&(job, attempt)) {
            return;
        }
        self.covers.entry((job, attempt)).or_insert_with(|| Cover {
            holder: holder.to_string(),
            source,
            covered_ms: now_ms,
        });
    }

    /// The attempt ended (terminal event), was released or re-queued:
    /// it holds no lease any more.
    pub fn settle(&mut self, job: JobId, attempt: u32) {
        self.covers.remove(&(job, attempt));
        self.settled.insert((job, attempt));
    }

    /// Every attempt up to `attempt` ended.
    pub fn ended(&mut self, job: JobId, attempt: u32) {
        for a in 1..=attempt.max(1) {
            self.settle(job, a);
        }
    }

    /// Leases not renewed for longer than the lease time, while the
    /// heartbeats of others show that renewing was possible.
    pub fn lapsed(&self, now_ms: i64) -> Vec<Lapse> {
        let Some(last) = self.last_any_ms else {
            return Vec::new();
        };
        if now_ms - last > self.lease_ms {
            return Vec::new();
        }
        let mut lapsed: Vec<Lapse> = self
            .covers
            .iter()
            .filter(|(_, c)| now_ms - c.covered_ms > self.lease_ms)
            .map(|(&(job, attempt), c)| Lapse {
                job,
                attempt,
                holder: c.holder.clone(),
                source: c.source,
                silent_ms: now_ms - c.covered_ms,
            })
            .collect();
        lapsed.sort_by_key(|l| std::cmp::Reverse(l.silent_ms));
        lapsed
    }

    pub fn view(&self, now_ms: i64) -> FleetView {
        let mut view = FleetView {
            leases: self.covers.len() as u32,
            ..FleetView::default()
        };
        let mut live_partitions = HashSet::new();
        let mut silent_partitions = HashSet::new();
        for heard in self.workers.values() {
            let live = now_ms - heard.at_ms <= self.lease_ms;
            let b = &heard.beat;
            if live {
                view.live_workers += 1;
                live_partitions.extend(b.partitions.iter().copied());
                if b.state == WorkerState::Running {
                    view.slots += b.slots;
                    view.busy += b.busy.min(b.slots);
                    view.per_worker = view.per_worker.max(b.slots);
                }
            } else {
                view.silent_workers += 1;
                silent_partitions.extend(b.partitions.iter().copied());
            }
        }
        view.orphaned = silent_partitions
            .difference(&live_partitions)
            .copied()
            .collect();
        view.orphaned.sort_unstable();
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use common::{timestamp, Lease};

    const LEASE: i64 = 6000;

    fn id(n: u128) -> JobId {
        JobId::parse(&uuid::Uuid::from_u128(n).to_string()).unwrap()
    }

    fn src() -> Source {
        Source {
            partition: 2,
            offset: 9,
        }
    }

    fn beat(
        worker: &str,
        slots: u32,
        busy: u32,
        partitions: &[i32],
        leases: &[(u128, u32)],
    ) -> Heartbeat {
        Heartbeat {
            kind: Heartbeat::KIND.into(),
            worker_id: worker.into(),
            at: timestamp::now(),
            interval_ms: 2000,
            state: WorkerState::Running,
            slots,
            busy,
            held: 0,
            queued: 0,
            partitions: partitions.to_vec(),
            leases: leases
                .iter()
                .map(|&(j, a)| Lease {
                    job_id: id(j),
                    attempt: a,
                    source: src(),
                    since: timestamp::now(),
                })
                .collect(),
        }
    }

    fn lapsed_jobs(fleet: &Fleet, now: i64) -> Vec<(u128, u32)> {
        fleet
            .lapsed(now)
            .into_iter()
            .map(|l| {
                (
                    uuid::Uuid::parse_str(&l.job.to_string()).unwrap().as_u128(),
                    l.attempt,
                )
            })
            .collect()
    }

    #[test]
    fn a_heartbeat_older_than_the_forgetting_time_is_history() {
        let now = timestamp::now().timestamp_millis();
        let mut old = beat("a", 1, 1, &[0], &[(1, 1)]);
        old.at = Utc.timestamp_millis_opt(now - 10 * LEASE - 1).unwrap();
        let mut late = beat("b", 1, 1, &[1], &[(2, 1)]);
        late.at = Utc.timestamp_millis_opt(now - 10 * LEASE).unwrap();
        let mut f = Fleet::new(LEASE);
        f.heartbeat(old, now);
        f.heartbeat(late, now);
        let v = f.view(now);
        assert_eq!((v.live_workers, v.leases), (1, 1), "only b counts: {v:?}");
    }

    #[test]
    fn a_lease_lapses_when_its_holder_goes_silent_and_others_do_not() {
        let mut f = Fleet::new(LEASE);
        f.claimed(id(1), 1, "a", src(), 0);
        f.heartbeat(beat("a", 1, 1, &[0], &[(1, 1)]), 100);
        f.heartbeat(beat("b", 1, 0, &[1], &[]), 100);
        // b keeps beating; a stops after 100.
        for t in (2100..=8000).step_by(2000) {
            f.heartbeat(beat("b", 1, 0, &[1], &[]), t);
        }
        assert!(lapsed_jobs(&f, 6100).is_empty(), "within the lease");
        assert_eq!(lapsed_jobs(&f, 6200), vec![(1, 1)]);
        let v = f.view(8000);
        assert_eq!((v.live_workers, v.silent_workers), (1, 1));
        assert_eq!(v.orphaned, vec![0]);
    }

    #[test]
    fn a_listed_lease_stays_covered() {
        let mut f = Fleet::new(LEASE);
        f.claimed(id(1), 1, "a", src(), 0);
        for t in (0..=20_000).step_by(2000) {
            f.heartbeat(beat("a", 2, 1, &[0], &[(1, 1)]), t);
        }
        assert!(lapsed_jobs(&f, 21_000).is_empty());
    }

    #[test]
    fn a_claim_never_listed_by_a_live_holder_lapses() {
        // A worker restarted under the same id no longer lists the job.
        let mut f = Fleet::new(LEASE);
        f.claimed(id(1), 1, "a", src(), 0);
        for t in (0..=8000).step_by(2000) {
            f.heartbeat(beat("a", 1, 0, &[0], &[]), t);
        }
        assert_eq!(lapsed_jobs(&f, 8000), vec![(1, 1)]);
    }

    #[test]
    fn nothing_lapses_while_no_heartbeat_is_heard() {
        let mut f = Fleet::new(LEASE);
        f.heartbeat(beat("a", 1, 1, &[0], &[(1, 1)]), 0);
        assert!(
            lapsed_jobs(&f, 7000).is_empty(),
            "the only worker died: no clock"
        );
        // A replacement's first heartbeat restarts the count...
        f.heartbeat(beat("b", 1, 0, &[0], &[]), 30_000);
        assert!(lapsed_jobs(&f, 30_000).is_empty());
        f.heartbeat(beat("b", 1, 0, &[0], &[]), 34_000);
        f.heartbeat(beat("b", 1, 0, &[0], &[]), 36_000);
        // ...and one lease later the dead worker's job lapses.
        assert_eq!(lapsed_jobs(&f, 36_100), vec![(1, 1)]);
    }

    #[test]
    fn a_broker_stall_lapses_nothing() {
        let mut f = Fleet::new(LEASE);
        f.heartbeat(beat("a", 1, 1, &[0], &[(1, 1)]), 0);
        f.heartbeat(beat("b", 1, 1, &[1], &[(2, 1)]), 0);
        // Nothing for 20 s, then b is heard first.
        f.heartbeat(beat("b", 1, 1, &[1], &[(2, 1)]), 20_000);
        assert!(lapsed_jobs(&f, 20_100).is_empty());
        f.heartbeat(beat("a", 1, 1, &[0], &[(1, 1)]), 20_300);
        assert!(lapsed_jobs(&f, 26_000).is_empty());
    }

    #[test]
    fn ended_and_settled_attempts_hold_no_lease() {
        let mut f = Fleet::new(LEASE);
        f.claimed(id(1), 1, "a", src(), 0);
        f.claimed(id(2), 1, "a", src(), 0);
        f.ended(id(1), 1);
        f.settle(id(2), 1);
        f.heartbeat(beat("b", 1, 0, &[0], &[]), 7000);
        assert!(lapsed_jobs(&f, 7000).is_empty());
        // A late listing of an ended attempt does not bring it back.
        f.heartbeat(beat("a", 1, 1, &[0], &[(1, 1)]), 7000);
        assert_eq!(f.view(7000).leases, 0);
    }

    #[test]
    fn the_view_counts_slots_of_live_running_workers() {
        let mut f = Fleet::new(LEASE);
        f.heartbeat(beat("a", 4, 3, &[0, 1], &[]), 0);
        f.heartbeat(beat("b", 2, 2, &[2, 3], &[]), 0);
        let mut draining = beat("c", 4, 1, &[4], &[]);
        draining.state = WorkerState::Draining;
        f.heartbeat(draining, 0);
        let v = f.view(1000);
        assert_eq!(
            (v.live_workers, v.slots, v.busy, v.per_worker),
            (3, 6, 5, 4)
        );
        assert!(v.orphaned.is_empty());
    }
}
