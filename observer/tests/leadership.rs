//! Several observers, one actuator (`docs/observers.md`): the lease rule
//! on the real MongoDB, and two observer processes of the built binary
//! against one namespace, one of them killed with -9.

mod helpers;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::provision::Provisioner;
use helpers::*;
use mongodb::bson::doc;
use observer::leadership::{Claim, LeaderLease, LEADERS};
use testkit::Namespace;

#[tokio::test]
async fn the_lease_goes_to_one_holder_until_it_runs_out_or_is_given_up() {
    let settings = settings(&[]);
    let db = common::mongo::connect(&settings.mongo)
        .await
        .expect("mongo client");
    let lease = Duration::from_millis(1000);
    let a = LeaderLease::new(&db, "a", lease);
    let b = LeaderLease::new(&db, "b", lease);
    let t = now_ms();

    assert_eq!(
        a.claim(t).await.expect("claim"),
        Claim::Won,
        "free: a takes it"
    );
    assert_eq!(
        b.claim(t + 10).await.expect("claim"),
        Claim::Lost,
        "held by a"
    );
    assert_eq!(
        a.claim(t + 500).await.expect("claim"),
        Claim::Won,
        "a renews"
    );
    assert_eq!(
        b.claim(t + 1400).await.expect("claim"),
        Claim::Lost,
        "renewed at +500: held until +1500"
    );
    assert_eq!(
        b.claim(t + 1501).await.expect("claim"),
        Claim::Won,
        "ran out: b takes it"
    );
    assert_eq!(
        a.claim(t + 1600).await.expect("claim"),
        Claim::Lost,
        "a lost it"
    );
    b.release().await.expect("release");
    a.release()
        .await
        .expect("releasing what one does not hold changes nothing");
    assert_eq!(
        a.claim(t + 1700).await.expect("claim"),
        Claim::Won,
        "given up by b: a takes it at once"
    );
    let documents = db
        .collection::<mongodb::bson::Document>(LEADERS)
        .count_documents(doc! {})
        .await
        .expect("count");
    assert_eq!(documents, 1, "one lease document, whoever holds it");
    let _ = db.drop().await;
}

/// An observer process of the built binary, killed when dropped.
struct Process {
    child: Child,
    id: String,
    port: u16,
}

