//! The Lanzadera observer (`docs/contract.md` §6): turns status events into windowed
//! observations, decides how many workers the platform should run, and
//! tells the deployment platform.

pub mod actuator;
pub mod cluster;
pub mod fleet;
pub mod leadership;
pub mod leases;
pub mod observer;
pub mod routes;
pub mod settings;
pub mod store;
pub mod strategy;
pub mod window;

use std::future::Future;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, RwLock};

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use common::ignore::IgnoreLog;
use common::provision::Provisioner;
use common::{kafka, mongo};
use mongodb::Database;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::actuator::Actuator;
use crate::cluster::ClusterProbe;
use crate::fleet::Fleet;
use crate::leadership::LeaderLease;
use crate::leases::{Judge, SharedFleet, Verdicts};
use crate::observer::{Desired, Observer, Shared};
pub use crate::settings::Settings;
use crate::store::ObservationStore;

pub struct Application {
    port: u16,
    server: Server,
    observer: JoinHandle<()>,
    actuator: JoinHandle<()>,
    judge: JoinHandle<()>,
    campaign: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Application {
    /// Builds everything from settings, the same way in production and in
    /// tests (which bind port 0 and read `port()`). Nothing here waits for
    /// Kafka or MongoDB: while they are away the observer logs and retries.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let actuator = Actuator::from_settings(&settings.actuator, &settings.id)?;
        let db = mongo::connect(&settings.mongo).await?;
        let store = ObservationStore::new(&db);
        let probe = ClusterProbe::new(&settings.kafka, settings.probe_timeout)?;
        let consumer = kafka::consumer(
            &settings.kafka,
            &settings.group,
            // Observations are statistics: losing a few events over a crash
            // is better than the bookkeeping of committing after storing.
            &[("enable.auto.commit", "true".into())],
        )?;
        let topics_ready = spawn_provisioning(&settings, &db);

        let listener = TcpListener::bind(&settings.http_addr)?;
        let port = listener.local_addr()?.port();
        let desired = Arc::new(RwLock::new(Desired {
            desired_replicas: settings.policy.min_workers,
            current_replicas: 0,
            backlog: 0,
            partitions: 0,
            reason: "no window has closed yet".into(),
            timestamp: 0,
        }));
        let (stop, stop_rx) = watch::channel(false);
        let (leadership, campaign) = crate::leadership::campaign(
            LeaderLease::new(&db, &settings.id, settings.leader_lease),
            stop_rx.clone(),
        );
        let shared = web::Data::from(Arc::clone(&desired));
        let standing = web::Data::new(leadership.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(standing.clone())
                .configure(routes::configure)
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();

        let (decisions_tx, decisions_rx) = watch::channel(None);
        tracing::info!(
            observer = %settings.id,
            actuator = actuator.name(),
            port,
            refresh_ms = settings.refresh.as_millis() as u64,
            "observer ready"
        );
        let actuator = tokio::spawn(observer::actuate(
            actuator,
            decisions_rx,
            settings.actuator_resync,
            leadership.clone(),
        ));
        let fleet = Arc::new(Mutex::new(Fleet::new(
            i64::try_from(settings.lease.as_millis()).unwrap_or(i64::MAX),
        )));
        let verdicts = Arc::new(Mutex::new(Verdicts::default()));
        let judge = tokio::spawn(judge(
            settings.clone(),
            db.clone(),
            fleet.clone(),
            verdicts.clone(),
            stop_rx.clone(),
        ));
        let shared = Shared {
            decisions: decisions_tx,
            desired,
            fleet,
            verdicts,
            leadership,
        };
        let observer = Observer::new(settings, probe, store, shared);
        let observer = tokio::spawn(observer.run(consumer, topics_ready, stop_rx));
        Ok(Self {
            port,
            server,
            observer,
            actuator,
            judge,
            campaign,
            stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves or the server stops, then stops the
    /// observer loop.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let handle = self.server.handle();
        let result = tokio::select! {
            r = self.server => r,
            _ = shutdown => {
                handle.stop(true).await;
                Ok(())
            }
        };
        let _ = self.stop.send(true);
        let _ = self.observer.await;
        let _ = self.judge.await;
        let _ = self.campaign.await;
        self.actuator.abort();
        result
    }
}

/// Topics and indexes may have to wait for the broker or the database; the
/// HTTP endpoint answers meanwhile. The returned signal fires once the
/// topics exist: subscribing before the status topic exists would leave
/// the consumer waiting for a metadata refresh (minutes) before it reads
/// anything.
fn spawn_provisioning(settings: &Settings, db: &Database) -> oneshot::Receiver<()> {
    let topics = Provisioner::new().topics(&settings.kafka);
    let indexes = Provisioner::new().indexes(db);
    let (ready, topics_ready) = oneshot::channel();
    tokio::spawn(async move {
        topics.until_done().await;
        let _ = ready.send(());
        indexes.until_done().await;
    });
    topics_ready
}

/// The lease judge, once the topics exist and the ignore topic is read.
async fn judge(
    settings: Settings,
    db: Database,
    fleet: SharedFleet,
    verdicts: Arc<Mutex<Verdicts>>,
    mut stop: watch::Receiver<bool>,
) {
    let ready = async {
        Provisioner::new()
            .topics(&settings.kafka)
            .until_done()
            .await;
        loop {
            // Claims start leases of 6 s: a quarter second late is nothing.
            match IgnoreLog::start(&settings.kafka, std::time::Duration::from_millis(250)).await {
                Ok(log) => return log,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the ignore topic yet; leases are not judged");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            }
        }
    };
    let log = tokio::select! {
        _ = stop.changed() => return,
        log = ready => log,
    };
    let producer = match kafka::Publisher::new(&settings.kafka) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a producer: leases are not judged");
            return;
        }
    };
    let judge = Judge {
        fleet,
        log,
        jobs: db.collection(mongo::JOBS),
        producer,
        kafka: settings.kafka.clone(),
        max_attempts: settings.max_attempts,
        verdicts,
    };
    judge.run(stop).await;
}
