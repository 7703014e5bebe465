//! What kind of broker a bootstrap address leads to. librdkafka's mock cluster (the embedded
//! broker of `sluice dev`, `sluice demo` and the tests) speaks produce, fetch, metadata and the
//! group protocols, but implements no admin API (CreateTopics, DescribeConfigs, DescribeGroups,
//! ListGroups): a request for one waits for a timeout. Commands that need one ask here first and
//! fail at once with the alternative.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::admin_config;
use crate::config::KafkaSettings;

/// How long a probe waits for the cluster to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// librdkafka's mock cluster: no admin API.
    Embedded,
    /// Anything else that answered: Apache Kafka, Confluent, MSK, Redpanda…
    Kafka,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no Kafka broker answered at {bootstrap} within {timeout:?}")]
    Unreachable { bootstrap: String, timeout: Duration },
    #[error(
        "{what} needs the Kafka admin API, which the embedded broker at {bootstrap} (librdkafka's \
         mock cluster, started by `sluice dev`) does not implement; `sluice dev` already created \
         every topic of its topology. To use {what}, run a real broker — for example \
         `scripts/with-kafka sluice dev --topology T` starts Apache Kafka and `sluice dev` on it — \
         and point KAFKA_BOOTSTRAP_SERVERS at it"
    )]
    NoAdminApi { what: String, bootstrap: String },
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Asks the cluster for its id (blocking: call from a blocking thread).
pub fn broker_kind(settings: &KafkaSettings) -> Result<BrokerKind, ProbeError> {
    let client: BaseConsumer = admin_config(settings).create()?;
    let id =
        client.client().fetch_cluster_id(PROBE_TIMEOUT).ok_or_else(|| ProbeError::Unreachable {
            bootstrap: settings.bootstrap_servers.clone(),
            timeout: PROBE_TIMEOUT,
        })?;
    Ok(if id.starts_with("mockCluster") { BrokerKind::Embedded } else { BrokerKind::Kafka })
}

/// Fails at once, naming the alternative, when `what` cannot work against this broker.
pub async fn require_admin_api(settings: &KafkaSettings, what: &str) -> Result<(), ProbeError> {
    let s = settings.clone();
    let kind = tokio::task::spawn_blocking(move || broker_kind(&s))
        .await
        .expect("probe thread does not panic")?;
    match kind {
        BrokerKind::Kafka => Ok(()),
        BrokerKind::Embedded => Err(ProbeError::NoAdminApi {
            what: what.to_owned(),
            bootstrap: settings.bootstrap_servers.clone(),
        }),
    }
}
