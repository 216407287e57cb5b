//! Thin builders for rdkafka clients from settings.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use crate::settings::KafkaSettings;

fn base(k: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    c
}

/// An idempotent producer that waits for every in-sync replica: a message
/// is accepted only once the broker has it.
pub fn producer(k: &KafkaSettings) -> KafkaResult<FutureProducer> {
    base(k)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", k.linger_ms.to_string())
        .set(
            "batch.num.messages",
            k.batch_num_messages.max(1).to_string(),
        )
        // A produce that cannot reach the broker fails within this bound,
        // so an API request never hangs on it.
        .set("message.timeout.ms", "5000")
        .create()
}

/// A consumer in `group` that never commits on its own: callers commit
/// after the work a message stands for is done.
pub fn consumer(
    k: &KafkaSettings,
    group: &str,
    overrides: &[(&str, String)],
) -> KafkaResult<StreamConsumer> {
    consumer_config(k, group, overrides).create()
}

/// The same consumer with a custom context, for callers that act on
/// rebalances (the worker commits or pauses partitions there).
pub fn consumer_with_context<C: ConsumerContext + 'static>(
    k: &KafkaSettings,
    group: &str,
    overrides: &[(&str, String)],
    context: C,
) -> KafkaResult<StreamConsumer<C>> {
    consumer_config(k, group, overrides).create_with_context(context)
}

fn consumer_config(k: &KafkaSettings, group: &str, overrides: &[(&str, String)]) -> ClientConfig {
    let mut c = base(k);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", k.session_timeout_ms.to_string())
        .set("fetch.wait.max.ms", k.fetch_wait_max_ms.to_string());
    for (key, value) in overrides {
        c.set(*key, value);
    }
    c
}

/// A consumer for a direct assignment, outside any consumer group: it
/// never joins `group` and never commits (librdkafka wants a group id
/// anyway; a reader of a group's committed offsets passes that group's).
/// `fetch_wait_ms` is the broker's wait for new records: every fetching
/// client costs the broker CPU, idle or not, so readers that can wait say
/// so.
pub fn direct_consumer(
    k: &KafkaSettings,
    group: &str,
    fetch_wait_ms: u64,
    overrides: &[(&str, &str)],
) -> KafkaResult<BaseConsumer> {
    let mut c = base(k);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string());
    for (key, value) in overrides {
        c.set(*key, *value);
    }
    c.create()
}

/// A group id of its own, for a `direct_consumer` that reads everything.
pub fn private_group(purpose: &str) -> String {
    format!("lanzadera-{purpose}-{}", uuid::Uuid::new_v4())
}

pub fn admin(k: &KafkaSettings) -> KafkaResult<AdminClient<DefaultClientContext>> {
    base(k).create()
}

/// Creates the topic if it does not exist yet.
pub async fn ensure_topic(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    partitions: i32,
) -> KafkaResult<()> {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

/// Creates the three topics the platform uses.
pub async fn ensure_topics(k: &KafkaSettings) -> KafkaResult<()> {
    let admin = admin(k)?;
    ensure_topic(&admin, &k.jobs_topic, k.jobs_partitions).await?;
    ensure_topic(&admin, &k.status_topic, k.status_partitions).await?;
    ensure_topic(&admin, &k.cancel_topic, 1).await
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("could not encode the message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the broker did not accept the message: {0}")]
    Kafka(#[from] KafkaError),
}

/// Produces `value` as JSON and waits for the broker's acknowledgement.
pub async fn produce_json<T: Serialize>(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &T,
) -> Result<(), ProduceError> {
    produce_json_at(producer, topic, None, key, value)
        .await
        .map(|_| ())
}

/// The same to a chosen partition (or the key's), answering where the
/// record landed: `(partition, offset)`.
pub async fn produce_json_at<T: Serialize>(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &T,
) -> Result<(i32, i64), ProduceError> {
    let payload = serde_json::to_vec(value)?;
    let mut record = FutureRecord::to(topic).key(key).payload(&payload);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    producer
        .send(record, Duration::from_secs(5))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| ProduceError::Kafka(e))
}

/// The services' producer (see `producer`), replaced by a fresh one when
/// librdkafka reports a fatal error. An idempotent producer whose messages
/// timed out must bump its epoch; when the broker refuses (tansu answered
/// `ProducerFenced` under overload), the instance refuses every later
/// message for good, and without a new one the API would answer 503 and a
/// worker would retry its status event until restarted.
#[derive(Clone)]
pub struct Publisher {
    settings: KafkaSettings,
    current: Arc<RwLock<FutureProducer>>,
}

impl Publisher {
    pub fn new(k: &KafkaSettings) -> KafkaResult<Self> {
        Ok(Self {
            settings: k.clone(),
            current: Arc::new(RwLock::new(producer(k)?)),
        })
    }

    /// The producer in use now, for metadata calls.
    pub fn producer(&self) -> FutureProducer {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Produces `value` as JSON and waits for the acknowledgement. When the
    /// broker fenced the producer (it refused the message, so sending it
    /// again cannot duplicate it) the message goes once more through a new
    /// producer; after any other failure that left the producer unusable,
    /// the next message goes through a new one.
    pub async fn send_json<T: Serialize>(
        &self,
        topic: &str,
        key: &str,
        value: &T,
    ) -> Result<(), ProduceError> {
        self.send_json_at(topic, None, key, value).await.map(|_| ())
    }

    /// `send_json` to a chosen partition (or the key's), answering where
    /// the record landed: `(partition, offset)`.
    pub async fn send_json_at<T: Serialize>(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        value: &T,
    ) -> Result<(i32, i64), ProduceError> {
        let producer = self.producer();
        let result = produce_json_at(&producer, topic, partition, key, value).await;
        let Err(ProduceError::Kafka(e)) = &result else {
            return result;
        };
        let fenced = matches!(
            e,
            KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced)
        );
        if let Some((code, reason)) = producer.client().fatal_error() {
            self.renew(&producer, &format!("{code:?}: {reason}"));
        } else if fenced {
            self.renew(&producer, &e.to_string());
            return produce_json_at(&self.producer(), topic, partition, key, value).await;
        }
        result
    }

    fn renew(&self, failed: &FutureProducer, reason: &str) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // Many messages fail together; the first to get here renews it.
        if current.client().native_ptr() != failed.client().native_ptr() {
            return;
        }
        match producer(&self.settings) {
            Ok(fresh) => {
                tracing::warn!(%reason, "the Kafka producer is unusable: replaced by a new one");
                *current = fresh;
            }
            Err(e) => {
                tracing::error!(%reason, error = %e, "the Kafka producer is unusable and cannot be replaced")
            }
        }
    }
}
