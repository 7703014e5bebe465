//! Kafka clients as sluice configures them: consumers that never store an offset on their own
//! and read committed records only, idempotent producers with `acks=all` (transactional ones for
//! exactly-once stages, see [`transactions`] for the brokers that have none), topic
//! administration, and the schema registry client's settings.
//!
//! [`reader`] is the one topic reader of the operator's commands and the console, with one rule
//! for transient errors; [`ledger`] the one log-ordered ledger (the budget's and the review
//! queue's books); [`presence`] how assign-only clients announce themselves; [`ready`] how a
//! broker still coming up is waited out and one that is not there reported at once.

mod admin;
pub mod group_description;
pub mod group_protocol;
pub mod ledger;
pub mod presence;
mod probe;
pub mod reader;
pub mod ready;
mod transactions;

pub use admin::{create_planned_topics, create_topics, existing_topics, TopicAdminError};
pub use probe::{broker_kind, require_admin_api, watch_reachability, BrokerKind, ProbeError};
pub use transactions::exactly_once_supported;

use rdkafka::ClientConfig;

use schema_registry_converter::async_impl::schema_registry::SrSettings;

use crate::config::defaults as d;
use crate::config::{KafkaSettings, Topology};

/// Properties sluice sets on every consumer; the topology's `kafka.consumer` may not override the
/// three that carry the delivery guarantee (see [`consumer_config`]).
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("enable.partition.eof", "false"),
    ("auto.commit.interval.ms", "1000"),
];

/// Defaults for classic consumer groups (see [`group_protocol`] for when a group is one):
/// cooperative rebalancing, so scaling a group moves only the partitions that change owner; a
/// 10 s session, so a crashed member's partitions wait 10 s rather than librdkafka's 45 s (and a
/// rebalance that a dead member holds up ends as soon); a heartbeat every second, so a member
/// hears of a rebalance — the second round of a cooperative one — within a second (librdkafka's
/// 3 s was a 2.8 s stall of every moved partition). Heartbeats run on librdkafka's own thread, so
/// a busy stage never misses one; the broker's default `group.min.session.timeout.ms` is 6 s.
/// Measured in docs/RELIABILITY.md, "Scaling a stage".
const CLASSIC_GROUP_DEFAULTS: &[(&str, u64)] = &[
    ("session.timeout.ms", d::CLASSIC_SESSION_TIMEOUT_MS),
    ("heartbeat.interval.ms", d::CLASSIC_HEARTBEAT_INTERVAL_MS),
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
    if !settings.uses_consumer_group_protocol() {
        for (k, v) in CLASSIC_GROUP_DEFAULTS {
            config.set(*k, v.to_string());
        }
        config.set("partition.assignment.strategy", d::CLASSIC_ASSIGNMENT_STRATEGY);
    }
    for (k, v) in &settings.consumer {
        config.set(k, v);
    }
    config.set("group.id", group);
    config.set("enable.auto.offset.store", "false");
    config.set("enable.auto.commit", "true");
    // Records of an aborted transaction (a redrive batch that crashed) must never be processed.
    config.set("isolation.level", "read_committed");
    config
}

/// A standalone consumer (no group) for `sluice consume` and tests. It reads committed records
/// only, whatever `kafka.consumer` says: the operator's commands and the console show what the
/// stages and the applications downstream see, never the records of an open or aborted
/// transaction (an exactly-once stage's, or a redrive batch's).
pub fn reader_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base(settings);
    for (k, v) in &settings.consumer {
        config.set(k, v);
    }
    // A worker's static id (`sluice run --instance-id`) belongs to its stage consumers only.
    config.remove("group.instance.id");
    config.set("group.id", "sluice-reader");
    config.set("enable.auto.commit", "false");
    config.set("isolation.level", "read_committed");
    config
}

