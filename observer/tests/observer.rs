//! The observer on the real stack: Kafka events in, observations in
//! MongoDB, decisions to a webhook and to a stand-in Kubernetes API.

mod helpers;

use std::time::Duration;

use common::JobState;
use helpers::*;
use serde_json::json;

#[tokio::test]
async fn observations_count_every_event_and_the_webhook_gets_a_scale_up() {
    let hook = Recorder::start(vec![503]).await;
    let url = hook.url("/scale");
    let obs = TestObserver::start(settings(&[
        ("LZ_ACTUATOR", "webhook"),
        ("LZ_WEBHOOK_URL", &url),
        ("LZ_WEBHOOK_TOKEN", "hook-secret"),
        ("LZ_MAX_WORKERS", "8"),
        ("LZ_TARGET_DRAIN_SECONDS", "30"),
    ]))
    .await;

    // A burst of 30 jobs nobody has consumed yet, with their events: all
    // queued, one running, two finished (4 s and 6 s).
    obs.enqueue_jobs(30).await;
    let t = now_ms();
    for _ in 0..30 {
        obs.publish(&event(JobState::Queued, t, None)).await;
    }
    obs.publish(&event(JobState::Running, t + 1, None)).await;
    obs.publish(&event(JobState::Succeeded, t + 2, Some(4.0)))
        .await;
    obs.publish(&event(JobState::Failed, t + 3, Some(6.0)))
        .await;

    // Every event ends up counted exactly once across the stored windows
    // (an event that reached the observer after its window closed revises
    // that window).
    let totals = eventually(Duration::from_secs(20), || async {
        let all = obs.observations().await;
        let sum = |f: fn(&common::Observation) -> f64| all.iter().map(f).sum::<f64>();
        let totals = (
            sum(|o| o.avg_rate_of_arrival),
            sum(|o| o.avg_rate_of_service),
            sum(|o| o.avg_rate_of_finished),
        );
        (totals == (30.0, 1.0, 2.0)).then_some(all)
    })
    .await;
    let all = totals.expect("all 33 events counted in MongoDB");
    let window = all
        .iter()
        .find(|o| o.avg_rate_of_finished > 0.0)
        .expect("the window with the finishes");
    assert_eq!(window.avg_rate_of_finished, 2.0);
    assert_eq!(window.avg_response_time, 5.0);
    assert_eq!(window.window_ms, REFRESH_MS as u64);
    assert_eq!(
        window.timestamp % REFRESH_MS,
        0,
        "windows end on REFRESH_RATE boundaries"
    );
    for pair in all.windows(2) {
        assert_eq!(
            pair[1].timestamp - pair[0].timestamp,
            REFRESH_MS,
            "one observation per window"
        );
    }
    let last = all.last().expect("some");
    assert_eq!((last.backlog, last.workers, last.partitions), (30, 0, 4));

    // The webhook saw a scale-up: 30 waiting jobs call for more workers
    // than the 4 partitions allow (tansu cannot grow the topic), so 4.
    let sent = eventually(Duration::from_secs(10), || async {
        hook.received()
            .into_iter()
            .find(|r| r.json()["desiredReplicas"] == 4)
    })
    .await
    .expect("webhook received a scale-up to 4");
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/scale");
    assert_eq!(
        sent.headers.get("authorization").map(String::as_str),
        Some("Bearer hook-secret")
    );
    let body = sent.json();
    assert_eq!(body["currentReplicas"], 0);
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("capped by 4 partitions")),
        "{body}"
    );
    assert_eq!(body["observation"]["backlog"], 30);
    assert_eq!(body["observation"]["decision"]["desired"], 4);
    // The first call was answered 503 and retried with the same body.
    let all_sent = eventually(Duration::from_secs(5), || async {
        let r = hook.received();
        (r.len() >= 2).then_some(r)
    })
    .await
    .expect("a retry after the 503");
    assert_eq!(all_sent[0].body, all_sent[1].body);

    let desired = obs.desired().await;
    assert_eq!(desired["desiredReplicas"], 4);
    assert_eq!(desired["backlog"], 30);

    // The frontend's query: newest 10, newest first, as common::Observation.
    eventually(Duration::from_secs(10), || async {
        (obs.observations().await.len() >= 10).then_some(())
    })
    .await
    .expect("10 windows stored");
    let newest = observer::store::ObservationStore::new(&obs.db)
        .newest(10)
        .await
        .expect("read");
    assert_eq!(newest.len(), 10);
    assert!(newest.windows(2).all(|p| p[0].timestamp > p[1].timestamp));
    assert!(newest[0].decision.is_some());
    obs.drop_database().await;
}

