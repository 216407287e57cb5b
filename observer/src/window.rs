//! Event-time windows over status events (`docs/contract.md` §6), with no I/O.
//!
//! A window is `[start, start + length)` in event time (`StatusEvent::at`),
//! so an event that reaches the observer late still counts in the window it
//! happened in. The observer closes a window once the wall clock is past its
//! end plus a grace period; an event for a window that is already closed but
//! still retained reopens it as a *revision*, which the caller stores again
//! with the corrected counts. Counts are exact: a redelivered copy of the
//! same event (Kafka is at-least-once) is counted once.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use common::{JobId, JobState, Observation, StatusEvent};

/// What one window saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    pub start_ms: i64,
    pub length_ms: i64,
    /// `queued` events.
    pub arrivals: u64,
    /// `running` events (a job re-run after its worker died counts again:
    /// it is service given twice).
    pub started: u64,
    /// Terminal events.
    pub finished: u64,
    /// Sum and count of `elapsedSeconds` over terminal events that carry it
    /// (a job cancelled while queued has none).
    pub elapsed_sum: f64,
    pub elapsed_count: u64,
}

impl WindowStats {
    fn empty(start_ms: i64, length_ms: i64) -> Self {
        Self {
            start_ms,
            length_ms,
            arrivals: 0,
            started: 0,
            finished: 0,
            elapsed_sum: 0.0,
            elapsed_count: 0,
        }
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.length_ms
    }

    /// Mean elapsed seconds of the jobs that ended here; 0 when none did
    /// (the original service's convention, kept for its clients).
    pub fn mean_elapsed(&self) -> f64 {
        if self.elapsed_count == 0 {
            0.0
        } else {
            self.elapsed_sum / self.elapsed_count as f64
        }
    }

    /// The stored shape, stamped with the window end. Backlog, workers,
    /// partitions and the decision are filled in by the caller.
    pub fn to_observation(&self) -> Observation {
        Observation {
            avg_rate_of_arrival: self.arrivals as f64,
            avg_rate_of_service: self.started as f64,
            avg_rate_of_finished: self.finished as f64,
            avg_response_time: self.mean_elapsed(),
            timestamp: self.end_ms(),
            window_ms: u64::try_from(self.length_ms).unwrap_or(0),
            ..Observation::default()
        }
    }

    /// Copies the counts of `self` into an observation stored earlier for
    /// the same window, keeping what the caller added to it.
    pub fn revise(&self, stored: &Observation) -> Observation {
        let fresh = self.to_observation();
        Observation {
            avg_rate_of_arrival: fresh.avg_rate_of_arrival,
            avg_rate_of_service: fresh.avg_rate_of_service,
            avg_rate_of_finished: fresh.avg_rate_of_finished,
            avg_response_time: fresh.avg_response_time,
            timestamp: fresh.timestamp,
            window_ms: fresh.window_ms,
            ..stored.clone()
        }
    }
}

/// Identity of one event for de-duplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EventKey {
    job: JobId,
    status: JobState,
    attempt: u32,
    at_ms: i64,
}

#[derive(Debug)]
struct Window {
    stats: WindowStats,
    seen: HashSet<EventKey>,
}

/// Where an event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted in a window that is still open.
    Open,
    /// Counted in a window already closed: it will come back from `close`
    /// as a revision.
    Revised,
    /// Already counted (a redelivery).
    Duplicate,
    /// Older than the first window of this observer, or than the retention
    /// for late events: dropped.
    TooOld,
    /// Further in the future than the retention: a broken clock, dropped so
    /// that it cannot pin memory.
    TooFarAhead,
}

/// What one call to `close` produced.
#[derive(Debug, Default, PartialEq)]
pub struct Closed {
    /// Windows closed now, oldest first, including empty ones (an idle
    /// period is an observation too).
    pub closed: Vec<WindowStats>,
    /// Windows closed earlier whose counts changed since, oldest first.
    pub revised: Vec<WindowStats>,
}

