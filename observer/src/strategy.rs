//! The elasticity decision (`docs/contract.md` §6), with no I/O: a small function of the
//! backlog, the measured rates, the workers, the partitions and the policy,
//! plus a scale-down stabiliser that remembers recent recommendations.
//!
//! Model: a slot serves one job at a time, so one slot does
//! `1 / job_seconds` jobs per second. Enough slots are wanted that
//!
//! * arrivals are served at the target utilisation:
//!   `arrival_rate × job_seconds / target_utilisation`, and
//! * the jobs already waiting drain within the target time:
//!   `waiting × job_seconds / target_drain_seconds`,
//!
//! and never fewer than the slots busy right now; the workers wanted are
//! those slots divided by the slots a worker has, as heartbeats tell (one
//! per worker before any heartbeat). The backlog is the workers' consumer
//! lag, which also counts the jobs being run (a worker commits only the
//! done prefix), so the busy slots (or one job per member, without
//! heartbeats) are taken as in flight and the rest as waiting.

use std::collections::VecDeque;

use crate::window::WindowStats;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min_workers: u32,
    pub max_workers: u32,
    pub target_drain_seconds: f64,
    /// Fraction of the workers' capacity that steady arrivals may use, in
    /// (0, 1]: the headroom absorbs variation without queueing.
    pub target_utilisation: f64,
    /// A lower recommendation takes effect only after every recommendation
    /// within this window was that low (Kubernetes HPA's rule).
    pub scale_down_stabilisation_ms: i64,
    /// Partitions wanted per worker (`PARTITION_FACTOR`).
    pub partition_factor: u32,
    /// Service time assumed until jobs have been seen to finish.
    pub assumed_job_seconds: f64,
}

/// What the decision looks at, measured by the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Consumer lag of the workers' group on the jobs topic.
    pub backlog: u64,
    /// Jobs queued per second, smoothed over recent windows.
    pub arrival_per_second: f64,
    /// Mean run time of recently finished jobs, if any finished.
    pub job_seconds: Option<f64>,
    /// Members of the workers' group.
    pub workers: u32,
    /// Partitions of the jobs topic; 0 when unknown.
    pub partitions: u32,
    /// The workers' slots as their heartbeats tell; `None` before any
    /// heartbeat (one slot per worker is assumed then).
    pub slots: Option<SlotLoad>,
}

/// Slots of the live workers (`docs/dispatch.md` §9).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotLoad {
    /// The most slots any live worker has: what a new worker will bring.
    pub per_worker: u32,
    /// Slots running a job now.
    pub busy: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub current: u32,
    pub desired: u32,
    /// Set when the jobs topic should grow to keep `PARTITION_FACTOR`
    /// partitions per wanted worker.
    pub partitions_wanted: Option<u32>,
    pub reason: String,
}

/// Arrival rate and service time from the most recent windows (oldest
/// first): the arrival rate over the last `rate_windows`, the service time
/// over the last `service_windows` in which something finished, so a quiet
/// spell does not forget how long jobs take.
pub fn measure(
    recent: &[WindowStats],
    rate_windows: usize,
    service_windows: usize,
) -> (f64, Option<f64>) {
    let last = &recent[recent.len().saturating_sub(rate_windows)..];
    let arrivals: u64 = last.iter().map(|w| w.arrivals).sum();
    let span_ms: i64 = last.iter().map(|w| w.length_ms).sum();
    let arrival_per_second = if span_ms > 0 {
        arrivals as f64 * 1000.0 / span_ms as f64
    } else {
        0.0
    };
    let (sum, count) = recent
        .iter()
        .rev()
        .filter(|w| w.elapsed_count > 0)
        .take(service_windows)
        .fold((0.0, 0u64), |(s, c), w| {
            (s + w.elapsed_sum, c + w.elapsed_count)
        });
    let job_seconds = (count > 0).then(|| sum / count as f64);
    (arrival_per_second, job_seconds)
}

