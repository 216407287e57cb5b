//! Which offsets of each owned partition are done, and what to commit:
//! the lowest offset not done, with the done offsets beyond it in the
//! commit metadata (`docs/dispatch.md` §3). Pure: the consumer commits
//! what this answers.

use std::collections::{BTreeSet, HashMap};

/// Commit metadata over this many bytes is replaced by `lz1:!`; Apache
/// Kafka's `offset.metadata.max.bytes` defaults to 4,096.
pub const METADATA_LIMIT: usize = 1024;

#[derive(Debug, Default)]
struct PartitionLedger {
    /// The lowest offset delivered and not yet committed past.
    base: Option<i64>,
    /// Delivered and not done (held or running).
    open: BTreeSet<i64>,
    /// Done beyond the lowest open offset.
    done: BTreeSet<i64>,
    /// The last commit point handed out.
    committed: Option<(i64, String)>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    partitions: HashMap<i32, PartitionLedger>,
}

impl Ledger {
    /// A delivery from `partition`: open until `done`.
    pub fn open(&mut self, partition: i32, offset: i64) {
        let p = self.partitions.entry(partition).or_default();
        p.base = Some(p.base.map_or(offset, |b| b.min(offset)));
        p.done.remove(&offset);
        p.open.insert(offset);
    }

    /// The job at (partition, offset) ended or was skipped. Offsets of a
    /// partition no longer owned are ignored.
    pub fn done(&mut self, partition: i32, offset: i64) {
        let Some(p) = self.partitions.get_mut(&partition) else {
            return;
        };
        if p.open.remove(&offset) {
            p.done.insert(offset);
        }
    }

    /// Forgets a partition (revoked).
    pub fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Offsets delivered and not done, per partition.
    pub fn open_count(&self) -> usize {
        self.partitions.values().map(|p| p.open.len()).sum()
    }

    /// The commits due since the last call: per partition, the offset to
    /// commit and its metadata.
    pub fn due(&mut self) -> Vec<(i32, i64, String)> {
        let mut due = Vec::new();
        for (&partition, p) in &mut self.partitions {
            let Some(point) = p.commit_point() else {
                continue;
            };
            if p.committed.as_ref() != Some(&point) {
                p.committed = Some(point.clone());
                due.push((partition, point.0, point.1));
            }
        }
        due.sort();
        due
    }
}

impl PartitionLedger {
    /// (lowest offset not done, metadata listing the done ones above it).
    fn commit_point(&mut self) -> Option<(i64, String)> {
        let base = self.base?;
        let next = match self.open.first() {
            Some(&first) => first,
            // Everything delivered is done: commit past the highest.
            None => self.done.last().map_or(base, |&d| d + 1).max(base),
        };
        // Done offsets below the commit point need no mention.
        self.done = self.done.split_off(&next);
        self.base = Some(next);
        Some((next, encode(next, &self.done)))
    }
}

/// `lz1:` then ranges of done offsets relative to `base` (`d` or `d-e`),
/// e.g. base 120 with 122, 123, 127 done: `lz1:2-3,7`.
pub fn encode(base: i64, done: &BTreeSet<i64>) -> String {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &o in done {
        let d = o - base;
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == d => *end = d,
            _ => ranges.push((d, d)),
        }
    }
    let body: Vec<String> = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    let text = format!("lz1:{}", body.join(","));
    if text.len() > METADATA_LIMIT {
        "lz1:!".to_string()
    } else {
        text
    }
}

/// The done offsets `encode` wrote; empty for anything else (another
/// tool's metadata, an overflow, or a broker that returns none).
pub fn decode(base: i64, metadata: &str) -> BTreeSet<i64> {
    let mut done = BTreeSet::new();
    let Some(body) = metadata.strip_prefix("lz1:") else {
        return done;
    };
    for part in body.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i64>(), b.parse::<i64>()),
            None => (part.parse(), part.parse()),
        };
        let (Ok(a), Ok(b)) = (a, b) else {
            return BTreeSet::new();
        };
        if a < 1 || b < a || b - a > 100_000 {
            return BTreeSet::new();
        }
        done.extend((a..=b).map(|d| base + d));
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        let rows: [(&[i64], &str); 4] = [
            (&[], "lz1:"),
            (&[122, 123, 127], "lz1:2-3,7"),
            (&[121], "lz1:1"),
            (&[121, 122, 123, 125, 126], "lz1:1-3,5-6"),
        ];
        for (done, text) in rows {
            let set: BTreeSet<i64> = done.iter().copied().collect();
            assert_eq!(encode(120, &set), text);
            assert_eq!(decode(120, text), set, "{text}");
        }
    }

    #[test]
    fn foreign_or_broken_metadata_means_nothing() {
        for text in ["", "lz1:!", "other", "lz1:0", "lz1:3-2", "lz1:x", "lz2:1"] {
            assert!(decode(10, text).is_empty(), "{text}");
        }
    }

    #[test]
    fn overflow_is_marked() {
        let set: BTreeSet<i64> = (0..2000).map(|i| 1 + 2 * i).collect();
        assert_eq!(encode(0, &set), "lz1:!");
    }

    /// Each step: an action, then the commits it makes due.
    #[test]
    fn commits_follow_the_done_prefix() {
        enum Step {
            Open(i64),
            Done(i64),
        }
        use Step::*;
        let steps: Vec<(Step, Vec<(i64, &str)>)> = vec![
            (Open(10), vec![(10, "lz1:")]),
            (Open(11), vec![]),
            (Open(12), vec![]),
            (Done(11), vec![(10, "lz1:1")]),
            (Done(12), vec![(10, "lz1:1-2")]),
            (Open(13), vec![]),
            (Done(10), vec![(13, "lz1:")]),
            (Done(13), vec![(14, "lz1:")]),
            (Done(13), vec![]),
            (Open(15), vec![(15, "lz1:")]),
        ];
        let mut ledger = Ledger::default();
        for (i, (step, want)) in steps.into_iter().enumerate() {
            match step {
                Open(o) => ledger.open(0, o),
                Done(o) => ledger.done(0, o),
            }
            let got: Vec<(i64, String)> =
                ledger.due().into_iter().map(|(_, o, m)| (o, m)).collect();
            let want: Vec<(i64, String)> =
                want.into_iter().map(|(o, m)| (o, m.to_string())).collect();
            assert_eq!(got, want, "step {i}");
        }
        assert_eq!(ledger.open_count(), 1);
    }

    #[test]
    fn a_dropped_partition_commits_nothing_more() {
        let mut ledger = Ledger::default();
        ledger.open(3, 5);
        ledger.due();
        ledger.drop_partition(3);
        ledger.done(3, 5);
        assert!(ledger.due().is_empty());
        assert_eq!(ledger.open_count(), 0);
    }
}
