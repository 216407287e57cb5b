//! Which partition a new job goes to (`docs/dispatch.md` §6): one owned by
//! a live worker with a free slot when the heartbeats say there is one,
//! never one whose owner went silent; without heartbeats, the key decides
//! as it always did. Placement only saves the steal delay: a job on a busy
//! or silent owner's partition is taken by a free worker anyway.

use common::heartbeats::{free_slots, Heartbeats};
use common::settings::KafkaSettings;
use common::{Heartbeat, JobId};

/// How a live worker stood at its last heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub free: u32,
    pub load: f64,
    pub partitions: Vec<i32>,
}

impl Standing {
    fn of(beat: &Heartbeat) -> Self {
        let taken = beat.busy + beat.held;
        Self {
            free: free_slots(beat),
            load: f64::from(taken) / f64::from(beat.slots.max(1)),
            partitions: beat.partitions.clone(),
        }
    }
}

/// The partition for job `id` among `live` workers: a free one, weighted by
/// free slots, else one of the least loaded; `None` when no live worker
/// owns a partition. The job id is the (uniform) random choice, so replicas
/// do not all pick the same worker.
pub fn choose(id: JobId, live: &[Standing]) -> Option<i32> {
    let live: Vec<&Standing> = live.iter().filter(|s| !s.partitions.is_empty()).collect();
    let roll = u64::from_le_bytes(id.as_bytes()[..8].try_into().ok()?);
    let free: u64 = live.iter().map(|s| u64::from(s.free)).sum();
    let worker = if free > 0 {
        let mut pick = roll % free;
        live.iter().find(|s| {
            let f = u64::from(s.free);
            if pick < f {
                true
            } else {
                pick -= f;
                false
            }
        })?
    } else {
        let least = live.iter().map(|s| s.load).fold(f64::INFINITY, f64::min);
        let idle: Vec<&Standing> = live.iter().copied().filter(|s| s.load <= least).collect();
        *idle.get(usize::try_from(roll % idle.len().max(1) as u64).ok()?)?
    };
    let i = usize::try_from((roll >> 32) % worker.partitions.len() as u64).ok()?;
    worker.partitions.get(i).copied()
}

/// Placement by the workers' heartbeats.
#[derive(Clone)]
pub struct Placement {
    beats: Heartbeats,
}

impl Placement {
    pub fn start(kafka: &KafkaSettings) -> anyhow::Result<Self> {
        // Heartbeats come every 2 s; a long wait spares the broker.
        Ok(Self {
            beats: Heartbeats::start(kafka, "placement", 500)?,
        })
    }

    /// The partition for a new job, or `None` to let its key decide.
    pub fn partition(&self, id: JobId) -> Option<i32> {
        let live = self.beats.live(|b| Some(Standing::of(b)));
        choose(id, &live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn standing(free: u32, load: f64, partitions: &[i32]) -> Standing {
        Standing {
            free,
            load,
            partitions: partitions.to_vec(),
        }
    }

    fn picks(live: &[Standing], n: usize) -> HashMap<i32, usize> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            if let Some(p) = choose(JobId::new(), live) {
                *counts.entry(p).or_default() += 1;
            }
        }
        counts
    }

    #[test]
    fn free_slots_draw_the_jobs_in_proportion() {
        let live = [
            standing(3, 0.25, &[0, 1]),
            standing(1, 0.75, &[2]),
            standing(0, 1.0, &[3]),
        ];
        let counts = picks(&live, 4000);
        assert_eq!(
            counts.get(&3),
            None,
            "a full worker gets nothing while others are free"
        );
        let first = counts[&0] + counts[&1];
        assert!(
            (2700..3300).contains(&first),
            "3 of 4 free slots: {counts:?}"
        );
        assert!((700..1300).contains(&counts[&2]), "{counts:?}");
    }

    #[test]
    fn when_all_are_full_the_least_loaded_take_the_jobs() {
        let live = [
            standing(0, 2.0, &[0]),
            standing(0, 1.0, &[1]),
            standing(0, 1.0, &[2]),
        ];
        let counts = picks(&live, 1000);
        assert_eq!(counts.get(&0), None, "{counts:?}");
        assert!(counts[&1] > 300 && counts[&2] > 300, "{counts:?}");
    }

    #[test]
    fn no_live_owner_leaves_it_to_the_key() {
        assert_eq!(choose(JobId::new(), &[]), None);
        assert_eq!(choose(JobId::new(), &[standing(4, 0.0, &[])]), None);
    }
}
