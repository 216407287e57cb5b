//! What the decision needs from Kafka: the workers' lag on the jobs topic,
//! how many workers are in their group, how many partitions the topic has,
//! and growing it. rdkafka's metadata calls block, so they run on the
//! blocking pool.

use std::sync::Arc;
use std::time::Duration;

use common::kafka;
use common::settings::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClusterState {
    /// Sum over partitions of high watermark minus the workers' committed
    /// offset (or minus the low watermark where they never committed).
    pub backlog: u64,
    /// Members of the workers' group; 0 until the group's first commit,
    /// since only then does the broker list it.
    pub workers: u32,
    /// 0 when the topic does not exist yet.
    pub partitions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Growth {
    Grown(u32),
    /// The broker cannot add partitions (tansu answers this way).
    Unsupported,
    Failed(String),
}

pub struct ClusterProbe {
    /// Carries the workers' group id so that it can read their committed
    /// offsets. It never subscribes, so it never joins their group.
    consumer: Arc<StreamConsumer>,
    admin: AdminClient<DefaultClientContext>,
    topic: String,
    group: String,
    timeout: Duration,
}

impl ClusterProbe {
    pub fn new(k: &KafkaSettings, timeout: Duration) -> KafkaResult<Self> {
        Ok(Self {
            consumer: Arc::new(kafka::consumer(k, &k.workers_group, &[])?),
            admin: kafka::admin(k)?,
            topic: k.jobs_topic.clone(),
            group: k.workers_group.clone(),
            timeout,
        })
    }

    pub async fn probe(&self) -> KafkaResult<ClusterState> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let group = self.group.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || probe_blocking(&consumer, &topic, &group, timeout))
            .await
            .map_err(|_| KafkaError::Canceled)?
    }

    pub async fn grow(&self, partitions: u32) -> Growth {
        let Ok(count) = usize::try_from(partitions) else {
            return Growth::Failed("partition count out of range".into());
        };
        let request = NewPartitions::new(&self.topic, count);
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout));
        match self.admin.create_partitions([&request], &opts).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => Growth::Grown(partitions),
                Some(Err((_, code))) => classify(code),
                None => Growth::Failed("the broker returned no result".into()),
            },
            Err(KafkaError::AdminOp(code)) => classify(code),
            Err(e) => Growth::Failed(e.to_string()),
        }
    }
}

fn classify(code: RDKafkaErrorCode) -> Growth {
    match code {
        RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion => {
            Growth::Unsupported
        }
        other => Growth::Failed(other.to_string()),
    }
}

fn probe_blocking(
    consumer: &StreamConsumer,
    topic: &str,
    group: &str,
    timeout: Duration,
) -> KafkaResult<ClusterState> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let workers = match consumer.fetch_group_list(Some(group), timeout) {
        Ok(list) => list
            .groups()
            .iter()
            .find(|g| g.name() == group)
            .map_or(0, |g| u32::try_from(g.members().len()).unwrap_or(u32::MAX)),
        // A group the broker does not know yet has no members.
        Err(KafkaError::GroupListFetch(RDKafkaErrorCode::GroupIdNotFound)) => 0,
        Err(e) => return Err(e),
    };
    if partitions.is_empty() {
        return Ok(ClusterState {
            backlog: 0,
            workers,
            partitions: 0,
        });
    }
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut backlog = 0u64;
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        let from = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            // Workers start from the earliest offset when they have none.
            _ => low,
        };
        backlog += u64::try_from(high - from.max(low).min(high)).unwrap_or(0);
    }
    Ok(ClusterState {
        backlog,
        workers,
        partitions: u32::try_from(partitions.len()).unwrap_or(u32::MAX),
    })
}