/// The workers the load calls for, within `[min, max]` but before the
/// partition cap and the stabiliser, with the arithmetic as a reason.
pub fn recommend(load: &Load, policy: &Policy) -> (u32, String) {
    let job_seconds = load
        .job_seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(policy.assumed_job_seconds);
    let arrival = if load.arrival_per_second.is_finite() {
        load.arrival_per_second.max(0.0)
    } else {
        0.0
    };
    let per_worker = load.slots.map_or(1, |s| s.per_worker.max(1));
    let busy = match load.slots {
        Some(s) => load.backlog.min(u64::from(s.busy)),
        None => load.backlog.min(u64::from(load.workers)),
    };
    let waiting = load.backlog - busy;
    let for_arrivals = arrival * job_seconds / policy.target_utilisation;
    let for_backlog = waiting as f64 * job_seconds / policy.target_drain_seconds;
    let need_slots = (for_arrivals + for_backlog).ceil().max(busy as f64);
    // The float is clamped before the cast so that no input can wrap it.
    let need_slots = need_slots.min(f64::from(u32::MAX)) as u32;
    let need = need_slots.div_ceil(per_worker);
    let bounded = need.clamp(
        policy.min_workers,
        policy.max_workers.max(policy.min_workers),
    );
    let mut reason = format!(
        "{waiting} waiting + {busy} running, {arrival:.2} jobs/s arriving, {job_seconds:.1} s per job{}: \
         {for_arrivals:.2} {unit} for arrivals at {:.0}% utilisation + {for_backlog:.2} to drain in {:.0} s \
         => {need_slots}{per}",
        if load.job_seconds.is_none() { " (assumed)" } else { "" },
        policy.target_utilisation * 100.0,
        policy.target_drain_seconds,
        unit = if per_worker > 1 { "slots" } else { "workers" },
        per = if per_worker > 1 {
            format!(" slots => {need} workers of {per_worker} slots")
        } else {
            String::new()
        },
    );
    if bounded != need {
        reason.push_str(&format!(
            ", bounded to [{}, {}] => {bounded}",
            policy.min_workers, policy.max_workers
        ));
    }
    (bounded, reason)
}

/// Scale-down stabilisation: the effective recommendation is the highest
/// one made within the window, so a higher one applies at once and a lower
/// one only after it has held for the whole window.
#[derive(Debug, Clone, Default)]
pub struct Stabiliser {
    window_ms: i64,
    history: VecDeque<(i64, u32)>,
}

impl Stabiliser {
    pub fn new(window_ms: i64) -> Self {
        Self {
            window_ms,
            history: VecDeque::new(),
        }
    }

    pub fn stabilise(&mut self, now_ms: i64, recommended: u32) -> u32 {
        while self
            .history
            .front()
            .is_some_and(|&(at, _)| at <= now_ms - self.window_ms)
        {
            self.history.pop_front();
        }
        self.history.push_back((now_ms, recommended));
        self.history
            .iter()
            .map(|&(_, r)| r)
            .max()
            .unwrap_or(recommended)
    }
}

/// The policy with its stabiliser: one per observer.
#[derive(Debug, Clone)]
pub struct Strategy {
    policy: Policy,
    stabiliser: Stabiliser,
}

