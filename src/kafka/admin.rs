//! Topic administration through the Kafka Admin API.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::admin_config;
use crate::config::KafkaSettings;

#[derive(Debug, thiserror::Error)]
pub enum TopicAdminError {
    #[error("kafka admin request failed: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic '{topic}': {error}")]
    Topic { topic: String, error: String },
}

/// Creates the topics that do not exist yet; returns the names it created.
pub async fn create_topics(
    settings: &KafkaSettings,
    topics: &[(String, i32)],
) -> Result<Vec<String>, TopicAdminError> {
    let admin: AdminClient<DefaultClientContext> = admin_config(settings).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(settings.replication_factor))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut created = Vec::new();
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicAdminError::Topic { topic, error: code.to_string() })
            }
        }
    }
    Ok(created)
}

/// Names and partition counts of the topics that exist on the cluster.
pub fn existing_topics(settings: &KafkaSettings) -> Result<Vec<(String, usize)>, TopicAdminError> {
    let consumer: BaseConsumer = admin_config(settings).create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(metadata.topics().iter().map(|t| (t.name().to_owned(), t.partitions().len())).collect())
}
