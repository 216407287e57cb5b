use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::TestApp;

const REPO: &str = "https://git.example.com/acme/sim.git";

#[tokio::test]
async fn submit_records_queues_and_shows_the_job_without_its_credentials() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = app
        .submit_ok(
            &token,
            &json!({
                "url": "https://alice:ghp_T0KEN@git.example.com/acme/sim.git",
                "args": "--mesh 'fine grid' -n 3",
                "config": {"tolerance": 1e-6},
                "ref": "release/2.1",
                "timeoutSeconds": 600
            }),
        )
        .await;

    let job = app.job(&token, id).await;
    assert_eq!(job["id"], id.to_string());
    assert_eq!(job["status"], "queued");
    assert_eq!(job["url"], "https://***@git.example.com/acme/sim.git");
    assert_eq!(job["args"], json!(["--mesh", "fine grid", "-n", "3"]));
    assert_eq!(job["config"], r#"{"tolerance":1e-6}"#);
    assert_eq!(job["ref"], "release/2.1");
    assert_eq!(job["timeoutSeconds"], 600);
    assert_eq!(job["commit"], Value::Null, "known once a worker cloned it");
    assert_eq!(job["username"], "alice");
    assert_eq!(job["outputFiles"], json!([]));
    assert!(job["submittedAt"].as_str().unwrap().ends_with('Z'));
    assert!(!job.to_string().contains("ghp_T0KEN"));

    // The worker's message carries the credentials; the status event does not.
    let queued = app
        .read_topic(&app.settings.kafka.jobs_topic, Duration::from_secs(3))
        .await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["id"], id.to_string());
    assert_eq!(
        queued[0]["url"],
        "https://alice:ghp_T0KEN@git.example.com/acme/sim.git"
    );
    assert_eq!(queued[0]["ref"], "release/2.1");
    assert_eq!(queued[0]["timeoutSeconds"], 600);
    let events = app
        .read_topic(&app.settings.kafka.status_topic, Duration::from_secs(3))
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], "queued");
    assert!(!events[0].to_string().contains("ghp_T0KEN"));

    // Listed in both list routes.
    let all: Vec<Value> = app.get(&token, "/api/status").await.json().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], id.to_string());
    let compat: Value = app
        .get(&token, &format!("/api/status/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(compat["status"], "queued");
}

#[tokio::test]
async fn the_better_shaped_routes_page_and_filter() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let response = app
            .http
            .post(app.url("/api/jobs"))
            .bearer_auth(&token)
            .json(&json!({"url": REPO}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let body: Value = response.json().await.unwrap();
        assert!(location.ends_with(body["jobId"].as_str().unwrap()));
        ids.push(body["jobId"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let page: Value = app
        .get(&token, "/api/jobs?per_page=2&page=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 5);
    let listed: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![ids[4].as_str(), ids[3].as_str()],
        "newest first"
    );
    let last: Value = app
        .get(&token, "/api/jobs?per_page=2&page=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last["jobs"].as_array().unwrap().len(), 1);
    let none: Value = app
        .get(&token, "/api/jobs?status=running")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["total"], 0);
    let queued: Value = app
        .get(&token, "/api/jobs?status=queued")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queued["total"], 5);
    assert_eq!(app.get(&token, "/api/jobs?status=done").await.status(), 400);
    assert_eq!(
        app.get(&token, "/api/jobs?per_page=1000").await.status(),
        400
    );
    assert_eq!(app.get(&token, "/api/jobs?page=x").await.status(), 400);
}

#[tokio::test]
async fn bad_submissions_get_a_clear_400_and_change_nothing() {
    let app = TestApp::spawn_with(&[
        ("LZ_MAX_CONFIG_BYTES", "1000"),
        ("LZ_MAX_BODY_BYTES", "4000"),
        ("LZ_ALLOW_INSECURE_REPOS", "false"),
    ])
    .await;
    let token = app.alice().await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({}), 400, "`url` is required"),
        (json!({"url": "not a url"}), 400, "not a valid URL"),
        (
            json!({"url": "http://github.com/o/r"}),
            400,
            "scheme `http` is not allowed",
        ),
        (
            json!({"url": "file:///etc"}),
            400,
            "scheme `file` is not allowed",
        ),
        (json!({"url": "/srv/repo"}), 400, "not a valid URL"),
        (
            json!({"url": REPO, "config": "x".repeat(1001)}),
            400,
            "`config` is larger than 1000 bytes",
        ),
        (
            json!({"url": REPO, "args": "'open"}),
            400,
            "could not be split",
        ),
        (
            json!({"url": REPO, "args": {"a": 1}}),
            400,
            "`args` must be a string or an array",
        ),
        (
            json!({"url": REPO, "config": "y".repeat(5000)}),
            413,
            "larger than 4000 bytes",
        ),
        (
            json!({"url": REPO, "arg": "--steps 3"}),
            400,
            "unknown field `arg`",
        ),
        (
            json!({"url": REPO, "retries": 1}),
            400,
            "`retries` is part of the job contract but this version does not support it yet",
        ),
        (
            json!({"url": REPO, "secrets": {"HOME": "hunter22"}}),
            400,
            "`secrets` name `HOME` is set by the worker",
        ),
        (
            json!({"url": REPO, "secrets": {"T": "ab"}}),
            400,
            "the value of `secrets` entry `T` is shorter than 4 bytes",
        ),
        (
            json!({"url": REPO, "ref": "main~1"}),
            400,
            "`ref` must not contain any of ~ ^ :",
        ),
        (
            json!({"url": REPO, "timeoutSeconds": 0}),
            400,
            "`timeoutSeconds` must be a whole number of seconds",
        ),
        (
            json!({"url": REPO, "timeoutSeconds": 999_999_999}),
            400,
            "over the operator's maximum of",
        ),
    ];
    for (body, status, message) in cases {
        let response = app.submit(&token, &body).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{error} should say {message}"
        );
        assert!(error["error"].is_string());
    }
    let malformed = app
        .http
        .post(app.url("/api/addJob"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"url\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let error: Value = malformed.json().await.unwrap();
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));

    let listed: Vec<Value> = app.get(&token, "/api/status").await.json().await.unwrap();
    assert!(listed.is_empty(), "nothing recorded: {listed:?}");
    assert!(app
        .read_topic(&app.settings.kafka.jobs_topic, Duration::from_secs(2))
        .await
        .is_empty());
}

