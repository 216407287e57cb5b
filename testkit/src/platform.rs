//! The whole platform as processes, as a user meets it: the frontend, N
//! workers and the observer from `target/debug`, in a namespace of their
//! own on the local stack, with the examples published as repositories.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::provision::Provisioner;

use crate::servers::binary;
use crate::Namespace;

/// A service process, killed when the platform is dropped.
pub struct Service {
    pub name: String,
    pub child: Child,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Platform {
    pub namespace: Namespace,
    /// The API's base URL.
    pub api: String,
    /// The observer's base URL.
    pub observer: String,
    pub http: reqwest::Client,
    /// Where the examples are published as git repositories.
    pub repos: PathBuf,
    /// Where each service's log is written (`<name>.log`).
    pub logs: PathBuf,
    pub services: Vec<Service>,
    /// The variables every service got.
    env: Vec<(String, String)>,
    workers: usize,
}

impl Platform {
    /// Starts the frontend, `workers` workers and the observer with
    /// `extra` variables on top of the namespace's, and waits until the API
    /// is ready.
    pub async fn start(workers: usize, extra: &[(&str, &str)]) -> Self {
        let namespace = Namespace::new("e2e");
        let logs = crate::root().join("target/e2e").join(namespace.name());
        std::fs::create_dir_all(&logs).expect("log folder");
        let api_addr = format!("127.0.0.1:{}", crate::free_port());
        let observer_addr = format!("127.0.0.1:{}", crate::free_port());
        let mut vars = vec![
            ("LZ_JOBS_PARTITIONS", "4"),
            ("LZ_STATUS_PARTITIONS", "2"),
            ("LZ_ALLOW_INSECURE_REPOS", "true"),
            ("LZ_HTTP_ADDR", api_addr.as_str()),
            ("LZ_OBSERVER_ADDR", observer_addr.as_str()),
            ("REFRESH_RATE", "1000"),
        ];
        vars.extend_from_slice(extra);
        let env = namespace.layered(&vars);
        // Topics exist before any consumer subscribes.
        let kafka = common::settings::KafkaSettings::from_env(&namespace.settings_env(&vars))
            .expect("kafka settings");
        Provisioner::new()
            .topics(&kafka)
            .within(Duration::from_secs(30))
            .await
            .expect("topics (is the stack up? dev/stack.sh up)");

        let mut platform = Self {
            api: format!("http://{api_addr}"),
            observer: format!("http://{observer_addr}"),
            http: reqwest::Client::new(),
            repos: logs.join("repos"),
            logs,
            namespace,
            services: Vec::new(),
            env: env.clone(),
            workers: 0,
        };
        platform.spawn("frontend", "lanzadera-frontend", &env, &[]);
        for _ in 1..=workers {
            platform.add_worker(&[]);
        }
        platform.spawn("observer", "lanzadera-observer", &env, &[]);
        platform.wait_ready().await;
        crate::repos::publish_examples(&platform.repos);
        platform
    }

    /// Starts one more worker, with `extra` variables on top of the
    /// platform's; answers its service name (`worker-<n>`).
    pub fn add_worker(&mut self, extra: &[(&str, &str)]) -> String {
        self.workers += 1;
        let i = self.workers;
        let name = format!("worker-{i}");
        let id = format!("{}-worker-{i}", self.namespace.name());
        let dir = self.logs.join(format!("work-{i}")).display().to_string();
        let mut own = vec![("LZ_WORKER_ID", id), ("LZ_WORK_DIR", dir)];
        own.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let env = self.env.clone();
        self.spawn(&name, "lanzadera-worker", &env, &own);
        name
    }

    /// The service called `name` (e.g. `worker-2`).
    pub fn service(&mut self, name: &str) -> &mut Service {
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// Its `LZ_WORKER_ID`.
    pub fn worker_id(&self, name: &str) -> String {
        format!("{}-{name}", self.namespace.name())
    }

    fn spawn(&mut self, name: &str, bin: &str, env: &[(String, String)], own: &[(&str, String)]) {
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).expect("log file");
        let mut command = Command::new(binary(bin));
        command
            .envs(env.iter().cloned())
            .envs(own.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .stdout(Stdio::null())
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        self.services.push(Service {
            name: name.to_string(),
            child,
        });
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = format!("{}/health/ready", self.api);
        while self
            .http
            .get(&ready)
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "the API never became ready; logs in {}",
                self.logs.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The `file://` URL of a published example.
    pub fn repo(&self, name: &str) -> String {
        format!("file://{}", self.repos.join(name).display())
    }

    /// Fails the test if a service exited.
    pub fn assert_running(&mut self) {
        for s in &mut self.services {
            let exited = s.child.try_wait().ok().flatten();
            assert!(exited.is_none(), "{} exited: {exited:?}", s.name);
        }
    }

    /// A real token for `user` through the API's login route.
    pub async fn token(&self, user: (&str, &str)) -> String {
        crate::tokens::login(&self.http, &self.api, user).await
    }
}
