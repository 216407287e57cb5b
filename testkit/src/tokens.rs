//! Real tokens from the identity provider, through the API's login route.

use serde_json::Value;

/// The users of the local realm (`keycloak/lanzadera-realm.json`).
pub const ALICE: (&str, &str) = ("alice", "alice-pass");
pub const BOB: (&str, &str) = ("bob", "bob-pass");

/// Logs in through `POST {api}/auth/token` and returns the access token.
pub async fn login(http: &reqwest::Client, api: &str, (user, password): (&str, &str)) -> String {
    let response = http
        .post(format!("{api}/auth/token"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .expect("login request");
    assert_eq!(response.status(), 200, "login of {user}");
    let body: Value = response.json().await.expect("login body");
    body["token"].as_str().expect("token").to_string()
}
