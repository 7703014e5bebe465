//! Reads the metering topic back. Anything on the topic is input from whoever can produce to it:
//! a record that is not a cost event (not Avro, another schema, a value that does not fit) is
//! skipped and counted — never a reason to stop reading — while an unreachable schema registry
//! is an error (the record may be fine; skipping it would under-count).

use super::CostEvent;
use crate::avro::{Codec, CodecError, SchemaKind};
use crate::config::Topology;
use crate::kafka::reader::{read_topic, RawRecord};
use crate::kafka::registry_settings;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
    #[error("metering record at {partition}:{offset}: {message}")]
    Decode { partition: i32, offset: i64, message: String },
}

/// Cost events read back, and the records skipped because they are not cost events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metering {
    pub events: Vec<CostEvent>,
    pub skipped: Skipped,
}

/// Records of the metering topic that are not cost events.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub count: u64,
    /// The first one skipped, `partition/offset: why`, for the operator to look at.
    pub first: Option<String>,
}

impl Skipped {
    pub fn add(&mut self, partition: i32, offset: i64, why: &str) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(format!("{partition}:{offset}: {why}"));
        }
    }

    pub fn merge(&mut self, other: &Skipped) {
        self.count += other.count;
        if self.first.is_none() {
            self.first.clone_from(&other.first);
        }
    }
}

/// Every cost event on the topology's metering topic (duplicates included), oldest first per
/// partition; records that are not cost events are skipped and counted.
pub async fn read_metering(t: &Topology) -> Result<Metering, ReadError> {
    let codec = Codec::connect(&registry_settings(t), &[]).await?;
    let raw = read_topic(&t.kafka, &t.metering_topic).await?;
    decode_events(&codec, raw).await
}

/// [`read_metering`]'s events alone (the skipped records are left out, uncounted).
pub async fn read_events(t: &Topology) -> Result<Vec<CostEvent>, ReadError> {
    Ok(read_metering(t).await?.events)
}

/// Decodes raw metering records: cost events kept, anything else skipped and counted. Only an
/// unreachable registry fails the read.
pub async fn decode_events(
    codec: &Codec,
    raw: impl IntoIterator<Item = RawRecord>,
) -> Result<Metering, ReadError> {
    let mut out = Metering::default();
    for (partition, offset, _key, payload) in raw {
        match decode_event(codec, payload.as_deref()).await {
            Ok(e) => out.events.push(e),
            Err(e) if e.is_retryable() => {
                return Err(ReadError::Decode { partition, offset, message: e.to_string() })
            }
            Err(e) => out.skipped.add(partition, offset, &e.to_string()),
        }
    }
    Ok(out)
}

/// One record as a cost event: written with the cost event schema, and fitting it.
pub async fn decode_event(codec: &Codec, payload: Option<&[u8]>) -> Result<CostEvent, CodecError> {
    let decoded = codec.decode(payload).await?;
    if decoded.kind != SchemaKind::CostEvent {
        let kind = decoded.kind.full_name();
        return Err(CodecError::Malformed(format!("a {kind} record, not a cost event")));
    }
    CostEvent::from_value(&decoded.value)
        .map_err(|e| CodecError::Malformed(format!("not a cost event: {e}")))
}