#[tokio::test]
async fn a_drained_backlog_scales_down_after_the_stabilisation_window() {
    let hook = Recorder::start(vec![]).await;
    let url = hook.url("/scale");
    let obs = TestObserver::start(settings(&[
        ("LZ_ACTUATOR", "webhook"),
        ("LZ_WEBHOOK_URL", &url),
        ("LZ_SCALE_DOWN_STABILISATION_MS", "2000"),
        ("LZ_TARGET_DRAIN_SECONDS", "10"),
        ("LZ_ASSUMED_JOB_SECONDS", "2"),
    ]))
    .await;
    obs.enqueue_jobs(9).await;
    // 9 waiting x 2 s / 10 s = 1.8 -> 2 workers.
    let up = eventually(Duration::from_secs(10), || async {
        hook.received()
            .into_iter()
            .find(|r| r.json()["desiredReplicas"] == 2)
    })
    .await
    .expect("scale-up to 2");

    obs.drain_backlog();
    let down = eventually(Duration::from_secs(15), || async {
        hook.received()
            .into_iter()
            .find(|r| r.at > up.at && r.json()["desiredReplicas"] == 1)
    })
    .await
    .expect("scale-down to 1 after the backlog drained");
    assert!(down.at > up.at);
    // Measured in window time, where the stabiliser works: the first
    // decision for 1 comes at least 2 s after the last one that asked for 2.
    let decided: Vec<(i64, u32, String)> = obs
        .observations()
        .await
        .into_iter()
        .filter_map(|o| o.decision.map(|d| (o.timestamp, d.desired, d.reason)))
        .collect();
    let last_asked_2 = decided
        .iter()
        .filter(|(_, desired, reason)| *desired == 2 && !reason.contains("holding"))
        .map(|(t, _, _)| *t)
        .max()
        .expect("a decision for 2");
    let first_1 = decided
        .iter()
        .find(|(t, desired, _)| *t > last_asked_2 && *desired == 1)
        .map(|(t, _, _)| *t)
        .expect("a decision for 1 after it");
    assert!(first_1 - last_asked_2 >= 2000, "{decided:?}");
    // In between, the stabiliser held 2 with the backlog already gone.
    let held = decided.iter().any(|(t, desired, reason)| {
        *t > last_asked_2 && *desired == 2 && reason.contains("holding 2")
    });
    assert!(held, "a decision held 2 while the backlog was already 0");
    assert_eq!(obs.desired().await["desiredReplicas"], 1);
    obs.drop_database().await;
}

#[tokio::test]
async fn a_late_event_revises_the_stored_window() {
    let obs = TestObserver::start(settings(&[])).await;
    // Let a few windows close, then report something that happened in the
    // first of them.
    tokio::time::sleep(Duration::from_millis(4 * REFRESH_MS as u64)).await;
    let stored_empty = obs
        .observations()
        .await
        .into_iter()
        .next()
        .expect("first window stored");
    let first_end = stored_empty.timestamp;
    assert_eq!(stored_empty.avg_rate_of_arrival, 0.0);
    for _ in 0..3 {
        obs.publish(&event(JobState::Queued, first_end - 1, None))
            .await;
    }
    let revised = eventually(Duration::from_secs(10), || async {
        obs.observations()
            .await
            .into_iter()
            .find(|o| o.timestamp == first_end && o.avg_rate_of_arrival == 3.0)
    })
    .await
    .expect("window revised with the 3 late arrivals");
    // Revised in place: still one document per window.
    let same_window = obs
        .observations()
        .await
        .iter()
        .filter(|o| o.timestamp == first_end)
        .count();
    assert_eq!(same_window, 1);
    assert_eq!(
        revised.decision, stored_empty.decision,
        "the decision taken then is kept"
    );
    obs.drop_database().await;
}

#[tokio::test]
async fn the_collection_is_bounded() {
    let obs = TestObserver::start(settings(&[("LZ_OBSERVATIONS_KEEP", "3")])).await;
    tokio::time::sleep(Duration::from_millis(6 * REFRESH_MS as u64)).await;
    let all = obs.observations().await;
    assert!(
        (1..=4).contains(&all.len()),
        "at most 3 kept (one more between insert and trim), got {}",
        all.len()
    );
    obs.drop_database().await;
}

