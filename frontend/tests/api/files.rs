use common::layout::{log_key, output_key, LogStream};
use common::{JobState, OutputPath, StatusEvent};
use serde_json::json;

use crate::helpers::TestApp;

/// A finished job with outputs stored the way the worker stores them.
async fn finished_job(app: &TestApp, token: &str) -> common::JobId {
    let id = app
        .submit_ok(token, &json!({"url": "https://h.example/o/r"}))
        .await;
    let bucket = common::storage::bucket(&app.settings.s3).unwrap();
    let files = [
        ("result.csv", "x,y\n1,2\n"),
        ("plots/deep/a b.txt", "nested"),
    ];
    for (path, content) in files {
        let key = output_key(id, &OutputPath::parse(path).unwrap());
        bucket.put_object(&key, content.as_bytes()).await.unwrap();
    }
    bucket
        .put_object(log_key(id, LogStream::Stdout), b"hello from stdout\n")
        .await
        .unwrap();
    bucket
        .put_object(log_key(id, LogStream::Stderr), b"warning: careful\n")
        .await
        .unwrap();
    let mut done = StatusEvent::new(id, "o", JobState::Succeeded);
    done.exit_code = Some(0);
    done.output_files = Some(files.iter().map(|(p, _)| p.to_string()).collect());
    app.publish_status(&done).await;
    app.wait_for_job(token, id, |j| j["status"] == "succeeded")
        .await;
    id
}

#[tokio::test]
async fn outputs_and_logs_download_as_attachments() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = finished_job(&app, &token).await;
    let job = app.job(&token, id).await;

    // The links in the record work as they are.
    let link = job["outputFiles"][0].as_str().unwrap();
    let response = app.http.get(link).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"result.csv\""
    );
    assert_eq!(response.text().await.unwrap(), "x,y\n1,2\n");

    let nested = job["outputFiles"][1].as_str().unwrap();
    assert!(nested.ends_with("/files/plots/deep/a%20b.txt"), "{nested}");
    let response = app
        .http
        .get(nested)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"a b.txt\""
    );
    assert_eq!(response.text().await.unwrap(), "nested");

    let compat = app
        .get(&token, &format!("/api/results/{id}/result.csv"))
        .await;
    assert_eq!(compat.text().await.unwrap(), "x,y\n1,2\n");
    let stdout = app
        .get(&token, &format!("/api/results/{id}/stdout.log"))
        .await;
    assert_eq!(stdout.text().await.unwrap(), "hello from stdout\n");
    let stdout = app.get(&token, &format!("/api/jobs/{id}/logs")).await;
    assert_eq!(stdout.status(), 200);
    assert_eq!(stdout.text().await.unwrap(), "hello from stdout\n");
    let stderr = app
        .get(&token, &format!("/api/jobs/{id}/logs?stream=stderr"))
        .await;
    assert_eq!(stderr.text().await.unwrap(), "warning: careful\n");
    assert_eq!(
        app.get(&token, &format!("/api/jobs/{id}/logs?stream=env"))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn traversal_and_unlisted_names_never_reach_storage() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = finished_job(&app, &token).await;
    // Another job's file, stored but not this job's.
    let other = finished_job(&app, &token).await;
    for (path, status) in [
        (
            format!("/api/jobs/{id}/files/..%2F..%2F{other}%2Foutput%2Fresult.csv"),
            400,
        ),
        (format!("/api/results/{id}/..%2Fresult.csv"), 400),
        (format!("/api/jobs/{id}/files/a%5Cb"), 400),
        (format!("/api/jobs/{id}/files/plots//deep"), 400),
        (format!("/api/jobs/{id}/files/missing.txt"), 404),
        (format!("/api/jobs/{id}/files/plots"), 404),
        (format!("/api/results/{id}/passwd"), 404),
    ] {
        let response = app.get(&token, &path).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["message"].is_string());
    }
}