#[tokio::test]
async fn tenants_cannot_see_or_touch_each_others_jobs() {
    let app = TestApp::spawn().await;
    let alice = app.alice().await;
    let bob = app.bob().await;
    let id = app.submit_ok(&alice, &json!({"url": REPO})).await;

    let bobs: Vec<Value> = app.get(&bob, "/api/status").await.json().await.unwrap();
    assert!(bobs.is_empty());
    let bobs: Value = app.get(&bob, "/api/jobs").await.json().await.unwrap();
    assert_eq!(bobs["total"], 0);
    let missing = uuid::Uuid::new_v4();
    for path in [
        format!("/api/status/{id}"),
        format!("/api/jobs/{id}"),
        format!("/api/jobs/{id}/logs"),
        format!("/api/jobs/{id}/files/result.csv"),
        format!("/api/results/{id}/result.csv"),
    ] {
        let theirs = app.get(&bob, &path).await;
        assert_eq!(theirs.status(), 404, "{path}");
        let theirs: Value = theirs.json().await.unwrap();
        let unknown: Value = app
            .get(&bob, &path.replace(&id.to_string(), &missing.to_string()))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            theirs, unknown,
            "someone else's job looks exactly like a missing one"
        );
    }
    let delete = app
        .http
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    assert_eq!(
        app.get(&bob, &format!("/api/deleteJob/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(app.job(&alice, id).await["status"], "queued");
    assert_eq!(app.get(&alice, "/api/jobs/not-a-uuid").await.status(), 404);
}

#[tokio::test]
async fn deleting_a_queued_job_cancels_it_and_tells_the_workers() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = app.submit_ok(&token, &json!({"url": REPO})).await;
    let response = app.get(&token, &format!("/api/deleteJob/{id}")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    let job = app.job(&token, id).await;
    assert_eq!(job["status"], "cancelled");
    assert!(job["finishedAt"].is_string());

    let requests = app
        .read_topic(&app.settings.kafka.cancel_topic, Duration::from_secs(3))
        .await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["jobId"], id.to_string());

    let again = app
        .http
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"], "conflict");
}

#[tokio::test]
async fn deleting_a_running_job_asks_its_worker_to_stop_it() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = app.submit_ok(&token, &json!({"url": REPO})).await;
    let mut running =
        common::StatusEvent::new(id, "ignored-by-recorder", common::JobState::Running);
    running.attempt = 1;
    running.worker_id = Some("w-1".into());
    app.publish_status(&running).await;
    app.wait_for_job(&token, id, |j| j["status"] == "running")
        .await;

    let response = app
        .http
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(
        app.job(&token, id).await["status"],
        "running",
        "the worker reports the end"
    );
    let requests = app
        .read_topic(&app.settings.kafka.cancel_topic, Duration::from_secs(3))
        .await;
    assert_eq!(requests.len(), 1);
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_submit_leaves_no_record_without_its_message() {
    use tokio::io::AsyncWriteExt;

    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let body = json!({"url": REPO}).to_string();
    let request = format!(
        "POST /api/addJob HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let host = app.address.trim_start_matches("http://").to_string();
    // Warm: keys fetched, database and broker connections open.
    app.submit_ok(&token, &json!({"url": REPO})).await;
    // Each client sends a whole request and resets the connection a little
    // later than the one before, so some hang up while the record is being
    // written and some while the job is being queued.
    let clients = (0..40u64).map(|i| {
        let (host, request) = (host.clone(), request.clone());
        async move {
            let mut stream = tokio::net::TcpStream::connect(&host)
                .await
                .expect("connect");
            stream.write_all(request.as_bytes()).await.expect("send");
            tokio::time::sleep(Duration::from_micros(500 * i)).await;
            // Zero linger: closing sends a reset, as a killed client would.
            let stream = stream.into_std().expect("std stream");
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .expect("linger");
            drop(stream);
        }
    });
    futures::future::join_all(clients).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let records: Vec<Value> = app.get(&token, "/api/status").await.json().await.unwrap();
    let queued: Vec<String> = app
        .read_topic(&app.settings.kafka.jobs_topic, Duration::from_secs(3))
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_string())
        .collect();
    eprintln!(
        "{} of 40 hung-up submissions were recorded",
        records.len() - 1
    );
    for record in &records {
        let id = record["id"].as_str().unwrap();
        assert!(
            queued.iter().any(|q| q == id),
            "job {id} is recorded as {} but was never queued",
            record["status"]
        );
    }
    // And every queued job has its record.
    for id in &queued {
        assert!(records.iter().any(|r| r["id"] == *id.as_str()), "{id}");
    }
}
