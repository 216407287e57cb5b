//! Where decisions go (`docs/contract.md` §6): a log line, a webhook, the Kubernetes scale
//! subresource of the worker Deployment, or a command such as the Kumori
//! CLI. Each is a thin adapter; none of them decides anything.

use std::time::Duration;

use common::{Observation, ScaleDecision};
use serde::Serialize;
use serde_json::json;

use crate::settings::{ActuatorSettings, KubeToken, KubernetesSettings};

#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {timeout:?} and was killed")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} exited with {status}: {stderr}")]
    Exit {
        program: String,
        status: String,
        stderr: String,
    },
}

/// The webhook's JSON body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookBody<'a> {
    /// Which observer sent it (`LZ_OBSERVER_ID`): the one leading.
    pub observer: &'a str,
    pub desired_replicas: u32,
    pub current_replicas: u32,
    pub reason: &'a str,
    pub observation: &'a Observation,
}

#[derive(Debug)]
pub enum Actuator {
    Log,
    Webhook(Webhook),
    Kubernetes(Kubernetes),
    Command(CommandActuator),
}

impl Actuator {
    /// `observer` is this observer's id, which the webhook sends along.
    pub fn from_settings(
        settings: &ActuatorSettings,
        observer: &str,
    ) -> Result<Self, ActuatorError> {
        Ok(match settings {
            ActuatorSettings::Log => Self::Log,
            ActuatorSettings::Webhook {
                url,
                token,
                timeout,
                retries,
            } => Self::Webhook(Webhook {
                client: reqwest::Client::builder().timeout(*timeout).build()?,
                url: reqwest::Url::parse(url)
                    .map_err(|e| ActuatorError::Config(format!("LZ_WEBHOOK_URL: {e}")))?,
                token: token.as_ref().map(|t| t.expose().clone()),
                retries: *retries,
                observer: observer.to_string(),
            }),
            ActuatorSettings::Kubernetes(k) => Self::Kubernetes(Kubernetes::new(k)?),
            ActuatorSettings::Command {
                program,
                args,
                timeout,
            } => Self::Command(CommandActuator {
                program: program.clone(),
                args: args.clone(),
                timeout: *timeout,
            }),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Webhook(_) => "webhook",
            Self::Kubernetes(_) => "kubernetes",
            Self::Command(_) => "command",
        }
    }

    pub async fn apply(
        &self,
        decision: &ScaleDecision,
        observation: &Observation,
    ) -> Result<(), ActuatorError> {
        match self {
            Self::Log => {
                tracing::info!(
                    desired = decision.desired,
                    current = decision.current,
                    reason = %decision.reason,
                    "scale decision"
                );
                Ok(())
            }
            Self::Webhook(w) => w.send(decision, observation).await,
            Self::Kubernetes(k) => k.scale(decision.desired).await,
            Self::Command(c) => c.run(decision).await,
        }
    }
}

#[derive(Debug)]
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    // Kept as a plain string only inside this adapter; never logged.
    token: Option<String>,
    retries: u32,
    observer: String,
}

impl Webhook {
    async fn send(
        &self,
        decision: &ScaleDecision,
        observation: &Observation,
    ) -> Result<(), ActuatorError> {
        let body = WebhookBody {
            observer: &self.observer,
            desired_replicas: decision.desired,
            current_replicas: decision.current,
            reason: &decision.reason,
            observation,
        };
        let mut attempt = 0;
        loop {
            let mut request = self.client.post(self.url.clone()).json(&body);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let result = match request.send().await {
                Ok(response) => check(response).await,
                Err(e) => Err(ActuatorError::Http(e)),
            };
            // A 4xx will not get better by asking again: it is a
            // configuration problem for the operator.
            let retryable = match &result {
                Ok(()) => return Ok(()),
                Err(ActuatorError::Status { status, .. }) => *status >= 500 || *status == 429,
                Err(_) => true,
            };
            if !retryable || attempt >= self.retries {
                return result;
            }
            attempt += 1;
            tracing::debug!(attempt, "webhook failed, retrying");
            tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
        }
    }
}

async fn check(response: reqwest::Response) -> Result<(), ActuatorError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = response.text().await.unwrap_or_default();
    truncate(&mut body, 500);
    Err(ActuatorError::Status {
        status: status.as_u16(),
        body,
    })
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

#[derive(Debug)]
pub struct Kubernetes {
    client: reqwest::Client,
    url: reqwest::Url,
    token: KubeToken,
}

