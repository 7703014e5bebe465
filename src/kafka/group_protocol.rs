//! Which consumer group protocol a stage's group speaks, decided once at start.
//!
//! KIP-848's protocol (`group.protocol: consumer`, Apache Kafka 4.0 and later) is the default
//! where the broker offers it: the coordinator assigns partitions member by member, so a member
//! joining, leaving or crashing moves only its own partitions and never waits for the others to
//! rejoin. Elsewhere the classic protocol, with sluice's classic defaults (cooperative-sticky,
//! a 10 s session timeout). A topology that names `group.protocol`, or sets a setting only the
//! classic protocol has, gets what it asked for. See docs/TOPOLOGY.md, "Consumer groups".

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{admin_config, broker_kind, BrokerKind};
use crate::config::{KafkaSettings, CLASSIC_ONLY_SETTINGS};

/// How long the broker's configs are waited for.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The broker setting naming the group protocols its coordinator offers (Kafka 3.7 and later).
const REBALANCE_PROTOCOLS: &str = "group.coordinator.rebalance.protocols";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    Classic,
    /// KIP-848.
    Consumer,
}

impl GroupProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

/// The protocol chosen and why, for the log line a worker writes at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub protocol: GroupProtocol,
    pub reason: String,
    /// The broker's session timeout for KIP-848 groups (`group.consumer.session.timeout.ms`),
    /// when it was read: how long a crashed member's partitions wait.
    pub broker_session_timeout: Option<Duration>,
}

/// The protocol the topology itself decides, if it does: `group.protocol` named, or a
/// classic-only setting present (librdkafka refuses those in a KIP-848 consumer).
pub fn from_topology(settings: &KafkaSettings) -> Option<Choice> {
    let named =
        settings.consumer.get("group.protocol").or(settings.properties.get("group.protocol"));
    if let Some(name) = named {
        let protocol =
            if name == "consumer" { GroupProtocol::Consumer } else { GroupProtocol::Classic };
        let reason = format!("the topology sets group.protocol: {name}");
        return Some(Choice { protocol, reason, broker_session_timeout: None });
    }
    let classic = CLASSIC_ONLY_SETTINGS
        .iter()
        .find(|k| settings.consumer.contains_key(**k) || settings.properties.contains_key(**k));
    classic.map(|key| Choice {
        protocol: GroupProtocol::Classic,
        reason: format!("the topology sets '{key}', a setting of the classic protocol only"),
        broker_session_timeout: None,
    })
}

/// Decides the protocol (blocking: call from a blocking thread): the topology's, else KIP-848
/// where the broker offers it, else classic. Never fails: a broker that cannot be asked gets the
/// classic protocol, which every broker speaks, and the reason says so.
pub fn choose(settings: &KafkaSettings) -> Choice {
    if let Some(choice) = from_topology(settings) {
        return choice;
    }
    let classic = |reason: String| Choice {
        protocol: GroupProtocol::Classic,
        reason,
        broker_session_timeout: None,
    };
    match broker_kind(settings) {
        Ok(BrokerKind::Embedded) => {
            return classic("the embedded broker (librdkafka's mock cluster)".into())
        }
        Ok(BrokerKind::Kafka) => {}
        Err(e) => return classic(format!("the broker could not be asked ({e})")),
    }
    let configs = match broker_configs(settings) {
        Ok(configs) => configs,
        Err(e) => return classic(format!("the broker's configs could not be read ({e})")),
    };
    match configs.get(REBALANCE_PROTOCOLS) {
        Some(offered) if offered.split(',').any(|p| p.trim() == "consumer") => Choice {
            protocol: GroupProtocol::Consumer,
            reason: format!("the broker offers it ({REBALANCE_PROTOCOLS}={offered})"),
            broker_session_timeout: configs
                .get("group.consumer.session.timeout.ms")
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
        },
        Some(offered) => classic(format!("the broker offers only {REBALANCE_PROTOCOLS}={offered}")),
        None => classic(format!("the broker has no '{REBALANCE_PROTOCOLS}' (before Kafka 3.7)")),
    }
}

/// Writes the choice into the settings every stage consumer is made from.
pub fn apply(settings: &mut KafkaSettings, choice: &Choice) {
    settings.consumer.insert("group.protocol".into(), choice.protocol.as_str().into());
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigsError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Refused(String),
}

/// One broker's configuration, as DescribeConfigs returns it (blocking; the broker that answers
/// the metadata request first). Needs the admin API: not on the embedded broker.
pub fn broker_configs(settings: &KafkaSettings) -> Result<HashMap<String, String>, ConfigsError> {
    let client: BaseConsumer = admin_config(settings).create()?;
    let metadata = client.fetch_metadata(None, TIMEOUT)?;
    let broker =
        metadata.brokers().first().map(|b| b.id()).ok_or_else(|| {
            ConfigsError::Refused("the cluster's metadata names no broker".into())
        })?;
    let admin: AdminClient<DefaultClientContext> = admin_config(settings).create()?;
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    // rdkafka's admin futures are completed by its own thread: no async runtime needed here.
    let results = futures::executor::block_on(
        admin.describe_configs([&ResourceSpecifier::Broker(broker)], &options),
    )?;
    let resource = results
        .into_iter()
        .next()
        .ok_or_else(|| ConfigsError::Refused("no answer".into()))?
        .map_err(|e| ConfigsError::Refused(e.to_string()))?;
    Ok(resource.entries.into_iter().filter_map(|e| e.value.map(|v| (e.name, v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(consumer: &[(&str, &str)]) -> KafkaSettings {
        let mut s = KafkaSettings::single_broker("localhost:9092", 1);
        for (k, v) in consumer {
            s.consumer.insert((*k).into(), (*v).into());
        }
        s
    }

    #[test]
    fn the_topology_decides_when_it_names_a_protocol_or_sets_a_classic_only_setting() {
        assert_eq!(from_topology(&settings(&[])), None);
        let named = from_topology(&settings(&[("group.protocol", "consumer")])).unwrap();
        assert_eq!(named.protocol, GroupProtocol::Consumer);
        let classic = from_topology(&settings(&[("session.timeout.ms", "6000")])).unwrap();
        assert_eq!(classic.protocol, GroupProtocol::Classic);
        assert!(classic.reason.contains("session.timeout.ms"), "{}", classic.reason);
    }
}
