//! Kafka clients as sluice configures them: consumers that never store an offset on their own,
//! idempotent producers with `acks=all`, topic administration, and the schema registry client's
//! settings.

mod admin;
mod probe;

pub use admin::{create_planned_topics, create_topics, existing_topics, TopicAdminError};
pub use probe::{broker_kind, require_admin_api, BrokerKind, ProbeError};

use rdkafka::ClientConfig;

use schema_registry_converter::async_impl::schema_registry::SrSettings;

use crate::config::{KafkaSettings, Topology};

/// Properties sluice sets on every consumer; the topology's `kafka.consumer` may not override the
/// two that carry the delivery guarantee (see [`consumer_config`]).
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("enable.partition.eof", "false"),
    ("auto.commit.interval.ms", "1000"),
    ("session.timeout.ms", "45000"),
];

/// Properties sluice sets on every producer unless the topology overrides them.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[("linger.ms", "5"), ("compression.type", "lz4")];

fn base(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.bootstrap_servers);
    config.set("client.id", "sluice");
    for (k, v) in &settings.properties {
        config.set(k, v);
    }
    config
}

/// A group consumer for the at-least-once runner. Offsets are committed in the background and on
/// revoke/shutdown, but only offsets the runner *stored* — `enable.auto.offset.store=false` —
/// which it does only for records whose every output was acknowledged.
pub fn consumer_config(settings: &KafkaSettings, group: &str) -> ClientConfig {
    let mut config = base(settings);
    for (k, v) in CONSUMER_DEFAULTS {
        config.set(*k, *v);
    }
    for (k, v) in &settings.consumer {
        config.set(k, v);
    }
    config.set("group.id", group);
    config.set("enable.auto.offset.store", "false");
    config.set("enable.auto.commit", "true");
    config
}

/// A standalone consumer (no group) for `sluice consume` and tests.
pub fn reader_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base(settings);
    for (k, v) in &settings.consumer {
        config.set(k, v);
    }
    config.set("group.id", "sluice-reader");
    config.set("enable.auto.commit", "false");
    config
}

/// An idempotent producer: no duplicates or reordering from its own retries, `acks=all`.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base(settings);
    for (k, v) in PRODUCER_DEFAULTS {
        config.set(*k, *v);
    }
    for (k, v) in &settings.producer {
        config.set(k, v);
    }
    config.set("enable.idempotence", "true");
    config.set("acks", "all");
    config
}

/// Admin clients use only the shared properties.
pub fn admin_config(settings: &KafkaSettings) -> ClientConfig {
    base(settings)
}

/// The schema registry client's settings for a topology.
pub fn registry_settings(topology: &Topology) -> SrSettings {
    SrSettings::new(topology.schema_registry.url.clone())
}
