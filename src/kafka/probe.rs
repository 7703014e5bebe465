//! What kind of broker a bootstrap address leads to. librdkafka's mock cluster (the embedded
//! broker of `sluice dev`, `sluice demo` and the tests) speaks produce, fetch, metadata and the
//! group protocols, but implements no admin API (CreateTopics, DescribeConfigs, DescribeGroups,
//! ListGroups): a request for one waits for a timeout. Commands that need one ask here first and
//! fail at once with the alternative. Also the periodic reachability checks behind `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::admin_config;
use crate::config::{KafkaSettings, Topology};
use crate::telemetry::health;

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

/// How long one reachability check waits for an answer.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks, every `every` until the runtime ends, that the broker answers a metadata request (for
/// the metering topic, which every stage writes: a small answer on a large cluster) and that the
/// schema registry answers `GET /config` (its global compatibility level: a small answer on a
/// large registry), and records each outcome in the process's
/// [`crate::telemetry::Health`] for `/readyz`. The first checks run at once.
pub fn watch_reachability(topology: &Topology, every: Duration) -> tokio::task::JoinHandle<()> {
    let settings = topology.kafka.clone();
    let metering = topology.metering_topic.clone();
    let url = format!("{}/config", topology.schema_registry.url.trim_end_matches('/'));
    tokio::spawn(async move {
        let client: Option<Arc<BaseConsumer>> = admin_config(&settings).create().ok().map(Arc::new);
        let http = reqwest::Client::builder().timeout(REACH_TIMEOUT).build();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let broker = match client.clone() {
                Some(c) => {
                    let topic = metering.clone();
                    tokio::task::spawn_blocking(move || {
                        c.fetch_metadata(Some(&topic), REACH_TIMEOUT)
                            .map(drop)
                            .map_err(|e| e.to_string())
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
                }
                None => Err("cannot create a Kafka client (see the topology's kafka block)".into()),
            };
            health().broker_checked(broker);
            let registry = match &http {
                Ok(http) => match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                    // Without the URL: it may carry credentials.
                    Err(e) => Err(e.without_url().to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            health().registry_checked(registry);
        }
    })
}
