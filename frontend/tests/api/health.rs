use common::Observation;
use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn health_answers_like_the_original_service() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "Server is Running");
}

#[tokio::test]
async fn ready_when_kafka_and_mongodb_answer() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["mongodb"], "up");
    assert_eq!(body["kafka"], "up");
}

#[tokio::test]
async fn load_needs_a_token_and_returns_the_newest_ten_observations() {
    let app = TestApp::spawn().await;
    let anonymous = app.http.get(app.url("/health/load")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let token = app.alice().await;
    let empty: Vec<Value> = app.get(&token, "/health/load").await.json().await.unwrap();
    assert!(empty.is_empty());

    let db = common::mongo::connect(&app.settings.mongo).await.unwrap();
    let observations = db.collection::<Observation>(common::mongo::OBSERVATIONS);
    for i in 0..12i64 {
        let o = Observation {
            avg_rate_of_arrival: i as f64,
            avg_rate_of_service: 0.0,
            avg_rate_of_finished: 0.0,
            avg_response_time: 0.0,
            timestamp: 1_700_000_000_000 + i * 2000,
            window_ms: 2000,
            backlog: 0,
            workers: 1,
            partitions: 2,
            ..Observation::default()
        };
        observations.insert_one(o).await.unwrap();
    }
    let got: Vec<Value> = app.get(&token, "/health/load").await.json().await.unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(got[0]["avgRateOfArrival"], 11.0);
    assert_eq!(got[9]["avgRateOfArrival"], 2.0);
    assert!(got[0]["timestamp"].as_i64() > got[1]["timestamp"].as_i64());
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/health", "get"),
        ("/health/ready", "get"),
        ("/health/load", "get"),
        ("/metrics", "get"),
        ("/auth/{user}/{password}", "get"),
        ("/auth/token", "post"),
        ("/api/addJob", "post"),
        ("/api/status", "get"),
        ("/api/status/{id}", "get"),
        ("/api/results/{id}/{file}", "get"),
        ("/api/deleteJob/{id}", "get"),
        ("/api/jobs", "post"),
        ("/api/jobs", "get"),
        ("/api/jobs/{id}", "get"),
        ("/api/jobs/{id}", "delete"),
        ("/api/jobs/{id}/files/{path}", "get"),
        ("/api/jobs/{id}/logs", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = TestApp::spawn().await;
    app.http.get(app.url("/health")).send().await.unwrap();
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"lanzadera_http_requests_total{method="GET",route="/health",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("lanzadera_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn a_known_path_with_another_method_answers_405_with_allow() {
    let app = TestApp::spawn().await;
    let token = app.alice().await;
    let cases: [(reqwest::Method, &str, &str); 3] = [
        (reqwest::Method::PUT, "/api/jobs", "GET, POST"),
        (
            reqwest::Method::PATCH,
            "/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f",
            "DELETE, GET",
        ),
        (reqwest::Method::POST, "/health", "GET"),
    ];
    for (method, path, allow) in cases {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }
    // A page whose offset would overflow is the client's mistake.
    let response = app.get(&token, "/api/jobs?page=9223372036854775808").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`page` must be between"),
        "{body}"
    );
}
