//! Topic administration through the Kafka Admin API.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
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
    // A controller still coming up refuses with NotController & co: ask again (topics created
    // meanwhile answer TopicAlreadyExists and are kept).
    let created = std::sync::Mutex::new(Vec::new());
    let refused = std::sync::Mutex::new(String::new());
    let asked = super::ready::retry_async("creating topics", || async {
        for result in admin.create_topics(new, &options).await? {
            match result {
                Ok(name) => created.lock().expect("not poisoned").push(name),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    *refused.lock().expect("not poisoned") = topic;
                    return Err(KafkaError::AdminOp(code));
                }
            }
        }
        Ok(())
    })
    .await;
    match asked {
        Ok(()) => {}
        Err(e) => {
            let topic = refused.into_inner().expect("not poisoned");
            return Err(match e {
                KafkaError::AdminOp(code) if !topic.is_empty() => {
                    TopicAdminError::Topic { topic, error: code.to_string() }
                }
                e => e.into(),
            });
        }
    }
    let created = created.into_inner().expect("not poisoned");
    // CreateTopics returns before every partition has a leader everywhere: a client that reads
    // a new topic at once is told NotLeaderForPartition. Return when they are usable.
    let (settings, names) = (settings.clone(), created.clone());
    tokio::task::spawn_blocking(move || wait_for_leaders(&settings, &names))
        .await
        .expect("metadata thread does not panic")?;
    Ok(created)
}

/// Waits until every partition of `topics` has a leader that answers for its offsets (see
/// [`super::ready`]).
fn wait_for_leaders(settings: &KafkaSettings, topics: &[String]) -> Result<(), TopicAdminError> {
    if topics.is_empty() {
        return Ok(());
    }
    super::ready::topics_ready(settings, topics, super::ready::Missing::Refuse)
        .map_err(|e| TopicAdminError::Topic { topic: topics.join(", "), error: e.to_string() })
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
            schema: Some(SchemaKind::BudgetClaim),
        };
        let planned =
            [topic("p.budgets", TopicRole::BudgetLedger), topic("p.metering", TopicRole::Metering)];
        let new = new_topics(1, &planned);
        assert_eq!(new[0].config, vec![("retention.ms", "-1")]);
        assert!(new[1].config.is_empty());
    }
}
