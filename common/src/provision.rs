//! The one provisioner: creates the topics, the bucket and the indexes the
//! platform relies on. Every step is idempotent (an existing topic, bucket
//! or index counts as done), so each service runs it at start, and the dev
//! stack and the benchmark run it through the `lanzadera-provision` binary.
//!
//! When a backing service is not there yet the behaviour is the same
//! everywhere (`docs/operations.md`, *Provisioning*): try every step, and
//! while any fails, try again after 200 ms, doubling up to 10 s, with one
//! warning per failed attempt naming what is missing.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use mongodb::Database;

use crate::settings::{KafkaSettings, S3Settings};
use crate::{kafka, mongo, storage};

/// What to create; each part is optional so that a service asks only for
/// what it uses.
#[derive(Clone, Default)]
pub struct Provisioner {
    topics: Option<KafkaSettings>,
    bucket: Option<S3Settings>,
    indexes: Option<Database>,
}

/// The steps that failed in one attempt, each with its cause.
#[derive(Debug, thiserror::Error)]
#[error("provisioning incomplete: {}", .failures.join("; "))]
pub struct ProvisionError {
    pub failures: Vec<String>,
}

impl Provisioner {
    pub fn new() -> Self {
        Self::default()
    }

    /// The jobs, status and ignore topics.
    pub fn topics(mut self, k: &KafkaSettings) -> Self {
        self.topics = Some(k.clone());
        self
    }

    pub fn bucket(mut self, s: &S3Settings) -> Self {
        self.bucket = Some(s.clone());
        self
    }

    /// The indexes of the `jobs` and `observations` collections.
    pub fn indexes(mut self, db: &Database) -> Self {
        self.indexes = Some(db.clone());
        self
    }

    /// One attempt at every step, all of them even when one fails, so that
    /// the error names everything that is missing.
    pub async fn once(&self) -> Result<(), ProvisionError> {
        let mut failures = Vec::new();
        if let Some(k) = &self.topics {
            if let Err(e) = kafka::ensure_topics(k).await {
                failures.push(format!("topics: {e}"));
            }
        }
        if let Some(s) = &self.bucket {
            if let Err(e) = storage::ensure_bucket(s).await {
                failures.push(format!("bucket {}: {e}", s.bucket));
            }
        }
        if let Some(db) = &self.indexes {
            if let Err(e) = mongo::ensure_indexes(db).await {
                failures.push(format!("indexes: {e}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ProvisionError { failures })
        }
    }

    /// Retries until every step is done (see the module documentation).
    pub async fn until_done(&self) {
        let _ = (|| self.once())
            .retry(backoff())
            .notify(|e, next| {
                tracing::warn!(error = %e, retry_in_ms = next.as_millis() as u64, "waiting for the backing services")
            })
            .await;
    }

    /// Retries for at most `limit`, then gives up with the last failure.
    pub async fn within(&self, limit: Duration) -> Result<(), ProvisionError> {
        match tokio::time::timeout(limit, self.until_done()).await {
            Ok(()) => Ok(()),
            Err(_) => self.once().await,
        }
    }
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_factor(2.0)
        .without_max_times()
}
