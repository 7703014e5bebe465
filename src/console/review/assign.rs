//! Where a review queue starts reading: the needs-human partitions at the queue group's
//! commits (waiting out a group coordinator a fresh broker is still loading), a missing topic
//! named, and how many partitions a topic has. Blocking calls, each within [`TIMEOUT`].

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::queue::QueueState;
use super::topics::QueueTopics;

/// How long every blocking metadata or offset request may take.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
    #[error(transparent)]
    Claims(#[from] crate::kafka::ledger::LedgerError),
    #[error(
        "topic '{0}' does not exist: create the topology's topics (`sluice topics create`; \
         `sluice dev` creates them)"
    )]
    MissingTopic(String),
}

/// Assigns the needs-human partitions at the group's commits (blocking); checks that the
/// claims topic exists (the ledger reads it).
pub(super) fn assign(
    consumer: &StreamConsumer,
    topics: &QueueTopics,
    capacity: usize,
) -> Result<QueueState, QueueError> {
    let timeout = TIMEOUT;
    partitions_of(consumer, &topics.claims)?;
    let partitions = partitions_of(consumer, &topics.needs_human)?;
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(&topics.needs_human, p);
    }
    let committed = committed_offsets(consumer, &wanted)?;
    let mut state = QueueState::new(capacity);
    let mut tpl = TopicPartitionList::new();
    for e in committed.elements() {
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => consumer.fetch_watermarks(&topics.needs_human, e.partition(), timeout)?.0,
        };
        state.committed.insert(e.partition(), at);
        tpl.add_partition_offset(&topics.needs_human, e.partition(), Offset::Offset(at))?;
    }
    consumer.assign(&tpl)?;
    Ok(state)
}

/// The group's commits, waiting (up to a minute, with the backoff of [`crate::retry`]) while a
/// fresh broker still loads or elects the group's coordinator (blocking).
fn committed_offsets(
    consumer: &StreamConsumer,
    wanted: &TopicPartitionList,
) -> Result<TopicPartitionList, KafkaError> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    let mut waits = crate::retry::infrastructure_backoff();
    loop {
        match consumer.committed_offsets(wanted.clone(), TIMEOUT) {
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        Code::NotCoordinator
                            | Code::CoordinatorLoadInProgress
                            | Code::CoordinatorNotAvailable
                    )
                ) && std::time::Instant::now() < give_up =>
            {
                std::thread::sleep(waits.next().unwrap_or(Duration::from_secs(1)));
            }
            other => return other,
        }
    }
}

/// How many partitions `topic` has; a missing topic is an error naming it (blocking).
pub(super) fn partitions_of(consumer: &StreamConsumer, topic: &str) -> Result<i32, QueueError> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    match metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32 {
        0 => Err(QueueError::MissingTopic(topic.to_owned())),
        n => Ok(n),
    }
}