impl Process {
    fn start(env: &[(String, String)], id: &str) -> Self {
        let port = testkit::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_lanzadera-observer"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LZ_OBSERVER_ID", id)
            .env("LZ_OBSERVER_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the observer binary starts");
        Self {
            child,
            id: id.to_string(),
            port,
        }
    }

    async fn leader(&self) -> Option<bool> {
        let url = format!("http://127.0.0.1:{}/metrics/desired", self.port);
        let body: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
        assert_eq!(body["observer"], self.id.as_str(), "{body}");
        body["leader"].as_bool()
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The windows stored, oldest first.
async fn stored_windows(db: &mongodb::Database) -> Vec<i64> {
    use futures::TryStreamExt;
    db.collection::<common::Observation>(common::mongo::OBSERVATIONS)
        .find(doc! {})
        .sort(doc! {"timestamp": 1})
        .await
        .expect("find")
        .try_collect::<Vec<_>>()
        .await
        .expect("read")
        .into_iter()
        .map(|o| o.timestamp)
        .collect()
}

/// Waits until the windows up to `until_ms` are stored, and checks that
/// none is missing or stored twice.
async fn assert_windows_stored_through(db: &mongodb::Database, until_ms: i64) {
    let stamps = eventually(Duration::from_secs(10), || async {
        let stamps = stored_windows(db).await;
        stamps
            .last()
            .is_some_and(|&t| t >= until_ms)
            .then_some(stamps)
    })
    .await
    .unwrap_or_else(|| panic!("windows up to {until_ms} stored"));
    let mut unique = stamps.clone();
    unique.dedup();
    assert_eq!(unique, stamps, "no window stored twice");
    assert!(
        stamps.windows(2).all(|w| w[1] - w[0] == 500),
        "no window missing across the take-overs: {stamps:?}"
    );
}

/// Who posted each decision the hook received after `since`.
fn senders(hook: &Recorder, since: Instant) -> Vec<String> {
    hook.received()
        .iter()
        .filter(|r| r.at >= since)
        .map(|r| r.json()["observer"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[tokio::test]
async fn of_two_observer_processes_one_actuates_and_the_other_takes_over_when_it_dies() {
    const LEASE_MS: u64 = 3000;
    let hook = Recorder::start(vec![]).await;
    let url = hook.url("/scale");
    let lease = LEASE_MS.to_string();
    let namespace = Namespace::new("lz-lead-");
    let env = namespace.layered(&[
        ("LZ_JOBS_PARTITIONS", "4"),
        ("LZ_STATUS_PARTITIONS", "2"),
        ("REFRESH_RATE", "500"),
        ("LZ_OBSERVER_GRACE_MS", "100"),
        ("LZ_ACTUATOR", "webhook"),
        ("LZ_WEBHOOK_URL", &url),
        // Every window's decision is sent: who sends is what is tested.
        ("LZ_ACTUATOR_RESYNC_MS", "0"),
        ("LZ_LEADER_LEASE_MS", &lease),
        ("LZ_MAX_WORKERS", "8"),
    ]);
    let settings = observer::Settings::from_env(&common::settings::Env::from_pairs(
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
    .expect("settings");
    Provisioner::new()
        .topics(&settings.kafka)
        .within(Duration::from_secs(30))
        .await
        .expect("Kafka reachable (dev/stack.sh up)");
    let producer = common::kafka::producer(&settings.kafka).expect("producer");
    enqueue_jobs(&producer, &settings.kafka, 12).await;

    let a = Process::start(&env, "obs-a");
    let b = Process::start(&env, "obs-b");
    let standings = || async { (a.leader().await, b.leader().await) };
    let first = eventually(Duration::from_secs(30), || async {
        match standings().await {
            (Some(true), Some(false)) => Some("obs-a"),
            (Some(false), Some(true)) => Some("obs-b"),
            _ => None,
        }
    })
    .await
    .expect("exactly one of the two leads");
    let db = common::mongo::connect(&settings.mongo)
        .await
        .expect("mongo client");
    eventually(Duration::from_secs(20), || async {
        (!senders(&hook, Instant::now() - Duration::from_secs(1)).is_empty()).then_some(())
    })
    .await
    .expect("the leader posts its decisions");

    // Both observe and decide for 3 s; only the leader posts.
    let both_since = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = senders(&hook, both_since);
    assert!(sent.len() >= 3, "a decision per window: {sent:?}");
    assert!(
        sent.iter().all(|s| s == first),
        "only {first} posts: {sent:?}"
    );
    assert_eq!(
        standings().await,
        if first == "obs-a" {
            (Some(true), Some(false))
        } else {
            (Some(false), Some(true))
        }
    );

    // kill -9 of the leader: the other posts within lease + renewal +
    // one window.
    let (dead, survivor) = if first == "obs-a" { (a, b) } else { (b, a) };
    dead.signal("KILL");
    let killed = Instant::now();
    let killed_ms = now_ms();
    let took_over = eventually(Duration::from_secs(20), || async {
        hook.received()
            .into_iter()
            .find(|r| r.at >= killed && r.json()["observer"] == survivor.id.as_str())
            .map(|r| r.at - killed)
    })
    .await
    .expect("the survivor takes over");
    println!("kill -9 of the leader to the first decision of the next: {took_over:?}");
    let bound = Duration::from_millis(LEASE_MS + LEASE_MS / 3 + 500 + 1500);
    assert!(took_over <= bound, "took {took_over:?}, bound {bound:?}");
    assert_eq!(survivor.leader().await, Some(true));
    drop(dead);
    // The windows of the gap are stored by the new leader.
    assert_windows_stored_through(&db, killed_ms + 500).await;

    // A clean stop gives the lease up: a restarted observer follows, then
    // leads within a renewal once the leader stops with SIGTERM.
    let again = Process::start(&env, "obs-c");
    eventually(Duration::from_secs(30), || async {
        (again.leader().await == Some(false)).then_some(())
    })
    .await
    .expect("the newcomer follows");
    survivor.signal("TERM");
    let stopped = Instant::now();
    let stopped_ms = now_ms();
    let handed = eventually(Duration::from_secs(20), || async {
        hook.received()
            .into_iter()
            .find(|r| r.at >= stopped && r.json()["observer"] == "obs-c")
            .map(|r| r.at - stopped)
    })
    .await
    .expect("the newcomer takes over");
    println!("SIGTERM of the leader to the first decision of the next: {handed:?}");
    assert!(
        handed < Duration::from_millis(LEASE_MS),
        "given up, not waited out: {handed:?}"
    );

    assert_windows_stored_through(&db, stopped_ms + 500).await;
    drop(again);
    let _ = db.drop().await;
}
