//! Which brokers can run exactly-once stages. Kafka transactions need a broker that fences a
//! zombie producer by its transactional id, writes commit and abort markers, and holds
//! read-committed readers at the last stable offset. librdkafka's mock cluster (the embedded
//! broker of `sluice dev` and `sluice demo`) answers the transaction requests but does none of
//! these (librdkafka 2.12): its "exactly once" would hand readers aborted records and let two
//! workers commit the same input. So an exactly-once topology is refused there at start.

use super::BrokerKind;
use crate::config::StageSpec;

/// `Ok` when every exactly-once stage among `stages` can run on a broker of this kind; else the
/// message a start path prints: which stages want exactly-once delivery, why this broker cannot
/// give it, and what to do.
pub fn exactly_once_supported<'a>(
    kind: BrokerKind,
    stages: impl IntoIterator<Item = &'a StageSpec>,
) -> Result<(), String> {
    let wanting: Vec<String> = stages
        .into_iter()
        .filter(|s| s.delivery.transactions().is_some())
        .map(|s| format!("'{}'", s.name))
        .collect();
    if wanting.is_empty() || kind == BrokerKind::Kafka {
        return Ok(());
    }
    let (stages, want) = if wanting.len() == 1 { ("stage", "wants") } else { ("stages", "want") };
    Err(format!(
        "{stages} {} {want} `delivery: exactly_once`, which needs Kafka transactions, and the \
         embedded broker (librdkafka's mock cluster, started by `sluice dev` and `sluice demo`) \
         does not support them: it fences no zombie producer, writes no commit or abort markers, \
         and lets read-committed readers see aborted records. Run the topology on a real \
         broker — `sluice dev --broker apache` starts Apache Kafka on loopback, or point \
         KAFKA_BOOTSTRAP_SERVERS at a Kafka cluster (2.5 or later) — or set \
         `delivery: at_least_once`",
        wanting.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn only_exactly_once_stages_on_the_embedded_broker_are_refused_naming_each() {
        let mut t = crate::config::load(Path::new("topologies/support-rag.yaml")).expect("ships");
        assert_eq!(exactly_once_supported(BrokerKind::Embedded, &t.stages), Ok(()));
        let eo = crate::config::Delivery::ExactlyOnce(crate::config::Transactions {
            interval: std::time::Duration::from_millis(100),
            max_records: 1000,
        });
        t.stages[1].delivery = eo;
        t.stages[3].delivery = eo;
        assert_eq!(exactly_once_supported(BrokerKind::Kafka, &t.stages), Ok(()));
        let e = exactly_once_supported(BrokerKind::Embedded, &t.stages).unwrap_err();
        assert!(e.starts_with("stages 'embed', 'generate' want `delivery: exactly_once`"), "{e}");
        assert!(e.contains("--broker apache") && e.contains("at_least_once"), "{e}");
        let e = exactly_once_supported(BrokerKind::Embedded, &t.stages[..2]).unwrap_err();
        assert!(e.starts_with("stage 'embed' wants"), "{e}");
        assert_eq!(exactly_once_supported(BrokerKind::Embedded, &t.stages[..1]), Ok(()));
    }
}
