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

/// Plays the user's part of the device authorization grant (RFC 8628) in the
/// local provider's pages, as a browser would: open the verification link,
/// confirm the code, sign in. Returns the last page's text.
pub async fn approve_device(
    verification_uri_complete: &str,
    (user, password): (&str, &str),
) -> String {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("browser client");
    // The link carries the code; the provider answers with a form that posts it.
    let page = text(browser.get(verification_uri_complete).send().await).await;
    let (mut action, mut fields) = form(&page);
    let page = text(browser.post(&action).form(&fields).send().await).await;
    // The confirmation page: the same form with `confirm=yes`.
    (action, fields) = form(&page);
    let login = browser
        .post(&action)
        .form(&fields)
        .send()
        .await
        .expect("confirm");
    let login_url = login.url().to_string();
    let page = login.text().await.expect("login page");
    assert!(
        page.contains("name=\"password\""),
        "expected the sign-in page, got: {page}"
    );
    text(
        browser
            .post(&login_url)
            .form(&[("username", user), ("password", password)])
            .send()
            .await,
    )
    .await
}

async fn text(response: reqwest::Result<reqwest::Response>) -> String {
    let response = response.expect("provider page");
    assert!(
        response.status().is_success(),
        "{} {}",
        response.status(),
        response.url()
    );
    response.text().await.expect("page text")
}

/// The first form of a page: its action and its named inputs.
fn form(page: &str) -> (String, Vec<(String, String)>) {
    let start = page
        .find("<form")
        .unwrap_or_else(|| panic!("no form in: {page}"));
    let end = page[start..]
        .find("</form>")
        .map_or(page.len(), |e| start + e);
    let form = &page[start..end];
    let attr = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        tag.find(&key).map(|i| {
            let rest = &tag[i + key.len()..];
            rest[..rest.find('"').unwrap_or(rest.len())].to_string()
        })
    };
    let action =
        attr(&form[..form.find('>').unwrap_or(form.len())], "action").expect("form action");
    let inputs = form
        .split("<input")
        .skip(1)
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value")?)))
        .collect();
    (action, inputs)
}
