//! The observer's loop: status events into windows, a closed window into
//! an observation and a decision, the decision to the actuator. All maths
//! lives in `window` and `strategy`; this file only moves data between
//! them and the outside world.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{Observation, ScaleDecision, StatusRecord};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::actuator::Actuator;
use crate::cluster::{ClusterProbe, Growth};
use crate::leadership::Leadership;
use crate::leases::{self, SharedFleet, Verdicts};
use crate::settings::Settings;
use crate::store::ObservationStore;
use crate::strategy::{measure, Load, SlotLoad, Strategy};
use crate::window::{Recorded, WindowStats, Windows};

/// What `GET /metrics/desired` serves: `desiredReplicas` is the value
/// KEDA's metrics-api scaler reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    pub desired_replicas: u32,
    pub current_replicas: u32,
    pub backlog: u64,
    pub partitions: u32,
    pub reason: String,
    /// End of the window the decision was taken on (ms); 0 before the first.
    pub timestamp: i64,
}

pub type SharedDesired = Arc<RwLock<Desired>>;

/// The latest decision with the observation it was taken on.
pub type Decided = Option<(ScaleDecision, Observation)>;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub struct Observer {
    settings: Settings,
    windows: Windows,
    /// Closed windows still open to late events, with what was stored.
    recent: BTreeMap<i64, (WindowStats, Observation)>,
    /// Survives quiet spells longer than `recent` reaches back.
    last_job_seconds: Option<f64>,
    strategy: Strategy,
    probe: ClusterProbe,
    store: ObservationStore,
    decisions: watch::Sender<Decided>,
    desired: SharedDesired,
    growth_unsupported: bool,
    /// The workers' heartbeats and leases, shared with the lease judge.
    fleet: SharedFleet,
    verdicts: Arc<Mutex<Verdicts>>,
    /// Every observer keeps windows and decides; only the leader stores,
    /// grows the topic and actuates.
    leadership: Leadership,
    /// Whether the last tick ended leading: a new term first stores the
    /// windows the last leader could not (they are all in `recent`).
    led: bool,
}

/// What the observer loop shares with the rest of the process.
pub struct Shared {
    /// To the actuator task.
    pub decisions: watch::Sender<Decided>,
    /// Served at `/metrics/desired`.
    pub desired: SharedDesired,
    /// With the lease judge.
    pub fleet: SharedFleet,
    pub verdicts: Arc<Mutex<Verdicts>>,
    pub leadership: Leadership,
}

impl Observer {
    pub fn new(
        settings: Settings,
        probe: ClusterProbe,
        store: ObservationStore,
        shared: Shared,
    ) -> Self {
        let Shared {
            decisions,
            desired,
            fleet,
            verdicts,
            leadership,
        } = shared;
        let refresh_ms = i64::try_from(settings.refresh.as_millis()).unwrap_or(i64::MAX);
        let retention_ms = i64::try_from(settings.late_retention.as_millis()).unwrap_or(i64::MAX);
        Self {
            windows: Windows::new(refresh_ms, retention_ms, now_ms()),
            recent: BTreeMap::new(),
            last_job_seconds: None,
            strategy: Strategy::new(settings.policy.clone()),
            probe,
            store,
            decisions,
            desired,
            growth_unsupported: false,
            fleet,
            verdicts,
            leadership,
            led: false,
            settings,
        }
    }

    fn grace_ms(&self) -> i64 {
        i64::try_from(self.settings.grace.as_millis()).unwrap_or(i64::MAX)
    }

    /// Time until the next window end plus grace, so that each tick closes
    /// exactly one window.
    fn until_next_tick(&self, now: i64) -> Duration {
        let length = self.windows.length_ms();
        let shifted = now - self.grace_ms();
        let next = (shifted.div_euclid(length) + 1) * length + self.grace_ms();
        Duration::from_millis(u64::try_from(next - now).unwrap_or(0))
    }

