//! Signing in without the API's secret: the public client of the `lanzadera`
//! command, through the provider itself (device code and password grants),
//! with refresh tokens; and `GET /auth/config`, which tells a client where.

use serde_json::{json, Value};

use crate::auth::decode_part;
use crate::helpers::TestApp;

/// The provider's endpoints, found the way a client finds them.
struct Provider {
    token: String,
    device: String,
    client_id: String,
}

async fn provider(app: &TestApp) -> Provider {
    let config: Value = app
        .http
        .get(app.url("/auth/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["issuer"], app.settings.oidc.issuer.as_str());
    let client_id = config["clientId"].as_str().expect("clientId").to_string();
    assert_eq!(client_id, "lanzadera-cli");
    let discovery: Value = app
        .http
        .get(format!(
            "{}/.well-known/openid-configuration",
            config["issuer"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grants = discovery["grant_types_supported"].to_string();
    assert!(
        grants.contains("device_code") && grants.contains("refresh_token"),
        "{grants}"
    );
    Provider {
        token: discovery["token_endpoint"].as_str().unwrap().to_string(),
        device: discovery["device_authorization_endpoint"]
            .as_str()
            .expect("device endpoint")
            .to_string(),
        client_id,
    }
}

async fn grant(app: &TestApp, provider: &Provider, form: &[(&str, &str)]) -> (u16, Value) {
    let mut fields = vec![("client_id", provider.client_id.as_str())];
    fields.extend_from_slice(form);
    let response = app
        .http
        .post(&provider.token)
        .form(&fields)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// What the user sees with a token: their own username on a job they submit.
async fn submitted_as(app: &TestApp, token: &str) -> String {
    let response = app.submit(token, &json!({"url": "/no/such/repo"})).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let id = common::JobId::parse(body["jobId"].as_str().unwrap()).unwrap();
    app.job(token, id).await["username"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_command_line_client_signs_in_with_a_password_and_refreshes_without_a_secret() {
    let app = TestApp::spawn().await;
    let provider = provider(&app).await;

    let (status, wrong) = grant(
        &app,
        &provider,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "nope"),
        ],
    )
    .await;
    assert_eq!(status, 401, "{wrong}");

    let (status, first) = grant(
        &app,
        &provider,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-pass"),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(decode_part(access, 1)["azp"], "lanzadera-cli");
    assert_eq!(submitted_as(&app, access).await, "alice");

    let refresh = first["refresh_token"].as_str().expect("a refresh token");
    let (status, second) = grant(
        &app,
        &provider,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let renewed = second["access_token"].as_str().unwrap();
    assert_ne!(renewed, access);
    assert_eq!(decode_part(renewed, 1)["preferred_username"], "alice");
    assert_eq!(submitted_as(&app, renewed).await, "alice");

    // Each refresh hands out a new refresh token; the used one is spent.
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (status, replay) = grant(
        &app,
        &provider,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, 400, "{replay}");
    assert_eq!(replay["error"], "invalid_grant");
}

#[tokio::test]
async fn the_device_code_grant_signs_the_user_in_through_the_providers_page() {
    let app = TestApp::spawn().await;
    let provider = provider(&app).await;

    let started: Value = app
        .http
        .post(&provider.device)
        .form(&[
            ("client_id", provider.client_id.as_str()),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = started["device_code"].as_str().expect("device_code");
    assert!(started["user_code"].is_string(), "{started}");
    let link = started["verification_uri_complete"].as_str().expect("link");
    assert!(link.contains(&app.settings.oidc.issuer), "{link}");
    assert!(started["verification_uri"].is_string(), "{started}");

    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
    ];
    let (status, pending) = grant(&app, &provider, &poll).await;
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending")),
        "{pending}"
    );

    let done = testkit::tokens::approve_device(link, testkit::tokens::BOB).await;
    assert!(done.contains("Your device is signed in"), "{done}");

    let (status, tokens) = grant(&app, &provider, &poll).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(decode_part(access, 0)["typ"], "JWT");
    assert_eq!(decode_part(access, 1)["aud"], "account");
    assert_eq!(submitted_as(&app, access).await, "bob");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");

    // The code is spent once it gave its tokens.
    let (status, again) = grant(&app, &provider, &poll).await;
    assert_eq!(status, 400, "{again}");
}