#[tokio::test]
async fn kubernetes_actuator_patches_the_scale_subresource() {
    let api = Recorder::start(vec![]).await;
    let api_url = api.url("");
    let token_file = std::env::temp_dir().join(format!("lz-k8s-token-{}", uuid::Uuid::new_v4()));
    std::fs::write(&token_file, "service-account-token\n").expect("token file");
    let token_path = token_file.display().to_string();
    let obs = TestObserver::start(settings(&[
        ("LZ_ACTUATOR", "kubernetes"),
        ("LZ_K8S_API", &api_url),
        ("LZ_K8S_TOKEN_FILE", &token_path),
        ("LZ_K8S_NAMESPACE", "lanzadera"),
        ("LZ_K8S_DEPLOYMENT", "lanzadera-worker"),
        ("LZ_TARGET_DRAIN_SECONDS", "10"),
        ("LZ_ASSUMED_JOB_SECONDS", "2"),
    ]))
    .await;
    obs.enqueue_jobs(16).await;
    let enqueued = std::time::Instant::now();
    // 16 x 2 / 10 = 3.2 -> 4 workers, within the 4 partitions.
    let patch = eventually(Duration::from_secs(10), || async {
        api.received()
            .into_iter()
            .find(|r| r.json() == json!({"spec": {"replicas": 4}}))
    })
    .await
    .expect("PATCH with 4 replicas");
    // The next window to close sees the backlog: at most one window plus
    // the grace, plus the probe and the request (slack for a busy machine).
    let reaction = patch.at - enqueued;
    eprintln!("backlog to scale request: {reaction:?}");
    assert!(
        reaction < Duration::from_millis(2 * REFRESH_MS as u64 + 1000),
        "{reaction:?}"
    );
    assert_eq!(patch.method, "PATCH");
    assert_eq!(
        patch.path,
        "/apis/apps/v1/namespaces/lanzadera/deployments/lanzadera-worker/scale"
    );
    assert_eq!(
        patch.headers.get("content-type").map(String::as_str),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        patch.headers.get("authorization").map(String::as_str),
        Some("Bearer service-account-token")
    );
    assert_eq!(obs.desired().await["desiredReplicas"], 4);
    // Unchanged decisions are not re-sent every window (resync is 60 s).
    tokio::time::sleep(Duration::from_millis(3 * REFRESH_MS as u64)).await;
    let patches = api
        .received()
        .iter()
        .filter(|r| r.json() == json!({"spec": {"replicas": 4}}))
        .count();
    assert_eq!(patches, 1, "one PATCH for one change");
    let _ = std::fs::remove_file(token_file);
    obs.drop_database().await;
}

#[tokio::test]
async fn health_and_desired_answer_before_the_first_window() {
    let obs = TestObserver::start(settings(&[("LZ_MIN_WORKERS", "2")])).await;
    let health = reqwest::get(obs.url("/health")).await.expect("answers");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "Observer is running");
    let desired = obs.desired().await;
    assert!(
        desired["desiredReplicas"].as_u64().is_some_and(|n| n >= 2),
        "{desired}"
    );
    obs.drop_database().await;
}

#[tokio::test]
async fn the_probe_reads_the_lag_and_growing_is_refused_or_done() {
    let obs = TestObserver::start(settings(&[])).await;
    let probe = observer::cluster::ClusterProbe::new(&obs.settings.kafka, Duration::from_secs(5))
        .expect("probe");
    obs.enqueue_jobs(7).await;
    let state = probe.probe().await.expect("probe works");
    assert_eq!((state.backlog, state.workers, state.partitions), (7, 0, 4));
    obs.drain_backlog();
    assert_eq!(probe.probe().await.expect("probe works").backlog, 0);
    obs.enqueue_jobs(2).await;
    assert_eq!(probe.probe().await.expect("probe works").backlog, 2);
    // tansu refuses CreatePartitions; real Kafka grows the topic.
    match probe.grow(8).await {
        observer::cluster::Growth::Unsupported => {}
        observer::cluster::Growth::Grown(8) => {
            assert_eq!(probe.probe().await.expect("probe works").partitions, 8)
        }
        other => panic!("unexpected answer to growing: {other:?}"),
    }
    obs.drop_database().await;
}

#[tokio::test]
async fn a_failing_webhook_never_stops_observing() {
    // Nothing listens there: every call fails after its retries.
    let obs = TestObserver::start(settings(&[
        ("LZ_ACTUATOR", "webhook"),
        ("LZ_WEBHOOK_URL", "http://127.0.0.1:9/scale"),
        ("LZ_WEBHOOK_RETRIES", "3"),
    ]))
    .await;
    obs.enqueue_jobs(5).await;
    tokio::time::sleep(Duration::from_millis(8 * REFRESH_MS as u64)).await;
    let decided = obs
        .observations()
        .await
        .iter()
        .filter(|o| o.decision.is_some())
        .count();
    assert!(
        decided >= 6,
        "one observation with a decision per window, got {decided}"
    );
    assert_eq!(obs.desired().await["backlog"], 5);
    obs.drop_database().await;
}
