//! OIDC against Keycloak (or anything shaped like it): local verification of
//! bearer access tokens against the provider's JWKS, and the password grant
//! for the login routes.
//!
//! Access tokens are JWTs but not ID tokens (Keycloak's carry
//! `aud: "account"` and `typ: "Bearer"`), so they are checked here with
//! `jsonwebtoken` rather than with an ID-token verifier: signature by a key
//! from the JWKS named by the discovery document, issuer, expiry and
//! not-before with a small leeway, and the authorised party (`azp`) or a
//! configured audience.

use std::collections::HashMap;
use std::future::{ready, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use common::settings::OidcSettings;
use jsonwebtoken::{jwk::Jwk, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{OnceCell, RwLock};

use crate::error::{unavailable, ApiError};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// A verified token is remembered this long at most (and never past its
/// expiry), so polling clients do not pay a signature check per request.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Bound on remembered tokens; the least used go first when it fills.
const VERIFIED_MAX: u64 = 50_000;
/// An unknown key id triggers a JWKS refresh at most this often, so forged
/// tokens with random `kid`s cannot make us hammer the provider.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, (Algorithm, Arc<DecodingKey>)>,
    refreshed: Option<Instant>,
}

pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    discovery: OnceCell<Discovery>,
    keys: RwLock<KeyCache>,
    /// Verified tokens and until when each may be trusted without a check.
    verified: moka::sync::Cache<String, (Caller, Instant)>,
}

/// Who is calling: the token's subject is the tenant.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub username: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    typ: Option<String>,
    exp: u64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::One(a) => a == wanted,
            Self::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("the identity provider is unavailable")]
    Unavailable(String),
}

#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

fn invalid(why: &str) -> ApiError {
    ApiError::Unauthorized(format!("invalid bearer token: {why}"))
}

impl Oidc {
    /// What a client needs to sign users in by itself: the issuer and the
    /// command line's public client.
    pub fn sign_in_config(&self) -> (&str, &str) {
        (&self.settings.issuer, &self.settings.cli_client_id)
    }

