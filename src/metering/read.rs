//! Reads the metering topic back: every cost event from the beginning to the current end.

use std::time::Duration;

use rdkafka::message::Message;

use super::CostEvent;
use crate::avro::Codec;
use crate::config::Topology;
use crate::kafka::registry_settings;
use crate::records_io::reader;

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
    let (kafka, topic) = (t.kafka.clone(), t.metering_topic.clone());
    let raw = tokio::task::spawn_blocking(move || -> Result<_, rdkafka::error::KafkaError> {
        let r = reader(&kafka, &[topic.as_str()], true)?;
        let mut out = Vec::new();
        r.drain(
            None,
            true,
            Duration::from_secs(10),
            || false,
            |m| {
                out.push((m.partition(), m.offset(), m.payload().map(<[u8]>::to_vec)));
                true
            },
        )?;
        Ok(out)
    })
    .await
    .expect("reader thread does not panic")?;
    let mut events = Vec::with_capacity(raw.len());
    for (partition, offset, payload) in raw {
        let fail = |message: String| ReadError::Decode { partition, offset, message };
        let (_, value) =
            codec.decode_any(payload.as_deref()).await.map_err(|e| fail(e.to_string()))?;
        events.push(CostEvent::from_value(&value).map_err(|e| fail(e.to_string()))?);
    }
    Ok(events)
}