impl Strategy {
    pub fn new(policy: Policy) -> Self {
        let stabiliser = Stabiliser::new(policy.scale_down_stabilisation_ms);
        Self { policy, stabiliser }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn decide(&mut self, now_ms: i64, load: &Load) -> Decision {
        let (recommended, mut reason) = recommend(load, &self.policy);
        let stable = self.stabiliser.stabilise(now_ms, recommended);
        if stable > recommended {
            reason.push_str(&format!(
                ", holding {stable} for the scale-down stabilisation window"
            ));
        }
        // Consumers beyond the partition count would sit idle; the minimum
        // still wins, since the operator asked for it explicitly.
        let desired = if load.partitions > 0 && stable > load.partitions {
            reason.push_str(&format!(", capped by {} partitions", load.partitions));
            load.partitions.max(self.policy.min_workers)
        } else {
            stable
        };
        let wanted = stable.saturating_mul(self.policy.partition_factor);
        let partitions_wanted = (load.partitions > 0 && wanted > load.partitions).then_some(wanted);
        Decision {
            current: load.workers,
            desired,
            partitions_wanted,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        backlog: u64,
        arrival: f64,
        job_seconds: Option<f64>,
        workers: u32,
        partitions: u32,
    ) -> Load {
        Load {
            backlog,
            arrival_per_second: arrival,
            job_seconds,
            workers,
            partitions,
            slots: None,
        }
    }

    fn policy() -> Policy {
        Policy {
            min_workers: 1,
            max_workers: 10,
            target_drain_seconds: 30.0,
            target_utilisation: 0.8,
            scale_down_stabilisation_ms: 10_000,
            partition_factor: 2,
            assumed_job_seconds: 10.0,
        }
    }

    #[test]
    fn one_decision_from_one_load() {
        struct Case {
            name: &'static str,
            load: Load,
            policy: Policy,
            desired: u32,
            partitions_wanted: Option<u32>,
        }
        let p = policy();
        let cases = [
            Case {
                name: "idle: nothing waiting, nothing arriving -> the minimum",
                load: load(0, 0.0, Some(5.0), 3, 8),
                policy: p.clone(),
                desired: 1,
                partitions_wanted: None,
            },
            Case {
                name: "idle with min 0 scales to zero",
                load: load(0, 0.0, Some(5.0), 1, 8),
                policy: Policy { min_workers: 0, ..p.clone() },
                desired: 0,
                partitions_wanted: None,
            },
            Case {
                name: "steady: 1 job/s of 4 s jobs at 80% -> 5 workers, all busy, none waiting",
                load: load(5, 1.0, Some(4.0), 5, 10),
                policy: p.clone(),
                desired: 5,
                partitions_wanted: None,
            },
            Case {
                name: "burst: 30 sleeping jobs on one worker, 5 s each, drain in 30 s -> 29*5/30 = 4.83 -> 5",
                load: load(30, 0.0, Some(5.0), 1, 8),
                policy: p.clone(),
                desired: 5,
                partitions_wanted: Some(10),
            },
            Case {
                name: "burst still arriving adds the arrival term: 0.5/s*5/0.8 + 4.83 = 7.96 -> 8",
                load: load(30, 0.5, Some(5.0), 1, 16),
                policy: p.clone(),
                desired: 8,
                partitions_wanted: None,
            },
            Case {
                name: "slots: 30 waiting + 4 running on workers of 4 slots, 5 s jobs -> 30*5/30 = 5, at least 4 busy -> 5 slots -> 2 workers",
                load: Load {
                    slots: Some(SlotLoad { per_worker: 4, busy: 4 }),
                    ..load(34, 0.0, Some(5.0), 1, 8)
                },
                policy: p.clone(),
                desired: 2,
                partitions_wanted: None,
            },
            Case {
                name: "slots: 8 busy on 4-slot workers, nothing waiting -> 2 workers kept",
                load: Load {
                    slots: Some(SlotLoad { per_worker: 4, busy: 8 }),
                    ..load(8, 0.0, Some(60.0), 2, 8)
                },
                policy: p.clone(),
                desired: 2,
                partitions_wanted: None,
            },
            Case {
                name: "slots: 2 jobs/s of 4 s at 80% = 10 slots -> 3 workers of 4",
                load: Load {
                    slots: Some(SlotLoad { per_worker: 4, busy: 0 }),
                    ..load(0, 2.0, Some(4.0), 1, 8)
                },
                policy: p.clone(),
                desired: 3,
                partitions_wanted: None,
            },
            Case {
                name: "no job has finished yet: the assumed 10 s is used, 12*10/30 = 4",
                load: load(13, 0.0, None, 1, 8),
                policy: p.clone(),
                desired: 4,
                partitions_wanted: None,
            },
            Case {
                name: "busy workers are never scaled away: 6 running, none waiting, no arrivals",
                load: load(6, 0.0, Some(120.0), 6, 12),
                policy: p.clone(),
                desired: 6,
                partitions_wanted: None,
            },
            Case {
                name: "a worker died: its job is waiting again, 3 members left -> 5 + 2*4/30 -> 6",
                load: load(5, 1.0, Some(4.0), 3, 12),
                policy: p.clone(),
                desired: 6,
                partitions_wanted: None,
            },
            Case {
                name: "partition cap: 8 wanted, 4 partitions -> 4, and ask for 16 partitions",
                load: load(30, 0.5, Some(5.0), 1, 4),
                policy: p.clone(),
                desired: 4,
                partitions_wanted: Some(16),
            },
            Case {
                name: "maximum bound, partitions grown for the bounded count only",
                load: load(1000, 5.0, Some(60.0), 2, 8),
                policy: p.clone(),
                desired: 8,
                partitions_wanted: Some(20),
            },
            Case {
                name: "minimum wins over the partition cap",
                load: load(0, 0.0, Some(1.0), 0, 1),
                policy: Policy { min_workers: 2, ..p.clone() },
                desired: 2,
                partitions_wanted: Some(4),
            },
            Case {
                name: "unknown partition count (0): no cap, no growth",
                load: load(30, 0.0, Some(5.0), 1, 0),
                policy: p.clone(),
                desired: 5,
                partitions_wanted: None,
            },
            Case {
                name: "garbage rates are treated as zero and the assumption",
                load: load(0, f64::NAN, Some(f64::INFINITY), 0, 8),
                policy: p.clone(),
                desired: 1,
                partitions_wanted: None,
            },
            Case {
                name: "an absurd backlog saturates at the maximum",
                load: load(u64::MAX, f64::MAX, Some(1e300), 0, 64),
                policy: p.clone(),
                desired: 10,
                partitions_wanted: None,
            },
        ];
        for case in cases {
            let d = Strategy::new(case.policy).decide(0, &case.load);
            assert_eq!(
                (d.desired, d.partitions_wanted),
                (case.desired, case.partitions_wanted),
                "{}: {}",
                case.name,
                d.reason
            );
            assert_eq!(d.current, case.load.workers, "{}", case.name);
        }
    }

    #[test]
    fn scale_up_is_immediate_and_scale_down_waits_for_the_stabilisation_window() {
        // (time ms, load, desired): the stabilisation window is 10 s.
        let steps = [
            (0, load(0, 0.0, Some(5.0), 1, 16), 1),
            (2_000, load(30, 0.0, Some(5.0), 1, 16), 5),
            (4_000, load(60, 0.0, Some(5.0), 5, 16), 10),
            // The backlog drains: recommendations fall but the 10 made at
            // 4 s holds until 14 s.
            (6_000, load(10, 0.0, Some(5.0), 10, 16), 10),
            (12_000, load(0, 0.0, Some(5.0), 10, 16), 10),
            // The 10 made at 6 s (ten busy workers) still holds...
            (14_000, load(0, 0.0, Some(5.0), 10, 16), 10),
            // ...and expires at 16 s: every recommendation since was 1.
            (16_000, load(0, 0.0, Some(5.0), 10, 16), 1),
            // Flapping input: up at once, down only after 10 s of calm.
            (18_000, load(20, 0.0, Some(5.0), 1, 16), 4),
            (20_000, load(0, 0.0, Some(5.0), 1, 16), 4),
            (27_999, load(0, 0.0, Some(5.0), 1, 16), 4),
            (28_000, load(0, 0.0, Some(5.0), 1, 16), 1),
        ];
        let mut s = Strategy::new(policy());
        for (at, l, want) in steps {
            let d = s.decide(at, &l);
            assert_eq!(d.desired, want, "at {at} ms: {}", d.reason);
        }
    }

    #[test]
    fn the_reason_shows_the_arithmetic() {
        let mut s = Strategy::new(policy());
        let d = s.decide(0, &load(30, 0.0, Some(5.0), 1, 4));
        assert_eq!(
            d.reason,
            "29 waiting + 1 running, 0.00 jobs/s arriving, 5.0 s per job: 0.00 workers for arrivals at 80% \
             utilisation + 4.83 to drain in 30 s => 5, capped by 4 partitions"
        );
        let d = s.decide(2_000, &load(0, 0.0, None, 0, 4));
        assert!(d.reason.contains("(assumed)"), "{}", d.reason);
        assert!(d.reason.contains("holding 5"), "{}", d.reason);
    }

    #[test]
    fn rates_are_measured_over_recent_windows() {
        fn w(i: i64, arrivals: u64, elapsed: &[f64]) -> WindowStats {
            WindowStats {
                start_ms: i * 2000,
                length_ms: 2000,
                arrivals,
                started: 0,
                finished: elapsed.len() as u64,
                elapsed_sum: elapsed.iter().sum(),
                elapsed_count: elapsed.len() as u64,
            }
        }
        struct Case {
            name: &'static str,
            windows: Vec<WindowStats>,
            want: (f64, Option<f64>),
        }
        let cases = [
            Case {
                name: "nothing seen yet",
                windows: vec![],
                want: (0.0, None),
            },
            Case {
                name: "arrivals over the last 3 windows only (6 s), service over the last 2 with finishes",
                windows: vec![
                    w(0, 100, &[100.0]),
                    w(1, 3, &[2.0, 4.0]),
                    w(2, 0, &[]),
                    w(3, 6, &[6.0]),
                ],
                want: (1.5, Some(4.0)),
            },
            Case {
                name: "a quiet spell keeps the last known service time",
                windows: vec![w(0, 0, &[7.0]), w(1, 0, &[]), w(2, 0, &[]), w(3, 0, &[]), w(4, 0, &[])],
                want: (0.0, Some(7.0)),
            },
        ];
        for case in cases {
            assert_eq!(measure(&case.windows, 3, 2), case.want, "{}", case.name);
        }
    }
}
