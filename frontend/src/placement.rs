//! Which partition a new job goes to (`docs/dispatch.md` §6): one owned by
//! the live worker where it would start soonest, counting what each
//! worker's last heartbeat reported (running, held, waiting on its
//! partitions) and what this replica placed since; never one whose owner
//! went silent; without heartbeats, the key decides as it always did.
//! Placement only saves the steal delay: a job on a busy or silent owner's
//! partition is taken by a free worker anyway.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use common::heartbeats::{Heartbeats, FRESH};
use common::settings::KafkaSettings;
use common::{timestamp, Heartbeat, JobId};

/// How a live worker stood at its last heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub slots: u32,
    /// Jobs running, held or waiting on its partitions.
    pub taken: u32,
    pub partitions: Vec<i32>,
    /// When it said so (ms): later placements are not in `taken`.
    pub at_ms: i64,
}

impl Standing {
    fn of(beat: &Heartbeat) -> Self {
        Self {
            slots: beat.slots,
            taken: beat.busy + beat.held + beat.queued,
            partitions: beat.partitions.clone(),
            at_ms: beat.at.timestamp_millis(),
        }
    }
}

/// The jobs this replica placed lately: a burst of submissions lands
/// between two heartbeats, which would otherwise send them all to the
/// same worker.
#[derive(Debug, Default)]
pub struct Placed {
    recent: VecDeque<(i64, i32)>,
}

impl Placed {
    fn record(&mut self, at_ms: i64, partition: i32) {
        let keep = i64::try_from(FRESH.as_millis()).unwrap_or(i64::MAX);
        while self.recent.front().is_some_and(|&(t, _)| at_ms - t > keep) {
            self.recent.pop_front();
        }
        self.recent.push_back((at_ms, partition));
    }

