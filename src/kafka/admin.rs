//! Topic administration through the Kafka Admin API.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::admin_config;
use crate::config::{KafkaSettings, PlannedTopic};

#[derive(Debug, thiserror::Error)]
pub enum TopicAdminError {
    #[error("kafka admin request failed: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic '{topic}': {error}")]
    Topic { topic: String, error: String },
}

/// Creates the topics that do not exist yet, with the broker's default topic configs; returns
/// the names it created.
pub async fn create_topics(
    settings: &KafkaSettings,
    topics: &[(String, i32)],
) -> Result<Vec<String>, TopicAdminError> {
    let replication = || TopicReplication::Fixed(settings.replication_factor);
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, replication()))
        .collect();
    create(settings, &new).await
}

/// Creates the topology's topics that do not exist yet, each with the topic configs its role
/// needs (see [`TopicRole::configs`](crate::config::TopicRole::configs)); returns the names it
/// created. An existing topic's configs are left as they are.
pub async fn create_planned_topics(
    settings: &KafkaSettings,
    topics: &[PlannedTopic],
) -> Result<Vec<String>, TopicAdminError> {
    create(settings, &new_topics(settings.replication_factor, topics)).await
}

/// The create requests for planned topics.
fn new_topics(replication_factor: i32, topics: &[PlannedTopic]) -> Vec<NewTopic<'_>> {
    topics
        .iter()
        .map(|t| {
            let replication = TopicReplication::Fixed(replication_factor);
            let new = NewTopic::new(&t.name, t.partitions, replication);
            t.role.configs().iter().fold(new, |new, (key, value)| new.set(key, value))
        })
        .collect()
}

async fn create(
    settings: &KafkaSettings,
    new: &[NewTopic<'_>],
) -> Result<Vec<String>, TopicAdminError> {
    let admin: AdminClient<DefaultClientContext> = admin_config(settings).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut created = Vec::new();
    for result in admin.create_topics(new, &options).await? {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicAdminError::Topic { topic, error: code.to_string() })
            }
        }
    }
    // CreateTopics returns before every partition has a leader everywhere: a client that reads
    // a new topic at once is told NotLeaderForPartition. Return when they are usable.
    let (settings, names) = (settings.clone(), created.clone());
    tokio::task::spawn_blocking(move || wait_for_leaders(&settings, &names))
        .await
        .expect("metadata thread does not panic")?;
    Ok(created)
}

/// Waits (up to 30 s) until every partition of `topics` has a leader in the cluster's metadata.
fn wait_for_leaders(settings: &KafkaSettings, topics: &[String]) -> Result<(), TopicAdminError> {
    if topics.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer = admin_config(settings).create()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut waits = crate::retry::infrastructure_backoff();
    for topic in topics {
        loop {
            let ready = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics().first().map(|t| {
                        t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(TopicAdminError::Topic {
                    topic: topic.clone(),
                    error: "created, but its partitions have no leader after 30 s".into(),
                });
            }
            std::thread::sleep(waits.next().unwrap_or(Duration::from_secs(1)));
        }
    }
    Ok(())
}

/// Names and partition counts of the topics that exist on the cluster.
pub fn existing_topics(settings: &KafkaSettings) -> Result<Vec<(String, usize)>, TopicAdminError> {
    let consumer: BaseConsumer = admin_config(settings).create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(metadata.topics().iter().map(|t| (t.name().to_owned(), t.partitions().len())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::SchemaKind;
    use crate::config::TopicRole;

    #[test]
    fn planned_topics_are_created_with_their_roles_configs() {
        let topic = |name: &str, role| PlannedTopic {
            name: name.to_owned(),
            role,
            partitions: 1,
            schema: SchemaKind::BudgetClaim,
        };
        let planned =
            [topic("p.budgets", TopicRole::BudgetLedger), topic("p.metering", TopicRole::Metering)];
        let new = new_topics(1, &planned);
        assert_eq!(new[0].config, vec![("retention.ms", "-1")]);
        assert!(new[1].config.is_empty());
    }
}
