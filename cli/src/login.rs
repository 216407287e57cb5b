//! Signing in and staying signed in: the provider is found through the
//! platform (`GET /auth/config`), the grants are the `openidconnect` crate's,
//! and the tokens live in a file only the user may read (`docs/cli.md`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, ClientId, DeviceAuthorizationUrl, IssuerUrl, OAuth2TokenResponse,
    ProviderMetadata, RefreshToken, ResourceOwnerPassword, ResourceOwnerUsername, Scope,
};
use serde::{Deserialize, Serialize};

/// The device endpoint is not part of the core discovery fields.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct DeviceEndpoint {
    device_authorization_endpoint: DeviceAuthorizationUrl,
}
impl AdditionalProviderMetadata for DeviceEndpoint {}

type Metadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What is kept per platform. Tokens are never printed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub issuer: String,
    pub client_id: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignInConfig {
    issuer: String,
    client_id: String,
}

/// How the user proves who they are.
pub enum Method {
    /// RFC 8628: a link and a code, the user signs in in a browser.
    Device,
    /// Scripts: the password read from standard input.
    Password { user: String, password: String },
}

fn http() -> Result<openidconnect::reqwest::Client> {
    // The crate's advice: never follow redirects on token calls.
    Ok(openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()?)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn metadata(issuer: &str, http: &openidconnect::reqwest::Client) -> Result<Metadata> {
    let url = IssuerUrl::new(issuer.to_string()).context("the platform named a bad issuer URL")?;
    Metadata::discover_async(url, http)
        .await
        .map_err(|e| anyhow!("could not read the identity provider at {issuer}: {e}"))
}

fn session_from(
    issuer: &str,
    client_id: &str,
    token: &openidconnect::core::CoreTokenResponse,
    previous_refresh: Option<String>,
) -> Session {
    Session {
        issuer: issuer.to_string(),
        client_id: client_id.to_string(),
        access_token: token.access_token().secret().clone(),
        refresh_token: token
            .refresh_token()
            .map(|r| r.secret().clone())
            .or(previous_refresh),
        expires_at: now() + token.expires_in().map_or(60, |d| d.as_secs()),
    }
}

/// Signs in at the provider the platform names.
pub async fn login(platform: &crate::api::Platform, method: Method) -> Result<Session> {
    let config: SignInConfig = platform.public_json("/auth/config").await?;
    let http = http()?;
    let meta = metadata(&config.issuer, &http).await?;
    let device_url = meta
        .additional_metadata()
        .device_authorization_endpoint
        .clone();
    let client =
        CoreClient::from_provider_metadata(meta, ClientId::new(config.client_id.clone()), None)
            .set_device_authorization_url(device_url);
    let token = match method {
        Method::Password { user, password } => client
            .exchange_password(
                &ResourceOwnerUsername::new(user),
                &ResourceOwnerPassword::new(password),
            )?
            .add_scope(Scope::new("openid".into()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(_) => {
                    anyhow!("wrong username or password")
                }
                other => anyhow!("the identity provider refused the sign-in: {other}"),
            })?,
        Method::Device => {
            let details: CoreDeviceAuthorizationResponse = client
                .exchange_device_code()
                .add_scope(Scope::new("openid".into()))
                .request_async(&http)
                .await
                .map_err(|e| anyhow!("the identity provider refused to start a sign-in: {e}"))?;
            let link = details
                .verification_uri_complete()
                .map(|u| u.secret().clone())
                .unwrap_or_else(|| details.verification_uri().to_string());
            let mut err = std::io::stderr();
            writeln!(
                err,
                "Open {link}\nand check that it shows the code {}. Waiting for you to sign in…",
                details.user_code().secret()
            )?;
            client
                .exchange_device_access_token(&details)?
                .request_async(&http, tokio::time::sleep, None)
                .await
                .map_err(|e| anyhow!("the sign-in did not complete: {e}"))?
        }
    };
    Ok(session_from(
        &config.issuer,
        &config.client_id,
        &token,
        None,
    ))
}

/// A token that is still good for a while, refreshed when it is not.
pub async fn fresh(mut session: Session) -> Result<Session> {
    if session.expires_at > now() + 30 {
        return Ok(session);
    }
    let Some(refresh) = session.refresh_token.take() else {
        bail!(crate::NOT_SIGNED_IN);
    };
    let http = http()?;
    let meta = metadata(&session.issuer, &http).await?;
    let client =
        CoreClient::from_provider_metadata(meta, ClientId::new(session.client_id.clone()), None);
    let token = client
        .exchange_refresh_token(&RefreshToken::new(refresh))?
        .request_async(&http)
        .await
        .map_err(|_| anyhow!(crate::NOT_SIGNED_IN))?;
    Ok(session_from(
        &session.issuer,
        &session.client_id,
        &token,
        None,
    ))
}

/// `$XDG_CONFIG_HOME/lanzadera/credentials.json`, else under `~/.config`.
fn store_path() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("lanzadera").join("credentials.json"))
}

fn read_store() -> Result<BTreeMap<String, Session>> {
    match std::fs::read(store_path()?) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .context("the credentials file is damaged: run `lanzadera login`"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).context("could not read the credentials file"),
    }
}

/// Written to a temporary file created 0600, then renamed, so the file is
/// never readable by others nor half-written.
fn write_store(store: &BTreeMap<String, Session>) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = store_path()?;
    let dir = path.parent().context("credentials folder")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".credentials.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(store)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

pub fn saved(api: &str) -> Result<Option<Session>> {
    Ok(read_store()?.remove(api))
}

pub fn save(api: &str, session: &Session) -> Result<()> {
    let mut store = read_store()?;
    store.insert(api.to_string(), session.clone());
    write_store(&store)
}

pub fn forget(api: &str) -> Result<bool> {
    let mut store = read_store()?;
    let had = store.remove(api).is_some();
    write_store(&store)?;
    Ok(had)
}