    pub async fn run(
        mut self,
        consumer: StreamConsumer,
        topics_ready: oneshot::Receiver<()>,
        mut stop: watch::Receiver<bool>,
    ) {
        tokio::select! {
            _ = stop.changed() => return,
            _ = topics_ready => {}
        }
        if let Err(e) = consumer.subscribe(&[&self.settings.kafka.status_topic]) {
            tracing::error!(error = %e, "cannot subscribe to the status topic; observing lag only");
        }
        loop {
            let wait = self.until_next_tick(now_ms());
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(wait) => self.tick(now_ms()).await,
                message = consumer.recv() => match message {
                    Ok(m) => self.on_payload(m.payload()),
                    Err(e) => {
                        tracing::warn!(error = %e, "status topic read failed");
                        // Avoid a hot loop while the broker is away.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
        tracing::info!("observer stopped");
    }

    fn on_payload(&mut self, payload: Option<&[u8]>) {
        let Some(payload) = payload else { return };
        let event = match StatusRecord::parse(payload) {
            Ok(StatusRecord::Event(e)) => e,
            Ok(StatusRecord::Heartbeat(beat)) => {
                leases::lock(&self.fleet).heartbeat(beat, now_ms());
                return;
            }
            Ok(StatusRecord::Other(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a status event that does not parse");
                return;
            }
        };
        if event.status.is_terminal() {
            leases::lock(&self.fleet).ended(event.job_id, event.attempt);
        }
        match self.windows.record(&event) {
            Recorded::Open | Recorded::Revised | Recorded::Duplicate => {}
            dropped @ (Recorded::TooOld | Recorded::TooFarAhead) => {
                tracing::debug!(job_id = %event.job_id, at = %event.at, ?dropped, "event outside the windows");
            }
        }
    }

    pub async fn tick(&mut self, now: i64) {
        let closed = self.windows.close(now - self.grace_ms());
        for stats in closed.revised {
            if let Some((kept, observation)) = self.recent.get_mut(&stats.start_ms) {
                *kept = stats;
                *observation = stats.revise(observation);
                let observation = observation.clone();
                self.save(&observation).await;
            }
        }
        let Some(last) = closed.closed.last().map(|s| s.start_ms) else {
            return;
        };
        let cluster = match self.probe.probe().await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read lag, workers or partitions; no decision this window");
                None
            }
        };
        let fleet = leases::lock(&self.fleet).view(now);
        let requeued = leases::verdicts(&self.verdicts).requeued;
        for stats in closed.closed {
            let mut observation = stats.to_observation();
            if let Some(c) = cluster {
                observation.backlog = c.backlog;
                observation.workers = c.workers;
                observation.partitions = c.partitions;
            }
            observation.slots = fleet.slots;
            observation.slots_busy = fleet.busy;
            observation.slots_free = fleet.slots.saturating_sub(fleet.busy);
            observation.live_workers = fleet.live_workers;
            observation.silent_workers = fleet.silent_workers;
            observation.orphaned_partitions = fleet.orphaned.clone();
            observation.leases = fleet.leases;
            observation.requeued = requeued;
            self.recent.insert(stats.start_ms, (stats, observation));
            if stats.start_ms == last {
                if let Some(c) = cluster {
                    let slots = (fleet.per_worker > 0).then_some(SlotLoad {
                        per_worker: fleet.per_worker,
                        busy: fleet.busy,
                    });
                    self.decide(stats, c.backlog, c.workers, c.partitions, slots)
                        .await;
                }
            }
            if let Some((_, observation)) = self.recent.get(&stats.start_ms) {
                let observation = observation.clone();
                self.save(&observation).await;
            }
        }
        self.prune();
        let leading = self.leadership.leading();
        let new_term = leading && !self.led;
        self.led = leading;
        if !leading {
            return;
        }
        if new_term {
            for (_, observation) in self.recent.values() {
                self.save(observation).await;
            }
        }
        if let Err(e) = self.store.trim(self.settings.keep_observations).await {
            tracing::warn!(error = %e, "cannot trim old observations");
        }
    }

    async fn decide(
        &mut self,
        stats: WindowStats,
        backlog: u64,
        workers: u32,
        partitions: u32,
        slots: Option<SlotLoad>,
    ) {
        let history: Vec<WindowStats> = self.recent.values().map(|(s, _)| *s).collect();
        let (arrival_per_second, job_seconds) = measure(
            &history,
            self.settings.rate_windows,
            self.settings.service_windows,
        );
        let job_seconds = job_seconds.or(self.last_job_seconds);
        self.last_job_seconds = job_seconds;
        let load = Load {
            backlog,
            arrival_per_second,
            job_seconds,
            workers,
            partitions,
            slots,
        };
        let decision = self.strategy.decide(stats.end_ms(), &load);
        if let Some(wanted) = decision.partitions_wanted {
            self.grow(wanted).await;
        }
        let scale = ScaleDecision {
            current: decision.current,
            desired: decision.desired,
            reason: decision.reason,
        };
        let Some((_, observation)) = self.recent.get_mut(&stats.start_ms) else {
            return;
        };
        observation.decision = Some(scale.clone());
        let desired = Desired {
            desired_replicas: scale.desired,
            current_replicas: scale.current,
            backlog,
            partitions,
            reason: scale.reason.clone(),
            timestamp: observation.timestamp,
        };
        match self.desired.write() {
            Ok(mut d) => *d = desired,
            Err(poisoned) => *poisoned.into_inner() = desired,
        }
        // Sent every window, even unchanged: the actuator task decides
        // whether to act, so a failed call is retried at the next one.
        self.decisions
            .send_replace(Some((scale, observation.clone())));
    }

    async fn grow(&mut self, wanted: u32) {
        if !self.settings.grow_partitions || self.growth_unsupported || !self.leadership.leading() {
            return;
        }
        match self.probe.grow(wanted).await {
            Growth::Grown(n) => {
                tracing::info!(partitions = n, topic = %self.settings.kafka.jobs_topic, "grew the jobs topic")
            }
            Growth::Unsupported => {
                self.growth_unsupported = true;
                tracing::warn!(
                    topic = %self.settings.kafka.jobs_topic,
                    wanted,
                    "the broker cannot add partitions; deciding within the current count from now on"
                );
            }
            Growth::Failed(e) => {
                tracing::warn!(error = %e, wanted, "could not grow the jobs topic")
            }
        }
    }

    async fn save(&self, observation: &Observation) {
        if !self.leadership.leading() {
            return;
        }
        if let Err(e) = self.store.save(observation).await {
            tracing::warn!(error = %e, timestamp = observation.timestamp, "cannot store the observation");
        }
    }

    /// Keeps the windows that can still be revised or feed the rates.
    fn prune(&mut self) {
        let length = self.settings.refresh.as_millis().max(1);
        let retained = usize::try_from(self.settings.late_retention.as_millis() / length)
            .unwrap_or(usize::MAX);
        let keep = retained
            .max(self.settings.rate_windows)
            .max(self.settings.service_windows)
            .saturating_add(1);
        while self.recent.len() > keep {
            self.recent.pop_first();
        }
    }
}

/// Sends decisions to the actuator: when the desired count changes, and
/// again every `resync` so that a lost request or a manual change is
/// corrected. Runs apart from the observer so that a slow or failing
/// actuator never delays an observation.
pub async fn actuate(
    actuator: Actuator,
    mut decisions: watch::Receiver<Decided>,
    resync: Duration,
    leadership: Leadership,
) {
    let mut applied: Option<(u32, Instant)> = None;
    let mut standing = leadership.changes();
    loop {
        tokio::select! {
            changed = decisions.changed() => if changed.is_err() { break },
            changed = standing.changed() => if changed.is_err() { break },
        }
        if !leadership.leading() {
            // Whatever the last leader sent, a new term starts by sending
            // the decision of the moment.
            applied = None;
            continue;
        }
        let Some((decision, observation)) = decisions.borrow_and_update().clone() else {
            continue;
        };
        let due = match applied {
            Some((desired, at)) => desired != decision.desired || at.elapsed() >= resync,
            None => true,
        };
        if !due {
            continue;
        }
        match actuator.apply(&decision, &observation).await {
            Ok(()) => {
                if actuator.name() != "log" {
                    tracing::info!(
                        actuator = actuator.name(),
                        desired = decision.desired,
                        "scale request sent"
                    );
                }
                applied = Some((decision.desired, Instant::now()));
            }
            Err(e) => tracing::warn!(
                actuator = actuator.name(),
                desired = decision.desired,
                error = %e,
                "scale request failed; retrying with the next window"
            ),
        }
    }
}
