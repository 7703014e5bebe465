//! Reads the metering topic back: every cost event from the beginning to the current end.

use super::CostEvent;
use crate::avro::Codec;
use crate::config::Topology;
use crate::kafka::registry_settings;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
    #[error("metering record at {partition}/{offset}: {message}")]
    Decode { partition: i32, offset: i64, message: String },
}

/// Every cost event on the topology's metering topic (duplicates included), oldest first per
/// partition.
pub async fn read_events(t: &Topology) -> Result<Vec<CostEvent>, ReadError> {
    let codec = Codec::connect(&registry_settings(t), &[]).await?;
    let raw = crate::records_io::read_topic(&t.kafka, &t.metering_topic).await?;
    let mut events = Vec::with_capacity(raw.len());
    for (partition, offset, _key, payload) in raw {
        let fail = |message: String| ReadError::Decode { partition, offset, message };
        let (_, value) =
            codec.decode_any(payload.as_deref()).await.map_err(|e| fail(e.to_string()))?;
        events.push(CostEvent::from_value(&value).map_err(|e| fail(e.to_string()))?);
    }
    Ok(events)
}