#[derive(Debug)]
pub struct Windows {
    length_ms: i64,
    retention_ms: i64,
    /// The first window this observer owns; earlier events belong to
    /// windows a previous run already stored.
    first_start: i64,
    /// Every window ending at or before this is closed.
    closed_until: i64,
    windows: BTreeMap<i64, Window>,
    revised: BTreeSet<i64>,
}

impl Windows {
    /// Windows of `length_ms`, the first one containing `start_ms`; closed
    /// windows accept late events for `retention_ms` after they close.
    pub fn new(length_ms: i64, retention_ms: i64, start_ms: i64) -> Self {
        let length_ms = length_ms.max(1);
        let first_start = start_ms.div_euclid(length_ms) * length_ms;
        Self {
            length_ms,
            retention_ms: retention_ms.max(0),
            first_start,
            closed_until: first_start,
            windows: BTreeMap::new(),
            revised: BTreeSet::new(),
        }
    }

    pub fn length_ms(&self) -> i64 {
        self.length_ms
    }

    fn start_of(&self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.length_ms) * self.length_ms
    }

    /// The oldest window start that still accepts events.
    fn oldest_accepted(&self) -> i64 {
        self.first_start
            .max(self.start_of(self.closed_until - self.retention_ms))
    }

    pub fn record(&mut self, event: &StatusEvent) -> Recorded {
        let at_ms = event.at.timestamp_millis();
        let start = self.start_of(at_ms);
        if start < self.oldest_accepted() {
            return Recorded::TooOld;
        }
        if start > self.closed_until + self.retention_ms.max(self.length_ms) {
            return Recorded::TooFarAhead;
        }
        let length_ms = self.length_ms;
        let window = self.windows.entry(start).or_insert_with(|| Window {
            stats: WindowStats::empty(start, length_ms),
            seen: HashSet::new(),
        });
        let key = EventKey {
            job: event.job_id,
            status: event.status,
            attempt: event.attempt,
            at_ms,
        };
        if !window.seen.insert(key) {
            return Recorded::Duplicate;
        }
        let stats = &mut window.stats;
        match event.status {
            JobState::Queued => stats.arrivals += 1,
            JobState::Running => stats.started += 1,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled => {
                stats.finished += 1;
                if let Some(elapsed) = event.elapsed_seconds.filter(|e| e.is_finite() && *e >= 0.0)
                {
                    stats.elapsed_sum += elapsed;
                    stats.elapsed_count += 1;
                }
            }
        }
        if start + self.length_ms <= self.closed_until {
            self.revised.insert(start);
            Recorded::Revised
        } else {
            Recorded::Open
        }
    }

    /// Closes every window that ends at or before `watermark_ms`.
    pub fn close(&mut self, watermark_ms: i64) -> Closed {
        let mut out = Closed::default();
        for start in std::mem::take(&mut self.revised) {
            if let Some(w) = self.windows.get(&start) {
                out.revised.push(w.stats);
            }
        }
        // After a long pause (a suspended process) only the windows still
        // within retention are worth emitting.
        let mut start = self
            .closed_until
            .max(self.start_of(watermark_ms - self.retention_ms - self.length_ms));
        while start + self.length_ms <= watermark_ms {
            let stats = self
                .windows
                .get(&start)
                .map(|w| w.stats)
                .unwrap_or_else(|| WindowStats::empty(start, self.length_ms));
            out.closed.push(stats);
            start += self.length_ms;
        }
        self.closed_until = self.closed_until.max(start);
        let oldest = self.oldest_accepted();
        self.windows.retain(|&s, _| s >= oldest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    const T0: i64 = 1_700_000_000_000; // a multiple of 2000

    fn id(n: u128) -> JobId {
        JobId::parse(&uuid::Uuid::from_u128(n).to_string()).expect("valid uuid")
    }

    fn ev(job: u128, status: JobState, at_ms: i64, elapsed: Option<f64>) -> StatusEvent {
        let mut e = StatusEvent::new(id(job), "owner", status);
        e.at = Utc
            .timestamp_millis_opt(at_ms)
            .single()
            .expect("valid time");
        e.elapsed_seconds = elapsed;
        e
    }

    fn counts(s: &WindowStats) -> (i64, u64, u64, u64, f64) {
        (
            s.start_ms - T0,
            s.arrivals,
            s.started,
            s.finished,
            s.mean_elapsed(),
        )
    }

    use JobState::*;

    #[test]
    fn events_land_in_their_event_time_window() {
        struct Case {
            name: &'static str,
            events: Vec<StatusEvent>,
            watermark: i64,
            /// (start offset, arrivals, started, finished, mean elapsed)
            want: Vec<(i64, u64, u64, u64, f64)>,
        }
        let cases = vec![
            Case {
                name: "nothing happened: one empty window per period",
                events: vec![],
                watermark: T0 + 4000,
                want: vec![(0, 0, 0, 0, 0.0), (2000, 0, 0, 0, 0.0)],
            },
            Case {
                name: "one job's whole life in one window",
                events: vec![
                    ev(1, Queued, T0 + 10, None),
                    ev(1, Running, T0 + 20, None),
                    ev(1, Succeeded, T0 + 1500, Some(1.48)),
                ],
                watermark: T0 + 2000,
                want: vec![(0, 1, 1, 1, 1.48)],
            },
            Case {
                name: "boundaries: start inclusive, end exclusive",
                events: vec![
                    ev(1, Queued, T0, None),
                    ev(2, Queued, T0 + 1999, None),
                    ev(3, Queued, T0 + 2000, None),
                ],
                watermark: T0 + 4000,
                want: vec![(0, 2, 0, 0, 0.0), (2000, 1, 0, 0, 0.0)],
            },
            Case {
                name: "out of order arrival, before closing",
                events: vec![
                    ev(1, Succeeded, T0 + 3000, Some(4.0)),
                    ev(2, Failed, T0 + 3500, Some(2.0)),
                    ev(1, Queued, T0 + 100, None),
                ],
                watermark: T0 + 4000,
                want: vec![(0, 1, 0, 0, 0.0), (2000, 0, 0, 2, 3.0)],
            },
            Case {
                name: "cancelled while queued ends without elapsed: counted, not averaged",
                events: vec![
                    ev(1, Cancelled, T0 + 10, None),
                    ev(2, Succeeded, T0 + 20, Some(6.0)),
                ],
                watermark: T0 + 2000,
                want: vec![(0, 0, 0, 2, 6.0)],
            },
            Case {
                name: "a redelivered event counts once; a re-run (new attempt) counts again",
                events: vec![
                    ev(1, Running, T0 + 10, None),
                    ev(1, Running, T0 + 10, None),
                    {
                        let mut e = ev(1, Running, T0 + 900, None);
                        e.attempt = 1;
                        e
                    },
                ],
                watermark: T0 + 2000,
                want: vec![(0, 0, 2, 0, 0.0)],
            },
            Case {
                name: "windows not yet past the watermark stay open",
                events: vec![ev(1, Queued, T0 + 2100, None)],
                watermark: T0 + 3999,
                want: vec![(0, 0, 0, 0, 0.0)],
            },
            Case {
                name: "nonsense elapsed values are ignored for the mean",
                events: vec![
                    ev(1, Succeeded, T0 + 1, Some(f64::NAN)),
                    ev(2, Succeeded, T0 + 2, Some(-3.0)),
                    ev(3, Succeeded, T0 + 3, Some(2.5)),
                ],
                watermark: T0 + 2000,
                want: vec![(0, 0, 0, 3, 2.5)],
            },
        ];
        for case in cases {
            let mut w = Windows::new(2000, 60_000, T0);
            for e in &case.events {
                w.record(e);
            }
            let closed = w.close(case.watermark);
            let got: Vec<_> = closed.closed.iter().map(counts).collect();
            assert_eq!(got, case.want, "{}", case.name);
            assert!(closed.revised.is_empty(), "{}", case.name);
        }
    }

    #[test]
    fn a_late_event_revises_its_closed_window() {
        let mut w = Windows::new(2000, 60_000, T0);
        assert_eq!(w.record(&ev(1, Queued, T0 + 500, None)), Recorded::Open);
        let first = w.close(T0 + 2000);
        assert_eq!(
            first.closed.iter().map(counts).collect::<Vec<_>>(),
            vec![(0, 1, 0, 0, 0.0)]
        );

        // Reaches the observer after its window closed.
        assert_eq!(w.record(&ev(2, Queued, T0 + 1900, None)), Recorded::Revised);
        assert_eq!(w.record(&ev(3, Queued, T0 + 2500, None)), Recorded::Open);
        let second = w.close(T0 + 4000);
        assert_eq!(
            second.closed.iter().map(counts).collect::<Vec<_>>(),
            vec![(2000, 1, 0, 0, 0.0)]
        );
        assert_eq!(
            second.revised.iter().map(counts).collect::<Vec<_>>(),
            vec![(0, 2, 0, 0, 0.0)]
        );

        // A revision is reported once.
        assert_eq!(w.close(T0 + 4000), Closed::default());
        // Closing is idempotent for the same watermark.
        assert!(w.close(T0 + 4001).closed.is_empty());
    }

    #[test]
    fn events_outside_the_retained_range_are_dropped() {
        let mut w = Windows::new(2000, 10_000, T0 + 1000);
        // Before this observer's first window: a previous run stored it.
        assert_eq!(w.record(&ev(1, Queued, T0 - 1, None)), Recorded::TooOld);
        assert_eq!(w.record(&ev(1, Queued, T0, None)), Recorded::Open);
        w.close(T0 + 20_000);
        // Window [T0, T0+2000) closed 18 s ago, beyond the 10 s retention.
        assert_eq!(w.record(&ev(2, Queued, T0 + 10, None)), Recorded::TooOld);
        // Window [T0+10000, ..) is within retention.
        assert_eq!(
            w.record(&ev(3, Queued, T0 + 10_000, None)),
            Recorded::Revised
        );
        assert_eq!(
            w.record(&ev(4, Queued, T0 + 10_000_000, None)),
            Recorded::TooFarAhead
        );
        let c = w.close(T0 + 20_000);
        assert_eq!(
            c.revised.iter().map(counts).collect::<Vec<_>>(),
            vec![(10_000, 1, 0, 0, 0.0)]
        );
    }

    #[test]
    fn a_long_pause_emits_only_the_retained_windows() {
        let mut w = Windows::new(2000, 10_000, T0);
        let c = w.close(T0 + 3_600_000);
        // Retention plus the window being closed: 6 windows, ending at the watermark.
        assert_eq!(c.closed.len(), 6);
        assert_eq!(c.closed.last().map(|s| s.end_ms()), Some(T0 + 3_600_000));
        assert!(w.close(T0 + 3_600_000).closed.is_empty());
    }

    #[test]
    fn observation_carries_the_counts_and_revision_keeps_the_decision() {
        let mut w = Windows::new(2000, 60_000, T0);
        w.record(&ev(1, Queued, T0 + 1, None));
        w.record(&ev(2, Queued, T0 + 2, None));
        w.record(&ev(1, Running, T0 + 3, None));
        w.record(&ev(9, Succeeded, T0 + 4, Some(3.0)));
        w.record(&ev(8, Succeeded, T0 + 5, Some(5.0)));
        let stats = w.close(T0 + 2000).closed[0];
        let mut obs = stats.to_observation();
        assert_eq!(
            (
                obs.avg_rate_of_arrival,
                obs.avg_rate_of_service,
                obs.avg_rate_of_finished,
                obs.avg_response_time,
                obs.timestamp,
                obs.window_ms
            ),
            (2.0, 1.0, 2.0, 4.0, T0 + 2000, 2000)
        );
        obs.backlog = 7;
        obs.decision = Some(common::ScaleDecision {
            current: 1,
            desired: 3,
            reason: "r".into(),
        });
        w.record(&ev(3, Queued, T0 + 6, None));
        let revised = w.close(T0 + 2000).revised[0].revise(&obs);
        assert_eq!(revised.avg_rate_of_arrival, 3.0);
        assert_eq!(revised.backlog, 7);
        assert_eq!(revised.decision, obs.decision);
    }
}
