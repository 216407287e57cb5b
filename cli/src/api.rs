//! The platform's REST API, with errors turned into what to do next.

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::login::{self, Session};

pub struct Platform {
    pub base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Platform {
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        url::Url::parse(&base)
            .with_context(|| format!("`{base}` is not a URL (--api, LANZADERA_API)"))?;
        Ok(Self {
            base,
            http: reqwest::Client::new(),
            token: None,
        })
    }

    /// Uses the saved login for this platform, refreshed when it is about
    /// to expire.
    pub async fn signed_in(mut self) -> Result<Self> {
        let session = login::saved(&self.base)?.ok_or_else(|| anyhow!(crate::NOT_SIGNED_IN))?;
        let fresh: Session = login::fresh(session.clone()).await?;
        if fresh.access_token != session.access_token {
            login::save(&self.base, &fresh)?;
        }
        self.token = Some(fresh.access_token);
        Ok(self)
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Response> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow!(
                    "cannot reach the platform at {}: is it running (`make run`)? Point --api or LANZADERA_API at it.",
                    self.base
                )
            } else {
                anyhow!("the request to {} failed: {e}", self.base)
            }
        })?;
        if response.status().is_success() || response.status() == StatusCode::ACCEPTED {
            return Ok(response);
        }
        Err(refusal(response).await)
    }

    pub async fn public_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send(Method::GET, path, None).await?;
        response.json().await.with_context(|| {
            format!(
                "{}{path} did not answer JSON: is --api the platform's URL?",
                self.base
            )
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.public_json(path).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        Ok(self
            .send(Method::POST, path, Some(body))
            .await?
            .json()
            .await?)
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        Ok(self.send(Method::DELETE, path, None).await?.json().await?)
    }

    pub async fn download(&self, path: &str) -> Result<Response> {
        self.send(Method::GET, path, None).await
    }
}

/// The API's own message, with what to do for the answers people meet.
async fn refusal(response: Response) -> anyhow::Error {
    let status = response.status();
    let retry = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["message"].as_str().unwrap_or("no details").to_string();
    match status {
        StatusCode::UNAUTHORIZED => anyhow!("{} ({message})", crate::NOT_SIGNED_IN),
        StatusCode::NOT_FOUND => {
            anyhow!("not found: {message} (is the job id one of yours? `lanzadera list`)")
        }
        StatusCode::TOO_MANY_REQUESTS => match retry {
            Some(secs) => anyhow!("over a quota: {message}; try again in {secs} s"),
            None => anyhow!("over a quota: {message}"),
        },
        StatusCode::SERVICE_UNAVAILABLE => {
            anyhow!("the platform is not ready: {message}; try again shortly")
        }
        s if s.is_client_error() => anyhow!("refused ({}): {message}", s.as_u16()),
        s => anyhow!("the platform failed ({}): {message}", s.as_u16()),
    }
}

/// The job id as typed, checked before it goes into a URL.
pub fn job_path(id: &str) -> Result<String> {
    if id.len() != 36 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        bail!("`{id}` is not a job id (they look like 6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f)");
    }
    Ok(format!("/api/jobs/{id}"))
}

#[cfg(test)]
mod tests {
    use super::job_path;

    #[test]
    fn only_a_job_id_goes_into_a_path() {
        let id = "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f";
        assert_eq!(job_path(id).unwrap(), format!("/api/jobs/{id}"));
        for bad in [
            "",
            "6f1c",
            "../../health",
            "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/x",
            "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5g",
        ] {
            assert!(
                job_path(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("is not a job id"),
                "{bad}"
            );
        }
    }
}
