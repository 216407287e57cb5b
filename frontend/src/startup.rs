//! Builds the whole application from settings, the same way in production
//! and in tests (which bind port 0 and read the chosen port).

use std::net::{TcpListener, ToSocketAddrs};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::provision::Provisioner;
use common::{kafka, mongo, storage};
use mongodb::Database;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use utoipa_actix_web::AppExt;

use crate::auth::Oidc;
use crate::error::ApiError;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::placement::Placement;
use crate::routes::methods::Methods;
use crate::routes::{self, AppState};
use crate::settings::Settings;
use crate::store::JobStore;

/// Connections the kernel queues before the server accepts them: a burst
/// of new clients (a load balancer's reconnect, a thousand users at once)
/// must not overflow it. Linux caps it at `net.core.somaxconn`.
const ACCEPT_BACKLOG: i32 = 4096;

/// Binds the API's socket with a deep accept queue. (`HttpServer::backlog`
/// only reaches sockets the server binds itself; this one is bound here so
/// that tests can ask for port 0 and read the port chosen.)
fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} names no address"),
        )
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(ACCEPT_BACKLOG)?;
    Ok(socket.into())
}

pub struct Application {
    port: u16,
    server: Server,
    recorder: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = mongo::connect(&settings.mongo).await?;
        spawn_provisioning(&settings, &db);
        let store = JobStore::new(db, settings.mongo.server_selection_timeout);
        let producer = kafka::Publisher::new(&settings.kafka)?;
        let oidc = web::Data::new(Oidc::new(settings.oidc.clone())?);
        let metrics = Metrics::new()?;
        let state = web::Data::new(AppState {
            jobs: Jobs::new(
                store.clone(),
                producer.clone(),
                settings.kafka.clone(),
                metrics.clone(),
                Placement::start(&settings.kafka)?,
                settings.ended_job_cache,
            ),
            store: store.clone(),
            producer,
            kafka: settings.kafka.clone(),
            bucket: storage::bucket(&settings.s3)?,
            policy: settings.jobs.clone(),
            public_url: settings.public_url.clone(),
            max_body_bytes: settings.max_body_bytes,
            metrics: metrics.clone(),
        });

        let listener = listen(&settings.http_addr)?;
        let port = listener.local_addr()?.port();
        let methods = web::Data::new(Methods::from_document(&crate::openapi::document()));
        let server = HttpServer::new(move || {
            App::new()
                .into_utoipa_app()
                .configure(routes::configure)
                .into_app()
                .wrap(from_fn(count_request))
                .app_data(state.clone())
                .app_data(oidc.clone())
                .app_data(methods.clone())
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::BadRequest(format!("invalid query string: {e}")).into()
                }))
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    ApiError::BadRequest(format!("invalid path: {e}")).into()
                }))
                .default_service(web::to(no_such_route))
        })
        .workers(settings.http_workers)
        .max_connections(100_000)
        .listen(listener)?
        .run();

        let (stop, stop_rx) = watch::channel(false);
        let recorder = settings.run_recorder.then(|| {
            let kafka = settings.kafka.clone();
            let group = settings.recorder_group.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::recorder::run(kafka, group, store, stop_rx).await {
                    tracing::error!(error = %e, "status recorder failed");
                }
            })
        });
        tracing::info!(port, "frontend listening");
        Ok(Self {
            port,
            server,
            recorder,
            stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C (actix handles both gracefully),
    /// then stops the recorder.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.server.await;
        let _ = self.stop.send(true);
        if let Some(recorder) = self.recorder {
            let _ = recorder.await;
        }
        tracing::info!("frontend stopped");
        Ok(result?)
    }
}

/// Counts every answered request by route pattern, method and status, and
/// times it. Labels use the route pattern, never the concrete path: the
/// compatibility login carries a password.
async fn count_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let started = Instant::now();
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        metrics
            .requests
            .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
            .inc();
        metrics
            .latency
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}

/// 404, or 405 with `Allow` when the path is served with other methods.
async fn no_such_route(req: HttpRequest, methods: web::Data<Methods>) -> HttpResponse {
    methods.answer(&req)
}

/// Creates what the frontend relies on (topics, bucket, indexes) in the
/// background: the API starts, and reports not-ready, while a backing
/// service is still down.
fn spawn_provisioning(settings: &Settings, db: &Database) {
    let provisioner = Provisioner::new()
        .topics(&settings.kafka)
        .bucket(&settings.s3)
        .indexes(db);
    tokio::spawn(async move { provisioner.until_done().await });
}