/// A consumer of `group` that is assigned partitions and never joins the group: the operator's
/// tools and the console, which keep a position of their own in Kafka. Nothing is committed or
/// stored unless the caller does it; `group.protocol` is removed, because a client that never
/// joins speaks no group protocol, and commits without a member work on every broker while the
/// group has no members. Such clients announce themselves through [`presence`].
pub fn assign_only_config(settings: &KafkaSettings, group: &str) -> ClientConfig {
    let mut config = reader_config(settings);
    config.remove("group.protocol");
    config.set("group.id", group);
    config.set("enable.auto.commit", "false");
    config.set("enable.auto.offset.store", "false");
    config.set("enable.partition.eof", "false");
    config.set("auto.offset.reset", "earliest");
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

/// The transactional producer of an exactly-once stage's worker: [`producer_config`] with
/// `transactional.id` (sluice derives it per worker; the topology may not set it) and
/// `transaction.timeout.ms`, sluice's default unless the topology sets it: how long a crashed
/// worker's open transaction holds back read-committed readers of its outputs, unless a worker
/// with the same transactional id starts first and aborts it.
pub fn transactional_producer_config(
    settings: &KafkaSettings,
    transactional_id: &str,
) -> ClientConfig {
    let mut config = producer_config(settings);
    if config.get("transaction.timeout.ms").is_none() {
        config.set("transaction.timeout.ms", d::TRANSACTION_TIMEOUT_MS.to_string());
    }
    config.set("transactional.id", transactional_id);
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::compile;

    fn kafka_block(consumer: &str) -> String {
        let base = std::fs::read_to_string("topologies/backfill-embed.yaml").expect("shipped");
        let line = "    fetch.wait.max.ms: \"100\"\n";
        base.replace(line, &format!("{line}{consumer}\n"))
    }

    #[test]
    fn classic_groups_rebalance_cooperatively_by_default_and_kip848_groups_get_no_classic_settings()
    {
        let classic = compile(Path::new("t.yaml"), &kafka_block("    x.unused: \"1\"")).unwrap();
        let config = super::consumer_config(&classic.kafka, "g");
        assert_eq!(config.get("partition.assignment.strategy"), Some("cooperative-sticky"));
        let yaml = kafka_block("    group.protocol: consumer");
        let kip848 = compile(Path::new("t.yaml"), &yaml).unwrap();
        let config = super::consumer_config(&kip848.kafka, "g");
        assert_eq!(config.get("group.protocol"), Some("consumer"));
        for key in crate::config::CLASSIC_ONLY_SETTINGS {
            assert_eq!(config.get(key), None, "{key} would make librdkafka refuse the consumer");
        }
    }

    #[test]
    fn a_workers_static_id_reaches_its_stage_consumers_and_no_other_client() {
        let mut t = compile(Path::new("t.yaml"), &kafka_block("")).unwrap();
        t.kafka.consumer.insert("group.instance.id".into(), "pod-0".into());
        assert_eq!(super::consumer_config(&t.kafka, "g").get("group.instance.id"), Some("pod-0"));
        assert_eq!(super::reader_config(&t.kafka).get("group.instance.id"), None);
        assert_eq!(super::assign_only_config(&t.kafka, "g").get("group.instance.id"), None);
    }

    #[test]
    fn a_stage_reads_only_committed_records_whatever_the_topology_says() {
        let yaml = kafka_block("    isolation.level: read_uncommitted");
        let t = compile(Path::new("t.yaml"), &yaml).unwrap();
        let config = super::consumer_config(&t.kafka, "g");
        assert_eq!(config.get("isolation.level"), Some("read_committed"));
    }

    #[test]
    fn the_operators_readers_read_only_committed_records_whatever_the_topology_says() {
        let yaml = kafka_block("    isolation.level: read_uncommitted");
        let t = compile(Path::new("t.yaml"), &yaml).unwrap();
        assert_eq!(super::reader_config(&t.kafka).get("isolation.level"), Some("read_committed"));
        let assigned = super::assign_only_config(&t.kafka, "g");
        assert_eq!(assigned.get("isolation.level"), Some("read_committed"));
    }

    #[test]
    fn a_transactional_producer_is_idempotent_with_its_own_id_and_sluices_timeout_unless_set() {
        let mut t = compile(Path::new("t.yaml"), &kafka_block("")).unwrap();
        t.kafka.producer.insert("acks".into(), "1".into());
        let config = super::transactional_producer_config(&t.kafka, "sluice.p.work.pod-0");
        assert_eq!(config.get("transactional.id"), Some("sluice.p.work.pod-0"));
        assert_eq!(config.get("transaction.timeout.ms"), Some("10000"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        t.kafka.properties.insert("transaction.timeout.ms".into(), "30000".into());
        let config = super::transactional_producer_config(&t.kafka, "id");
        assert_eq!(config.get("transaction.timeout.ms"), Some("30000"));
        t.kafka.producer.insert("transaction.timeout.ms".into(), "20000".into());
        let config = super::transactional_producer_config(&t.kafka, "id");
        assert_eq!(config.get("transaction.timeout.ms"), Some("20000"));
    }

    #[test]
    fn a_kip848_topology_with_classic_settings_is_rejected_naming_each() {
        let yaml = kafka_block(
            "    group.protocol: consumer\n    session.timeout.ms: \"6000\"\n    \
             partition.assignment.strategy: range",
        );
        let errors = compile(Path::new("t.yaml"), &yaml).unwrap_err().to_string();
        assert!(errors.contains("'session.timeout.ms' belongs to the classic"), "{errors}");
        assert!(
            errors.contains("'partition.assignment.strategy' belongs to the classic"),
            "{errors}"
        );
    }
}