    pub fn new(settings: OidcSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            settings,
            http,
            discovery: OnceCell::new(),
            keys: RwLock::new(KeyCache::default()),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_MAX)
                .time_to_live(VERIFIED_TTL)
                .build(),
        })
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, ApiError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unavailable("the identity provider", e))?;
        response
            .json()
            .await
            .map_err(|e| unavailable("the identity provider", e))
    }

    /// The discovery document, fetched once; a provider that is down at
    /// start-up is retried on the next request.
    async fn discovery(&self) -> Result<&Discovery, ApiError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
                let doc: Discovery = self.fetch_json(&url).await?;
                if doc.issuer.trim_end_matches('/') != self.settings.issuer {
                    tracing::error!(advertised = %doc.issuer, "the provider's issuer differs from LZ_OIDC_ISSUER");
                    return Err(ApiError::Unavailable("the identity provider is misconfigured".into()));
                }
                Ok(doc)
            })
            .await
    }

    async fn refresh_keys(&self) -> Result<(), ApiError> {
        let jwks_uri = self.discovery().await?.jwks_uri.clone();
        let mut cache = self.keys.write().await;
        if cache
            .refreshed
            .is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL)
        {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let set: RawSet = self.fetch_json(&jwks_uri).await?;
        // Keys are read one by one: a provider may publish encryption keys
        // or algorithms we do not use, which must not hide the others.
        cache.keys = set
            .keys
            .into_iter()
            .filter_map(|raw| serde_json::from_value::<Jwk>(raw).ok())
            .filter(|jwk| {
                !matches!(
                    jwk.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                )
            })
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let alg = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => return None,
                };
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                Some((kid, (alg, Arc::new(key))))
            })
            .collect();
        cache.refreshed = Some(Instant::now());
        tracing::info!(
            keys = cache.keys.len(),
            "refreshed the provider's signing keys"
        );
        Ok(())
    }

    async fn key_for(&self, kid: &str) -> Result<Option<(Algorithm, Arc<DecodingKey>)>, ApiError> {
        if let Some(found) = self.keys.read().await.keys.get(kid) {
            return Ok(Some(found.clone()));
        }
        self.refresh_keys().await?;
        Ok(self.keys.read().await.keys.get(kid).cloned())
    }

    /// Verifies a bearer access token and returns the caller it names.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let now = Instant::now();
        if let Some((caller, until)) = self.verified.get(token) {
            // A token that expires within the memo's lifetime is trusted
            // only until its own expiry.
            if until > now {
                return Ok(caller);
            }
        }
        let (caller, exp) = self.verify_fully(token).await?;
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let remaining = Duration::from_secs((exp + LEEWAY_SECS).saturating_sub(unix_now));
        self.verified.insert(
            token.to_string(),
            (caller.clone(), now + remaining.min(VERIFIED_TTL)),
        );
        Ok(caller)
    }

    /// Signature and claims, checked from scratch.
    async fn verify_fully(&self, token: &str) -> Result<(Caller, u64), ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let (family, key) = self
            .key_for(&kid)
            .await?
            .ok_or_else(|| invalid("signed by an unknown key"))?;
        // The algorithm comes from the token but must belong to the key's
        // family: never `none`, never an HMAC keyed with a public key.
        let allowed: &[Algorithm] = match family {
            Algorithm::ES256 => &[Algorithm::ES256, Algorithm::ES384],
            _ => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
        };
        if !allowed.contains(&header.alg) {
            return Err(invalid("unexpected signature algorithm"));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => invalid("expired"),
                ErrorKind::ImmatureSignature => invalid("not valid yet"),
                ErrorKind::InvalidIssuer => invalid("wrong issuer"),
                ErrorKind::InvalidSignature => invalid("bad signature"),
                _ => invalid("rejected"),
            }
        })?;
        let claims = data.claims;
        if claims
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(invalid("not an access token"));
        }
        let azp = claims.azp.as_deref();
        let for_us = azp == Some(self.settings.client_id.as_str())
            || azp == Some(self.settings.cli_client_id.as_str())
            || self
                .settings
                .audience
                .as_deref()
                .is_some_and(|wanted| claims.aud.as_ref().is_some_and(|a| a.contains(wanted)));
        if !for_us {
            return Err(invalid("issued to another client"));
        }
        let username = claims
            .preferred_username
            .unwrap_or_else(|| claims.sub.clone());
        let caller = Caller {
            subject: claims.sub,
            username,
        };
        Ok((caller, claims.exp))
    }

    /// Exchanges a username and password for an access token (Keycloak's
    /// direct access grant) with this API's confidential client.
    pub async fn password_grant(
        &self,
        username: &str,
        password: &str,
    ) -> Result<TokenResponse, LoginError> {
        let endpoint = self
            .discovery()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?
            .token_endpoint
            .clone();
        let response = self
            .http
            .post(endpoint)
            .basic_auth(
                &self.settings.client_id,
                Some(self.settings.client_secret.expose()),
            )
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
                ("scope", "openid"),
            ])
            .send()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        match response.status().as_u16() {
            200 => response
                .json()
                .await
                .map_err(|e| LoginError::Unavailable(e.to_string())),
            400 | 401 => Err(LoginError::InvalidCredentials),
            other => Err(LoginError::Unavailable(format!(
                "token endpoint answered {other}"
            ))),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(oidc) = req.app_data::<web::Data<Oidc>>().cloned() else {
            return Box::pin(ready(Err(ApiError::Internal)));
        };
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_string());
        Box::pin(async move {
            let token = token.ok_or_else(|| {
                ApiError::Unauthorized(
                    "an `Authorization: Bearer <token>` header is required".into(),
                )
            })?;
            oidc.verify(&token).await
        })
    }
}
