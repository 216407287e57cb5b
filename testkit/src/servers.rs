//! Private servers for tests that stop, stall or restart one (the shared
//! stack stays up for the others): the same pinned binaries `dev/stack.sh`
//! runs, found through `dev/versions.env`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned version of `name` (e.g. `TANSU`) in `dev/versions.env`.
pub fn version(name: &str) -> String {
    let path = crate::root().join("dev/versions.env");
    let text = std::fs::read_to_string(&path).expect("dev/versions.env");
    let key = format!("{name}_VERSION=");
    text.lines()
        .find_map(|line| line.strip_prefix(&key))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{key} is not in {}", path.display()))
}

/// Where `dev/install.sh` keeps the servers.
pub fn cache_dir() -> PathBuf {
    std::env::var("LANZADERA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/lanzadera")
        })
}

pub fn tansu_binary() -> PathBuf {
    cache_dir().join(format!("tansu-{}/bin/tansu", version("TANSU")))
}

pub fn weed_binary() -> PathBuf {
    cache_dir().join(format!("seaweedfs-{}/bin/weed", version("SEAWEED")))
}

pub fn secantus_binary() -> PathBuf {
    cache_dir().join(format!("secantus-{}/bin/secantusd-rs", version("SECANTUS")))
}

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Signals go to the whole process group.
    group: bool,
}

impl Server {
    /// Starts `command` and waits until `port` accepts connections.
    pub async fn start(mut command: Command, port: u16, what: &str) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} starts (run dev/install.sh): {e}"));
        wait_for_port(port, Duration::from_secs(20), what).await;
        Self {
            child,
            port,
            group: false,
        }
    }

    /// A tansu broker of its own, in memory.
    pub async fn tansu(port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(tansu_binary());
        command
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"]);
        Self::start(command, port, "tansu").await
    }

    /// A MongoDB-speaking server of its own, keeping its data in `data`.
    pub async fn secantus(port: u16, data: &Path) -> Self {
        let mut command = Command::new(secantus_binary());
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--log-file-max", "1MB"])
            .arg("--storage-path")
            .arg(data);
        Self::start(command, port, "secantusd-rs").await
    }

    /// An S3-speaking server of its own (SeaweedFS, as `dev/stack.sh` runs
    /// it), keeping its data in `data`, with one identity. It also takes
    /// the three ports after `port`, and each of the four + 10000; it runs
    /// in a process group of its own, which `signal` and drop reach whole.
    pub async fn seaweed(port: u16, data: &Path, access_key: &str, secret_key: &str) -> Self {
        std::fs::create_dir_all(data).expect("seaweed data folder");
        let config = data.join("s3.json");
        let identities = serde_json::json!({"identities": [{
            "name": "test",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]});
        std::fs::write(&config, identities.to_string()).expect("s3.json");
        let mut command = Command::new(weed_binary());
        command
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", port + 1))
            .arg(format!("-volume.port={}", port + 2))
            .arg(format!("-filer.port={}", port + 3))
            .arg(format!("-s3.port={port}"))
            .arg(format!("-s3.config={}", config.display()))
            .args(["-webdav=false", "-admin.ui=false"])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"]);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut server = Self::start(command, port, "weed").await;
        server.group = true;
        server
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`, `TERM`) to the server.
    pub fn signal(&self, signal: &str) {
        assert!(self.signal_quietly(signal), "kill -{signal}");
    }

    fn signal_quietly(&self, signal: &str) -> bool {
        let target = if self.group {
            format!("-{}", self.child.id())
        } else {
            self.child.id().to_string()
        };
        Command::new("kill")
            .args([&format!("-{signal}"), "--", &target])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Server {
    /// Stops the server the way an operator would: SIGTERM, up to 10 s to
    /// exit, then SIGKILL. (A `kill -9` right after a write can lose it in
    /// secantusd-rs even with journaled writes, which MongoDB does not.)
    pub fn stop(&mut self) {
        let _ = self.signal_quietly("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.group {
            self.signal_quietly("KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A binary of this workspace, built by `cargo build --bins`.
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pins_are_read_from_the_versions_file() {
        assert!(super::version("TANSU").starts_with("0."));
        assert!(super::tansu_binary().ends_with("bin/tansu"));
    }
}
