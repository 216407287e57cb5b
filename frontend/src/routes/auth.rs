use actix_web::{http::header, post, web, HttpRequest, HttpResponse};
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
