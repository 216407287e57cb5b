//! Reads a poller makes cheaper: an `ETag` per job and `304` while nothing
//! changed; ended jobs served from memory.

use common::{JobState, StatusEvent};
use mongodb::bson::doc;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

async fn get_if(app: &TestApp, token: &str, path: &str, tag: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(token)
        .header(IF_NONE_MATCH, tag)
        .send()
        .await
        .unwrap()
}

fn etag(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(ETAG)
        .expect("an ETag")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_poll_with_the_jobs_etag_gets_304_until_the_job_changes() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    for path in [format!("/api/jobs/{id}"), format!("/api/status/{id}")] {
        let first = app.get(&token, &path).await;
        assert_eq!(first.status(), StatusCode::OK);
        let tag = etag(&first);
        assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
        assert_eq!(
            first.json::<serde_json::Value>().await.unwrap()["status"],
            "queued"
        );

        let again = get_if(&app, &token, &path, &tag).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(etag(&again), tag);
        assert!(again.bytes().await.unwrap().is_empty());
        // A weak form, a list and `*` match too; another tag does not.
        for header in [format!("W/{tag}"), format!("\"x\", {tag}"), "*".into()] {
            let r = get_if(&app, &token, &path, &header).await;
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{header}");
        }
        let other = get_if(&app, &token, &path, "\"something-else\"").await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    let tag = etag(&app.get(&token, &format!("/api/jobs/{id}")).await);
    let mut running = StatusEvent::new(id, "o", JobState::Running);
    running.attempt = 1;
    app.publish_status(&running).await;
    app.wait_for_job(&token, id, |j| j["status"] == "running")
        .await;
    let changed = get_if(&app, &token, &format!("/api/jobs/{id}"), &tag).await;
    assert_eq!(changed.status(), StatusCode::OK, "the job changed");
    assert_ne!(etag(&changed), tag);
    assert_eq!(
        changed.json::<serde_json::Value>().await.unwrap()["status"],
        "running"
    );

    // Someone else's job is a 404 with or without a tag.
    let bob = app.bob().await;
    let r = get_if(&app, &bob, &format!("/api/jobs/{id}"), "*").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_ended_job_is_read_from_memory_and_only_by_its_owner() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let id = app
        .submit_ok(&token, &json!({"url": "https://h.example/o/r"}))
        .await;
    let mut done = StatusEvent::new(id, "o", JobState::Succeeded);
    done.exit_code = Some(0);
    app.publish_status(&done).await;
    let ended = app
        .wait_for_job(&token, id, |j| j["status"] == "succeeded")
        .await;

    // Gone from the database, the ended job is still served, unchanged:
    // reads of it no longer touch the database.
    let db = common::mongo::connect(&app.settings.mongo).await.unwrap();
    let removed = db
        .collection::<mongodb::bson::Document>(common::mongo::JOBS)
        .delete_one(doc! {"_id": id.to_string()})
        .await
        .unwrap();
    assert_eq!(removed.deleted_count, 1);
    assert_eq!(app.job(&token, id).await, ended);
    let bob = app.bob().await;
    assert_eq!(
        app.get(&bob, &format!("/api/jobs/{id}")).await.status(),
        StatusCode::NOT_FOUND,
        "from memory too, someone else's job is unknown"
    );
    // Cancelling it is still a conflict: it ended.
    let cancel = app
        .http
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::CONFLICT);

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |from: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "lanzadera_ended_job_reads_total{{from=\"{from}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(count("database"), 1, "{metrics}");
    assert!(count("memory") >= 3, "{metrics}");
}