/// Kubernetes object names are DNS labels or subdomains: checking them
/// here keeps the request path exactly what the operator meant.
fn is_k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl Kubernetes {
    pub fn new(k: &KubernetesSettings) -> Result<Self, ActuatorError> {
        for (what, value) in [
            ("LZ_K8S_NAMESPACE", &k.namespace),
            ("LZ_K8S_DEPLOYMENT", &k.deployment),
        ] {
            if !is_k8s_name(value) {
                return Err(ActuatorError::Config(format!(
                    "{what} is not a Kubernetes name"
                )));
            }
        }
        let url = reqwest::Url::parse(&format!(
            "{}/apis/apps/v1/namespaces/{}/deployments/{}/scale",
            k.api, k.namespace, k.deployment
        ))
        .map_err(|e| ActuatorError::Config(format!("LZ_K8S_API: {e}")))?;
        let mut builder = reqwest::Client::builder().timeout(k.timeout);
        if let Some(path) = &k.ca_file {
            let pem = std::fs::read(path).map_err(|source| ActuatorError::Read {
                what: path.display().to_string(),
                source,
            })?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(Self {
            client: builder.build()?,
            url,
            token: k.token.clone(),
        })
    }

    /// Sets `spec.replicas` through the scale subresource, which needs only
    /// the `deployments/scale` permission, not write access to the whole
    /// Deployment.
    async fn scale(&self, replicas: u32) -> Result<(), ActuatorError> {
        let mut request = self
            .client
            .patch(self.url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/merge-patch+json",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(json!({ "spec": { "replicas": replicas } }).to_string());
        match &self.token {
            KubeToken::None => {}
            KubeToken::Static(token) => request = request.bearer_auth(token.expose()),
            KubeToken::File(path) => {
                let token = tokio::fs::read_to_string(path).await.map_err(|source| {
                    ActuatorError::Read {
                        what: path.display().to_string(),
                        source,
                    }
                })?;
                request = request.bearer_auth(token.trim());
            }
        }
        check(request.send().await?).await
    }
}

#[derive(Debug)]
pub struct CommandActuator {
    program: String,
    args: Vec<String>,
    timeout: Duration,
}

impl CommandActuator {
    async fn run(&self, decision: &ScaleDecision) -> Result<(), ActuatorError> {
        let replicas = decision.desired.to_string();
        let args = self.args.iter().map(|a| a.replace("{replicas}", &replicas));
        let child = tokio::process::Command::new(&self.program)
            .args(args)
            .env("LZ_DESIRED_REPLICAS", &replicas)
            .env("LZ_CURRENT_REPLICAS", decision.current.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // Dropping the wait on timeout kills it, so a hung CLI never
            // piles up behind the next decision.
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ActuatorError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| ActuatorError::Timeout {
                program: self.program.clone(),
                timeout: self.timeout,
            })?
            .map_err(|source| ActuatorError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        truncate(&mut stderr, 500);
        Err(ActuatorError::Exit {
            program: self.program.clone(),
            status: output.status.to_string(),
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(desired: u32) -> ScaleDecision {
        ScaleDecision {
            current: 1,
            desired,
            reason: "test".into(),
        }
    }

    fn command(program: &str, args: &[&str], timeout_ms: u64) -> Actuator {
        Actuator::from_settings(
            &ActuatorSettings::Command {
                program: program.into(),
                args: args.iter().map(|s| s.to_string()).collect(),
                timeout: Duration::from_millis(timeout_ms),
            },
            "obs-test",
        )
        .expect("valid")
    }

    fn observation() -> Observation {
        crate::window::Windows::new(2000, 0, 0).close(2000).closed[0].to_observation()
    }

    #[tokio::test]
    async fn command_gets_the_replicas_as_an_argument_without_a_shell() {
        let out = std::env::temp_dir().join(format!("lz-cmd-{}", std::process::id()));
        let script = format!(
            "printf '%s|%s|%s' \"$1\" \"$LZ_DESIRED_REPLICAS\" \"$2\" > {}",
            out.display()
        );
        let a = command(
            "sh",
            &[
                "-c",
                &script,
                "sh",
                "--replicas={replicas}",
                "$(touch /tmp/x); *",
            ],
            5000,
        );
        a.apply(&decision(4), &observation()).await.expect("runs");
        let got = std::fs::read_to_string(&out).expect("written");
        // The second argument arrives verbatim: nothing expanded it.
        assert_eq!(got, "--replicas=4|4|$(touch /tmp/x); *");
        let _ = std::fs::remove_file(&out);
    }

    #[tokio::test]
    async fn command_failures_are_errors_with_stderr() {
        let a = command("sh", &["-c", "echo nope >&2; exit 3"], 5000);
        let err = a
            .apply(&decision(2), &observation())
            .await
            .expect_err("fails");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = command("/nonexistent/kumorictl", &[], 5000)
            .apply(&decision(2), &observation())
            .await
            .expect_err("no such program");
        assert!(matches!(err, ActuatorError::Spawn { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_hung_command_is_killed_at_the_timeout() {
        let started = std::time::Instant::now();
        let err = command("sleep", &["30"], 200)
            .apply(&decision(2), &observation())
            .await
            .expect_err("times out");
        assert!(matches!(err, ActuatorError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn kubernetes_names_are_checked() {
        let k = KubernetesSettings {
            api: "http://127.0.0.1:1".into(),
            namespace: "../secrets".into(),
            deployment: "w".into(),
            token: KubeToken::None,
            ca_file: None,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(Kubernetes::new(&k), Err(ActuatorError::Config(_))));
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let mut s = "é".repeat(400);
        truncate(&mut s, 501);
        assert!(s.len() <= 504 && s.ends_with('…'));
    }
}