    /// Jobs placed after `after_ms` on any of `partitions`.
    fn since(&self, after_ms: i64, partitions: &[i32]) -> u32 {
        let n = self
            .recent
            .iter()
            .rev()
            .take_while(|&&(t, _)| t > after_ms)
            .filter(|(_, p)| partitions.contains(p))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// The partition for job `id` among `live` workers: one of the worker
/// where the job's place in line, in rounds of its slots, is earliest;
/// `None` when no live worker owns a partition. The job id is the
/// (uniform) random choice among equals, so replicas do not all pick the
/// same worker.
pub fn choose(id: JobId, live: &[Standing], placed: &Placed) -> Option<i32> {
    let roll = u64::from_le_bytes(id.as_bytes()[..8].try_into().ok()?);
    let place = |s: &Standing| {
        let ahead = s.taken.saturating_add(placed.since(s.at_ms, &s.partitions));
        (f64::from(ahead) + 1.0) / f64::from(s.slots.max(1))
    };
    let live: Vec<(&Standing, f64)> = live
        .iter()
        .filter(|s| !s.partitions.is_empty())
        .map(|s| (s, place(s)))
        .collect();
    let soonest = live.iter().map(|&(_, p)| p).fold(f64::INFINITY, f64::min);
    let best: Vec<&Standing> = live
        .iter()
        .filter(|&&(_, p)| p <= soonest)
        .map(|&(s, _)| s)
        .collect();
    let worker = best.get(usize::try_from(roll % best.len().max(1) as u64).ok()?)?;
    let i = usize::try_from((roll >> 32) % worker.partitions.len() as u64).ok()?;
    worker.partitions.get(i).copied()
}

/// Placement by the workers' heartbeats.
#[derive(Clone)]
pub struct Placement {
    beats: Heartbeats,
    placed: Arc<Mutex<Placed>>,
}

impl Placement {
    pub fn start(kafka: &KafkaSettings) -> anyhow::Result<Self> {
        // Heartbeats come every 2 s and after changes; a long wait spares
        // the broker.
        Ok(Self {
            beats: Heartbeats::start(kafka, "placement", 500)?,
            placed: Arc::default(),
        })
    }

    /// The partition for a new job, or `None` to let its key decide.
    pub fn partition(&self, id: JobId) -> Option<i32> {
        let live = self.beats.live(|b| Some(Standing::of(b)));
        let mut placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        let partition = choose(id, &live, &placed)?;
        placed.record(timestamp::now().timestamp_millis(), partition);
        Some(partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn standing(slots: u32, taken: u32, partitions: &[i32]) -> Standing {
        Standing {
            slots,
            taken,
            partitions: partitions.to_vec(),
            at_ms: 1_000,
        }
    }

    /// `n` jobs placed one after another at t = 2 s, 2.001 s, ...: after
    /// every heartbeat in `live`.
    fn burst(live: &[Standing], n: usize) -> (HashMap<i32, usize>, Placed) {
        let mut placed = Placed::default();
        let mut counts = HashMap::new();
        for k in 0..n {
            if let Some(p) = choose(JobId::new(), live, &placed) {
                placed.record(2_000 + k as i64, p);
                *counts.entry(p).or_default() += 1;
            }
        }
        (counts, placed)
    }

    fn per_worker(live: &[Standing], counts: &HashMap<i32, usize>) -> Vec<usize> {
        live.iter()
            .map(|s| {
                s.partitions
                    .iter()
                    .map(|p| counts.get(p).unwrap_or(&0))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn a_burst_between_heartbeats_splits_evenly_over_equal_workers() {
        let live = [
            standing(1, 0, &[0, 1]),
            standing(1, 0, &[2, 3]),
            standing(1, 0, &[4, 5]),
            standing(1, 0, &[6, 7]),
        ];
        for _ in 0..50 {
            let (counts, _) = burst(&live, 24);
            assert_eq!(per_worker(&live, &counts), [6, 6, 6, 6], "{counts:?}");
        }
    }

    #[test]
    fn jobs_go_in_proportion_to_slots_and_to_what_is_already_there() {
        // (slots, taken) of each worker, jobs placed, jobs each gets.
        type Case<'a> = (&'a [(u32, u32)], usize, &'a [usize]);
        let cases: &[Case<'_>] = &[
            (&[(3, 0), (1, 0)], 8, &[6, 2]),
            (&[(4, 4), (4, 0)], 4, &[0, 4]),
            (&[(4, 4), (4, 0)], 12, &[4, 8]),
            // A backlog on a busy worker's partitions (queued) counts.
            (&[(1, 5), (1, 1), (1, 0)], 5, &[0, 2, 3]),
            (&[(2, 0), (1, 3)], 4, &[4, 0]),
        ];
        for (workers, n, want) in cases {
            let live: Vec<Standing> = workers
                .iter()
                .enumerate()
                .map(|(i, &(slots, taken))| standing(slots, taken, &[i as i32]))
                .collect();
            for _ in 0..20 {
                let (counts, _) = burst(&live, *n);
                assert_eq!(
                    per_worker(&live, &counts),
                    want.to_vec(),
                    "{workers:?} × {n}"
                );
            }
        }
    }

    #[test]
    fn placements_before_a_heartbeat_are_not_counted_again() {
        let (_, placed) = burst(&[standing(1, 0, &[0])], 5);
        assert_eq!(placed.since(1_000, &[0]), 5);
        assert_eq!(placed.since(2_002, &[0]), 2, "placed at 2.003 and 2.004 s");
        assert_eq!(placed.since(1_000, &[1]), 0, "another worker's partition");
        // A worker that reports its backlog after the burst competes with
        // its real load again.
        let live = [
            Standing {
                at_ms: 2_010,
                ..standing(1, 5, &[0])
            },
            standing(1, 0, &[1]),
        ];
        assert_eq!(choose(JobId::new(), &live, &placed), Some(1));
    }

    #[test]
    fn placements_older_than_a_heartbeat_is_fresh_are_forgotten() {
        let mut placed = Placed::default();
        placed.record(0, 0);
        placed.record(1, 0);
        placed.record(7_000, 1);
        assert_eq!(placed.recent.len(), 1);
        assert_eq!(placed.since(-1, &[0, 1]), 1);
    }

    #[test]
    fn equals_are_chosen_at_random_by_the_job_id() {
        let live = [
            standing(1, 2, &[0]),
            standing(1, 2, &[1]),
            standing(1, 3, &[2]),
        ];
        let placed = Placed::default();
        let mut counts: HashMap<i32, usize> = HashMap::new();
        for _ in 0..1000 {
            *counts
                .entry(choose(JobId::new(), &live, &placed).unwrap())
                .or_default() += 1;
        }
        assert_eq!(counts.get(&2), None, "{counts:?}");
        assert!(counts[&0] > 400 && counts[&1] > 400, "{counts:?}");
    }

    #[test]
    fn no_live_owner_leaves_it_to_the_key() {
        let placed = Placed::default();
        assert_eq!(choose(JobId::new(), &[], &placed), None);
        assert_eq!(choose(JobId::new(), &[standing(4, 0, &[])], &placed), None);
    }
}
