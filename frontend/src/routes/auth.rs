use actix_web::{get, http::header, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::read_limited;
use crate::auth::{LoginError, Oidc};
use crate::error::{unavailable, ApiError};

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// The password grant, answered in the shape both login routes share.
pub async fn login(oidc: &Oidc, username: &str, password: &str) -> Result<HttpResponse, ApiError> {
    if username.is_empty() || password.is_empty() {
        return Err(ApiError::BadRequest(
            "`username` and `password` are required".into(),
        ));
    }
    match oidc.password_grant(username, password).await {
        Ok(token) => Ok(HttpResponse::Ok().json(json!({
            "token": token.access_token,
            "access_token": token.access_token,
            "token_type": "Bearer",
            "expires_in": token.expires_in,
            "refresh_token": token.refresh_token,
        }))),
        Err(LoginError::InvalidCredentials) => Err(ApiError::Unauthorized(
            "invalid username or password".into(),
        )),
        Err(LoginError::Unavailable(cause)) => Err(unavailable("the identity provider", cause)),
    }
}

/// Login with a form or JSON body `{username, password}`.
#[utoipa::path(
    post,
    path = "/auth/token",
    operation_id = "login",
    tags = ["auth"],
    summary = "Log in with a username and password",
    description = "Exchanges the credentials for an access token at the OIDC provider (the password grant of the API's confidential client). A body with `Content-Type: application/x-www-form-urlencoded` is read as a form; any other body is read as JSON.",
    request_body(description = "", content((crate::openapi::schemas::Credentials = "application/x-www-form-urlencoded"), (crate::openapi::schemas::Credentials = "application/json"))),
    responses((status = 200, response = crate::openapi::responses::Token), (status = 400, description = "The body is neither a form nor JSON with non-empty `username` and `password`.", body = crate::openapi::schemas::Error, content_type = "application/json", example = json!({"error": "bad_request", "message": "the form needs `username` and `password` fields"})), (status = 401, response = crate::openapi::responses::LoginRefused), (status = 413, description = "The body is larger than 16 KiB.", body = crate::openapi::schemas::Error, content_type = "application/json", example = json!({"error": "payload_too_large", "message": "the request body is larger than 16384 bytes"})), (status = 503, response = crate::openapi::responses::Unavailable)),
    security(()),
)]
#[post("/auth/token")]
pub async fn login_with_body(
    oidc: web::Data<Oidc>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(payload, 16 * 1024).await?;
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let credentials: Credentials = if is_form {
        serde_urlencoded::from_bytes(&body).map_err(|_| {
            ApiError::BadRequest("the form needs `username` and `password` fields".into())
        })?
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::BadRequest(
                "the body must be JSON {\"username\": ..., \"password\": ...} or a form".into(),
            )
        })?
    };
    login(&oidc, &credentials.username, &credentials.password).await
}

/// Where to sign in without going through the API: the `lanzadera` command
/// reads this once, then talks to the provider itself (device code grant).
#[utoipa::path(
    get,
    path = "/auth/config",
    operation_id = "signInConfig",
    tags = ["auth"],
    summary = "Where clients sign in",
    description = "The OpenID Connect issuer (its discovery document is at `{issuer}/.well-known/openid-configuration`) and the public client id that the `lanzadera` command uses for the device authorization grant (RFC 8628) or, in scripts, the password grant. Tokens obtained that way are accepted by every `/api` route.",
    responses((status = 200, description = "The issuer and the public client.", body = crate::openapi::schemas::SignInConfig, content_type = "application/json", example = json!({"issuer": "http://127.0.0.1:8180/realms/lanzadera", "clientId": "lanzadera-cli"}))),
    security(()),
)]
#[get("/auth/config")]
pub async fn sign_in_config(oidc: web::Data<Oidc>) -> HttpResponse {
    let (issuer, client_id) = oidc.sign_in_config();
    HttpResponse::Ok().json(json!({ "issuer": issuer, "clientId": client_id }))
}
