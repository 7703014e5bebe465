//! Moving records between JSON and Kafka for people: `sluice produce` (JSON lines → Avro) and
//! `sluice consume` (Avro → one JSON object per record, like `kcat -J`). The topic reader they
//! use is [`crate::kafka::reader`], re-exported here.

use std::time::Duration;

use apache_avro::types::Value;
use base64::Engine;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde_json::{json, Value as Json};

use crate::avro::{avro_to_json, json_to_avro, Codec, SchemaKind};
use crate::config::KafkaSettings;
use crate::kafka::producer_config;
pub use crate::kafka::reader::{read_topic, reader, RawRecord, Reader};

/// A JSON line that did not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct ProduceReport {
    pub produced: usize,
    pub bad: Vec<BadLine>,
}

/// Converts every line first, then produces the ones that fit and waits for every
/// acknowledgement. A line that does not fit is reported and skipped, never half-written.
/// Records are keyed by their `id` field when they have one. `progress` is called per ack.
pub async fn produce_json_lines(
    kafka: &KafkaSettings,
    codec: &Codec,
    topic: &str,
    kind: SchemaKind,
    text: &str,
    progress: impl Fn(usize, usize),
) -> Result<ProduceReport, KafkaError> {
    let mut report = ProduceReport::default();
    let mut ready = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let converted = serde_json::from_str::<Json>(line)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|j| json_to_avro(&j, kind.schema()).map(|v| (j, v)))
            .and_then(|(j, v)| codec.encode(topic, &v).map(|b| (j, b)).map_err(|e| e.to_string()));
        match converted {
            Ok((json, bytes)) => {
                ready.push((json.get("id").and_then(Json::as_str).map(str::to_owned), bytes))
            }
            Err(error) => report.bad.push(BadLine { line: n + 1, error }),
        }
    }
    let producer: FutureProducer = producer_config(kafka).create()?;
    let total = ready.len();
    let sends = ready.iter().map(|(key, bytes)| {
        let mut record = FutureRecord::to(topic).payload(bytes);
        if let Some(k) = key {
            record = record.key(k);
        }
        producer.send(record, Timeout::After(Duration::from_secs(30)))
    });
    let mut results = futures::stream::iter(sends).buffered(1024);
    use futures::StreamExt;
    while let Some(result) = results.next().await {
        result.map_err(|(e, _)| e)?;
        report.produced += 1;
        progress(report.produced, total);
    }
    producer.flush(Duration::from_secs(10))?;
    Ok(report)
}

/// One consumed record as JSON: coordinates, key, headers and the decoded value.
pub async fn record_json(codec: &Codec, m: &impl Message) -> Json {
    let headers: serde_json::Map<String, Json> = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|Header { key, value }| (key.to_owned(), value.map_or(Json::Null, bytes_json)))
                .collect()
        })
        .unwrap_or_default();
    let (schema_id, value) = match codec.decode_any(m.payload()).await {
        Ok((id, v)) => (Json::from(id), decoded_json(codec, v).await),
        Err(e) => {
            (Json::Null, json!({ "undecodable": e.to_string(), "base64": m.payload().map(b64) }))
        }
    };
    json!({
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": m.timestamp().to_millis(),
        "key": m.key().map(bytes_json),
        "headers": headers,
        "schema_id": schema_id,
        "value": value,
    })
}

/// A dead letter's original value is shown decoded when it decodes, as base64 when not.
async fn decoded_json(codec: &Codec, value: Value) -> Json {
    let mut json = avro_to_json(&value);
    if let Value::Record(fields) = &value {
        let original = fields.iter().find(|(k, _)| k == "original_value").map(|(_, v)| v);
        if let (Some(Value::Union(_, inner)), true) =
            (original, fields.iter().any(|(k, _)| k == "error_class"))
        {
            if let Value::Bytes(bytes) = inner.as_ref() {
                json["original_value"] = match codec.decode_any(Some(bytes)).await {
                    Ok((id, v)) => json!({ "schema_id": id, "decoded": avro_to_json(&v) }),
                    Err(e) => json!({ "undecodable": e.to_string(), "base64": b64(bytes) }),
                };
            }
        }
    }
    json
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// UTF-8 text as a string, anything else as `{"base64": …}`.
fn bytes_json(bytes: &[u8]) -> Json {
    match std::str::from_utf8(bytes) {
        Ok(s) => Json::String(s.to_owned()),
        Err(_) => json!({ "base64": b64(bytes) }),
    }
}
