//! Storage outages during a job's upload, against an S3 server of the
//! test's own (SeaweedFS, killed and restarted mid-way): a run that ended
//! keeps its results and stores them once storage is back, and a run whose
//! storage stays away fails with a message that says so.

mod support;

use std::time::{Duration, Instant};

use common::settings::S3Settings;
use common::{storage, JobState};
use support::{files, shell_job, GitServer, Stack, TempDir};
use testkit::servers::Server;

const WAIT: Duration = Duration::from_secs(60);

/// The job writes an output, then sleeps: long enough to kill storage
/// after it started and before it ends.
fn job() -> Vec<(&'static str, String)> {
    shell_job("echo kept > output/result.txt\nsleep 2\n")
}

struct PrivateS3 {
    server: Option<Server>,
    port: u16,
    data: TempDir,
    settings: S3Settings,
}

impl PrivateS3 {
    async fn start(stack: &Stack) -> Self {
        let port = testkit::free_port();
        let data = TempDir::new("s3");
        let mut settings = stack.s3.clone();
        settings.endpoint = format!("http://127.0.0.1:{port}");
        let mut s3 = Self {
            server: None,
            port,
            data,
            settings,
        };
        s3.up().await;
        s3
    }

    async fn up(&mut self) {
        let s = &self.settings;
        self.server = Some(
            Server::seaweed(
                self.port,
                self.data.path(),
                s.access_key.expose(),
                s.secret_key.expose(),
            )
            .await,
        );
    }

    fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.signal("KILL");
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("LZ_S3_ENDPOINT", self.settings.endpoint.clone())]
    }

    /// The object's text, once storage answers (it is given a few tries:
    /// a restarted server takes a moment to serve reads).
    async fn text(&self, key: &str) -> String {
        let bucket = storage::bucket(&self.settings).expect("bucket");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match bucket.get_object(key).await {
                Ok(r) if r.status_code() == 200 => {
                    return String::from_utf8_lossy(r.as_slice()).into_owned()
                }
                other if Instant::now() > deadline => panic!("{key}: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

fn pairs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_wait_for_storage_to_come_back_and_are_stored_once_it_does() {
    let git = GitServer::start();
    let url = git.repo("public/outage.git", &files(&job()));
    let stack = Stack::new(2).await;
    let mut s3 = PrivateS3::start(&stack).await;
    let env = s3.env();
    let _worker = stack.start_worker(&pairs(&env)).await;

    let id = stack.submit(&url, &[], None).await;
    stack.status.running(id, WAIT).await;
    s3.kill();
    // The script ends about 2 s after it started; its upload then fails
    // and is retried while storage is down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let events = stack.status.events_for(id);
    assert!(
        events.iter().all(|e| !e.status.is_terminal()),
        "the job ended while storage was down: {events:?}"
    );
    s3.up().await;
    let end = stack.status.terminal(id, WAIT).await;
    assert_eq!(end.status, JobState::Succeeded, "{end:?}");
    assert_eq!(
        end.output_files.clone().unwrap_or_default(),
        vec!["result.txt"]
    );
    let text = s3.text(&format!("jobs/{id}/output/result.txt")).await;
    assert_eq!(text.trim(), "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_gone_for_longer_than_the_retry_budget_fails_the_job_with_the_reason() {
    let git = GitServer::start();
    let url = git.repo("public/outage-long.git", &files(&job()));
    let stack = Stack::new(2).await;
    let mut s3 = PrivateS3::start(&stack).await;
    let mut env = s3.env();
    env.push(("LZ_UPLOAD_RETRY_SECS", "3".into()));
    let _worker = stack.start_worker(&pairs(&env)).await;

    let id = stack.submit(&url, &[], None).await;
    stack.status.running(id, WAIT).await;
    s3.kill();
    let end = stack.status.terminal(id, WAIT).await;
    assert_eq!(end.status, JobState::Failed, "{end:?}");
    assert_eq!(end.exit_code, Some(0), "the script itself succeeded");
    let error = end.error.unwrap_or_default();
    assert!(
        error.contains("could not be stored") && error.contains("unreachable for 3 s"),
        "{error}"
    );
}
