use std::process::Command;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::TestApp;

pub(crate) fn decode_part(token: &str, index: usize) -> Value {
    use base64_url_decode as b64;
    let part = token.split('.').nth(index).expect("jwt part");
    serde_json::from_slice(&b64(part)).expect("json")
}

/// Minimal base64url decoding for reading a token's parts in tests.
fn base64_url_decode(input: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in input.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// An RSA key that is not the provider's, made with the openssl CLI.
fn foreign_key() -> EncodingKey {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    EncodingKey::from_rsa_pem(&out.stdout).expect("pem")
}

async fn status_with(app: &TestApp, authorization: Option<&str>) -> u16 {
    let mut request = app.http.get(app.url("/api/status"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn password_login_through_every_login_route() {
    let app = TestApp::spawn().await;
    let compat: Value = app
        .http
        .get(app.url("/auth/alice/alice-pass"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = compat["token"].as_str().expect("token");
    assert_eq!(compat["access_token"], compat["token"]);
    assert!(compat["expires_in"].as_u64().unwrap() > 0);
    let claims = decode_part(token, 1);
    assert_eq!(claims["preferred_username"], "alice");

    let form = app
        .http
        .post(app.url("/auth/token"))
        .form(&[("username", "bob"), ("password", "bob-pass")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let body: Value = form.json().await.unwrap();
    assert_eq!(
        decode_part(body["token"].as_str().unwrap(), 1)["preferred_username"],
        "bob"
    );

    assert_eq!(
        status_with(&app, Some(&format!("Bearer {token}"))).await,
        200
    );
}

#[tokio::test]
async fn wrong_password_is_401_with_a_clear_message() {
    let app = TestApp::spawn().await;
    for response in [
        app.http
            .get(app.url("/auth/alice/wrong"))
            .send()
            .await
            .unwrap(),
        app.http
            .post(app.url("/auth/token"))
            .json(&json!({"username": "alice", "password": "wrong"}))
            .send()
            .await
            .unwrap(),
        app.http
            .post(app.url("/auth/token"))
            .json(&json!({"username": "nobody", "password": "x"}))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
        assert_eq!(body["message"], "invalid username or password");
    }
    let bad_body = app
        .http
        .post(app.url("/auth/token"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_body.status(), 400);
}

#[tokio::test]
async fn provider_unreachable_is_503() {
    let app =
        TestApp::spawn_with(&[("LZ_OIDC_ISSUER", "http://127.0.0.1:9/realms/lanzadera")]).await;
    let response = app
        .http
        .get(app.url("/auth/alice/alice-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        !body["message"].as_str().unwrap().contains("127.0.0.1"),
        "no internal hosts: {body}"
    );
}

#[tokio::test]
async fn missing_and_malformed_tokens_are_refused() {
    let app = TestApp::spawn().await;
    assert_eq!(status_with(&app, None).await, 401);
    assert_eq!(status_with(&app, Some("Bearer")).await, 401);
    assert_eq!(status_with(&app, Some("Bearer not.a.jwt")).await, 401);
    assert_eq!(
        status_with(&app, Some("Basic YWxpY2U6YWxpY2UtcGFzcw==")).await,
        401
    );
    let token = app.alice().await;
    // A flipped signature byte.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        status_with(&app, Some(&format!("Bearer {tampered}"))).await,
        401
    );
    // Claims swapped for bob's sub under alice's signature.
    let parts: Vec<&str> = token.split('.').collect();
    let bob = app.bob().await;
    let bob_claims = bob.split('.').nth(1).unwrap();
    let spliced = format!("{}.{}.{}", parts[0], bob_claims, parts[2]);
    assert_eq!(
        status_with(&app, Some(&format!("Bearer {spliced}"))).await,
        401
    );
}

#[tokio::test]
async fn tokens_forged_with_another_key_or_with_wrong_claims_are_refused() {
    let app = TestApp::spawn().await;
    let real = app.alice().await;
    let real_header = decode_part(&real, 0);
    let mut claims = decode_part(&real, 1);
    let kid = real_header["kid"].as_str().expect("kid").to_string();
    let key = foreign_key();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid);
    header.typ = Some("JWT".into());

    // Same kid and claims as a real token, signed with another key.
    let forged = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let response = app
        .http
        .get(app.url("/api/status"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "invalid bearer token: bad signature");

    // An unknown key id.
    let mut other = header.clone();
    other.kid = Some("someone-elses-key".into());
    let forged = jsonwebtoken::encode(&other, &claims, &key).unwrap();
    assert_eq!(
        status_with(&app, Some(&format!("Bearer {forged}"))).await,
        401
    );

    // An HMAC token keyed with something public must never pass.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = header.kid.clone();
    claims["iss"] = json!("http://evil.example/realms/lanzadera");
    let forged = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(b"public")).unwrap();
    assert_eq!(
        status_with(&app, Some(&format!("Bearer {forged}"))).await,
        401
    );
}

/// A private instance of the OIDC stand-in, so the test can hold its
/// signing key and sign tokens with exactly the claims it wants to check.
struct Provider {
    child: std::process::Child,
    issuer: String,
    key: EncodingKey,
    kid: String,
}

impl Provider {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = std::env::temp_dir().join(crate::helpers::unique("lz-oidc"));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../dev/oidc/server.mjs");
        let child = Command::new("node")
            .arg(script)
            .env("LZ_OIDC_PORT", port.to_string())
            .env("LZ_OIDC_DATA_DIR", &data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node runs the OIDC stand-in");
        let issuer = format!("http://127.0.0.1:{port}/realms/lanzadera");
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while reqwest::get(&discovery)
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "OIDC stand-in did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let jwk: Value =
            serde_json::from_slice(&std::fs::read(data.join("signing-key.jwk.json")).unwrap())
                .unwrap();
        let pem = Command::new("node")
            .args([
                "-e",
                "const c=require('crypto');process.stdout.write(c.createPrivateKey({key:JSON.parse(process.argv[1]),format:'jwk'}).export({type:'pkcs8',format:'pem'}))",
                &jwk.to_string(),
            ])
            .output()
            .unwrap();
        Self {
            child,
            issuer,
            key: EncodingKey::from_rsa_pem(&pem.stdout).unwrap(),
            kid: jwk["kid"].as_str().unwrap().to_string(),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    fn claims(&self) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({
            "iss": self.issuer, "sub": "0b8f3c3e-0000-4000-8000-00000000a11c", "aud": "account",
            "azp": "lanzadera-api", "typ": "Bearer", "exp": now + 300, "iat": now,
            "preferred_username": "alice"
        })
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn claims_are_checked_issuer_expiry_not_before_party_and_type() {
    let provider = Provider::start().await;
    let app = TestApp::spawn_with(&[("LZ_OIDC_ISSUER", &provider.issuer)]).await;
    let call = |token: String| {
        let app = &app;
        async move {
            let r = app
                .http
                .get(app.url("/api/status"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (
                status,
                body["message"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    // The well-formed token passes: the checks below fail for their reason.
    assert_eq!(call(provider.sign(&provider.claims())).await.0, 200);
    let now = provider.claims()["iat"].as_u64().unwrap();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "iss",
            json!("http://127.0.0.1:1/realms/other"),
            "wrong issuer",
        ),
        ("exp", json!(now - 120), "expired"),
        ("nbf", json!(now + 600), "not valid yet"),
        ("azp", json!("another-client"), "issued to another client"),
        ("typ", json!("ID"), "not an access token"),
    ];
    for (claim, value, reason) in cases {
        let mut claims = provider.claims();
        claims[claim] = value;
        let (status, message) = call(provider.sign(&claims)).await;
        assert_eq!(status, 401, "{claim}");
        assert_eq!(
            message,
            format!("invalid bearer token: {reason}"),
            "{claim}"
        );
    }
    let mut claims = provider.claims();
    claims.as_object_mut().unwrap().remove("sub");
    assert_eq!(call(provider.sign(&claims)).await.0, 401);
    // Within the 30 s leeway an expiry is tolerated (clock skew).
    let mut claims = provider.claims();
    claims["exp"] = json!(now - 5);
    assert_eq!(call(provider.sign(&claims)).await.0, 200);
}

#[tokio::test]
async fn a_configured_audience_is_accepted_instead_of_azp() {
    let provider = Provider::start().await;
    let app = TestApp::spawn_with(&[
        ("LZ_OIDC_ISSUER", &provider.issuer),
        ("LZ_OIDC_AUDIENCE", "lanzadera"),
    ])
    .await;
    let mut claims = provider.claims();
    claims["azp"] = json!("some-spa");
    claims["aud"] = json!(["account", "lanzadera"]);
    let r = app
        .http
        .get(app.url("/api/status"))
        .bearer_auth(provider.sign(&claims))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    claims["aud"] = json!("account");
    let r = app
        .http
        .get(app.url("/api/status"))
        .bearer_auth(provider.sign(&claims))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
