//! One place that sets up tracing for every service.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::{DefaultValue, LOG_FILTER, LOG_FORMAT};

/// Logs to stderr; `LZ_LOG_FORMAT=json` for machine-read logs, `RUST_LOG`
/// for the filter (see `settings::LOGGING`).
pub fn init(service: &'static str) {
    let default_filter = match LOG_FILTER.default {
        DefaultValue::Literal(filter) => filter,
        _ => "info",
    };
    let filter =
        EnvFilter::try_from_env(LOG_FILTER.name).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var(LOG_FORMAT.name).is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: a log file or a
        // collector reading a pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal());
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if result.is_ok() {
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
    }
}

/// Resolves when the process receives SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
