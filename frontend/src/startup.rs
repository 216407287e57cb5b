//! Builds the whole application from settings, the same way in production
//! and in tests (which bind port 0 and read the chosen port).

use std::net::{TcpListener, ToSocketAddrs};
use std::time::{Duration, Instant};

use actix_web::dev::{Server, Service};
use actix_web::{web, App, HttpResponse, HttpServer};
use common::{kafka, mongo, storage};
use futures::FutureExt;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Oidc;
use crate::error::ApiError;
use crate::metrics::Metrics;
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
        let store = JobStore::new(mongo::connect(&settings.mongo).await?);
        let producer = kafka::Publisher::new(&settings.kafka)?;
        let bucket = storage::bucket(&settings.s3)?;
        let oidc = web::Data::new(Oidc::new(settings.oidc.clone())?);
        let metrics = Metrics::new()?;
        spawn_provisioning(&settings, store.clone());

        let listener = listen(&settings.http_addr)?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            store: store.clone(),
            producer,
            bucket,
            kafka: settings.kafka.clone(),
            jobs: settings.jobs.clone(),
            public_url: settings.public_url.clone(),
            max_body_bytes: settings.max_body_bytes,
            metrics: metrics.clone(),
        });
        let server = HttpServer::new(move || {
            let metrics = metrics.clone();
            App::new()
                .wrap_fn(move |req, srv| {
                    // Labels use the route pattern, never the concrete
                    // path: the compatibility login carries a password.
                    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                    let method = req.method().to_string();
                    let started = Instant::now();
                    let metrics = metrics.clone();
                    srv.call(req).map(move |result| {
                        if let Ok(response) = &result {
                            metrics
                                .requests
                                .with_label_values(&[
                                    route.as_str(),
                                    method.as_str(),
                                    response.status().as_str(),
                                ])
                                .inc();
                            metrics
                                .latency
                                .with_label_values(&[route.as_str()])
                                .observe(started.elapsed().as_secs_f64());
                        }
                        result
                    })
                })
                .app_data(state.clone())
                .app_data(oidc.clone())
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::BadRequest(format!("invalid query string: {e}")).into()
                }))
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    ApiError::BadRequest(format!("invalid path: {e}")).into()
                }))
                .service(routes::health::health)
                .service(routes::health::ready)
                .service(routes::health::load)
                .service(routes::auth::login_with_body)
                .service(routes::auth::login_in_path)
                .service(routes::jobs::add_job)
                .service(routes::jobs::create_job)
                .service(routes::jobs::status_all)
                .service(routes::jobs::status_one)
                .service(routes::jobs::list_jobs)
                .service(routes::files::job_file)
                .service(routes::files::job_logs)
                .service(routes::jobs::get_job)
                .service(routes::jobs::delete_job)
                .service(routes::jobs::delete_job_compat)
                .service(routes::files::results)
                .service(routes::docs::openapi)
                .service(routes::docs::metrics)
                .default_service(web::to(|| async {
                    HttpResponse::NotFound().json(serde_json::json!({
                        "error": "not_found",
                        "message": "no such route; see /api/openapi.json",
                    }))
                }))
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

/// Creates what the frontend relies on (topics, bucket, indexes) in the
/// background: the API starts, and reports not-ready, while a backing
/// service is still down.
fn spawn_provisioning(settings: &Settings, store: JobStore) {
    let kafka_settings = settings.kafka.clone();
    let s3_settings = settings.s3.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            let topics = kafka::ensure_topics(&kafka_settings).await;
            let bucket = storage::ensure_bucket(&s3_settings).await;
            let indexes = store.ensure_indexes().await;
            match (&topics, &bucket, &indexes) {
                (Ok(()), Ok(()), Ok(())) => return,
                _ => tracing::warn!(
                    topics = ?topics.err(), bucket = ?bucket.err(), indexes = ?indexes.err(),
                    "provisioning incomplete; retrying"
                ),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    });
}
