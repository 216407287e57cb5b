use std::time::Duration;

use common::{JobState, StatusEvent};
use serde_json::json;

use crate::helpers::TestApp;

fn event(id: common::JobId, status: JobState, attempt: u32) -> StatusEvent {
    let mut e = StatusEvent::new(id, "owner-from-event", status);
    e.attempt = attempt;
    e.worker_id = Some(format!("worker-{attempt}"));
    e
}

#[tokio::test]
async fn events_move_the_record_forward_and_replays_change_nothing() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;

    app.publish_status(&event(id, JobState::Running, 1)).await;
    let job = app
        .wait_for_job(&token, id, |j| j["status"] == "running")
        .await;
    assert_eq!(job["workerId"], "worker-1");
    assert_eq!(job["attempt"], 1);
    assert!(job["startedAt"].is_string());

    let mut done = event(id, JobState::Succeeded, 1);
    done.exit_code = Some(0);
    done.elapsed_seconds = Some(2.5);
    done.output_files = Some(vec!["result.csv".into(), "plots/a.png".into()]);
    app.publish_status(&done).await;
    let job = app
        .wait_for_job(&token, id, |j| j["status"] == "succeeded")
        .await;
    assert_eq!(job["exitCode"], 0);
    assert_eq!(job["elapsedSeconds"], 2.5);
    assert_eq!(job["files"], json!(["result.csv", "plots/a.png"]));
    assert_eq!(
        job["outputFiles"][1],
        format!("{}/api/jobs/{id}/files/plots/a.png", app.address)
    );

    // Replays and late events: a running of the same or a later attempt,
    // a failure, a cancellation. The terminal state is final.
    app.publish_status(&event(id, JobState::Running, 1)).await;
    app.publish_status(&event(id, JobState::Running, 2)).await;
    let mut failed = event(id, JobState::Failed, 2);
    failed.error = Some("late failure".into());
    app.publish_status(&failed).await;
    app.publish_status(&event(id, JobState::Cancelled, 2)).await;
    app.publish_status(&done).await;
    // A marker event on another job shows when the recorder got past them.
    let marker = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    app.publish_status(&event(marker, JobState::Running, 1))
        .await;
    app.wait_for_job(&token, marker, |j| j["status"] == "running")
        .await;

    let job = app.job(&token, id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["workerId"], "worker-1");
    assert_eq!(job["error"], serde_json::Value::Null);
    assert_eq!(job["files"], json!(["result.csv", "plots/a.png"]));
}

#[tokio::test]
async fn an_older_attempts_late_start_does_not_overwrite_a_newer_one() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    app.publish_status(&event(id, JobState::Running, 2)).await;
    app.wait_for_job(&token, id, |j| j["attempt"] == 2).await;
    app.publish_status(&event(id, JobState::Running, 1)).await;
    let mut failed = event(id, JobState::Failed, 2);
    failed.exit_code = Some(3);
    failed.error = Some("the start script exited with code 3".into());
    app.publish_status(&failed).await;
    let job = app
        .wait_for_job(&token, id, |j| j["status"] == "failed")
        .await;
    assert_eq!(job["workerId"], "worker-2");
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["exitCode"], 3);
}

#[tokio::test]
async fn a_terminal_event_for_a_still_queued_job_wins() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    let mut failed = event(id, JobState::Failed, 1);
    failed.error = Some("clone failed: repository not found".into());
    app.publish_status(&failed).await;
    // The late `running` must not reopen it.
    app.publish_status(&event(id, JobState::Running, 1)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let job = app.job(&token, id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "clone failed: repository not found");
}

#[tokio::test]
async fn unreadable_events_are_skipped_without_stopping_the_recorder() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    let producer = common::kafka::producer(&app.settings.kafka).unwrap();
    common::kafka::produce_json(
        &producer,
        &app.settings.kafka.status_topic,
        &id.to_string(),
        &json!({"garbage": true}),
    )
    .await
    .unwrap();
    app.publish_status(&event(id, JobState::Running, 1)).await;
    app.wait_for_job(&token, id, |j| j["status"] == "running")
        .await;
}

#[tokio::test]
async fn two_replicas_share_the_recording() {
    // Two frontends on the same topics, database and recorder group, as
    // replicas behind a load balancer would be.
    let settings = crate::helpers::isolated_settings(&[]);
    let first = TestApp::spawn_settings(settings.clone()).await;
    let second = TestApp::spawn_settings(settings).await;
    let token = first.alice().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { &first } else { &second };
        ids.push(
            app.submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
                .await,
        );
    }
    for id in &ids {
        let mut done = event(*id, JobState::Succeeded, 1);
        done.exit_code = Some(0);
        first.publish_status(&done).await;
    }
    for id in &ids {
        // Either replica answers for every job.
        second
            .wait_for_job(&token, *id, |j| j["status"] == "succeeded")
            .await;
        assert_eq!(first.job(&token, *id).await["status"], "succeeded");
    }
}
