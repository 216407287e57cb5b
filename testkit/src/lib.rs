//! What the tests (and the benchmark) of every crate share, so that each is
//! written once: an isolated namespace on the shared local stack, private
//! servers for tests that stop or stall one, logins with real tokens, git
//! repositories to run, and a launcher for the whole platform as processes.
//!
//! Only ever a dev-dependency; the `lanzadera-testkit` binary exposes the
//! namespace to the Python benchmark.

pub mod namespace;
pub mod platform;
pub mod repos;
pub mod servers;
pub mod tokens;

pub use namespace::Namespace;
pub use repos::{GitServer, TempDir};

use std::path::{Path, PathBuf};

/// The repository's root folder.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A free loopback port (free when asked; tests bind it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `name-<32 hex>`: unique across tests and runs.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The `LZ_*` variables of the process (the stack's `.dev/stack.env` when
/// run through `make test`), which point at the local servers.
pub fn stack_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("LZ_"))
        .collect()
}
