//! Moving records between JSON and Kafka for people: `sluice produce` (JSON lines → Avro) and
//! `sluice consume` (Avro → one JSON object per record, like `kcat -J`).

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value as Json};

use crate::avro::{avro_to_json, json_to_avro, Codec, SchemaKind};
use crate::config::KafkaSettings;
use crate::kafka::{producer_config, reader_config};

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

/// A standalone consumer over every partition of some topics.
pub struct Reader {
    pub consumer: BaseConsumer,
    /// Per partition with records to read at the start: the high watermark then.
    ends: HashMap<(String, i32), i64>,
}

/// A reader assigned to every partition of `topics`, from the beginning or the end.
pub fn reader(
    kafka: &KafkaSettings,
    topics: &[&str],
    from_beginning: bool,
) -> Result<Reader, KafkaError> {
    let consumer: BaseConsumer = reader_config(kafka).create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    let start = if from_beginning { Offset::Beginning } else { Offset::End };
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
        if partitions == 0 {
            return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
        }
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, start)?;
            let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            if from_beginning && high > low {
                ends.insert(((*topic).to_owned(), p), high);
            }
        }
    }
    consumer.assign(&tpl)?;
    Ok(Reader { consumer, ends })
}

impl Reader {
    /// Reads up to `max` records, calling `each` per record until it returns false. With
    /// `stop_at_end`, stops once every partition reached the end it had when the reader started.
    /// Stops after `idle_timeout` without a record, or as soon as `stop()` says so.
    pub fn drain<F: FnMut(&rdkafka::message::BorrowedMessage<'_>) -> bool>(
        &self,
        max: Option<usize>,
        stop_at_end: bool,
        idle_timeout: Duration,
        stop: impl Fn() -> bool,
        mut each: F,
    ) -> Result<usize, KafkaError> {
        let mut remaining = self.ends.clone();
        let mut seen = 0;
        let mut idle_since = std::time::Instant::now();
        // A transient error event (a broker of several down, a leader moving) is not the end:
        // librdkafka recovers on its own. It is returned only if the reader then goes idle
        // before reaching the ends it was asked to read to.
        let mut last_error = None;
        loop {
            if max.is_some_and(|m| seen >= m) || (stop_at_end && remaining.is_empty()) || stop() {
                return Ok(seen);
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {
                    if idle_since.elapsed() >= idle_timeout {
                        return match last_error.take() {
                            Some(e) if stop_at_end && !remaining.is_empty() => Err(e),
                            _ => Ok(seen),
                        };
                    }
                }
                Some(Err(e)) if is_permanent(&e) => return Err(e),
                Some(Err(e)) => last_error = Some(e),
                Some(Ok(m)) => {
                    idle_since = std::time::Instant::now();
                    let tp = (m.topic().to_owned(), m.partition());
                    if remaining.get(&tp).is_some_and(|end| m.offset() + 1 >= *end) {
                        remaining.remove(&tp);
                    }
                    seen += 1;
                    if !each(&m) {
                        return Ok(seen);
                    }
                }
            }
        }
    }
}

/// Errors a reader cannot outwait: the topic is gone, or this client may not read it.
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::MessageConsumption(code) | KafkaError::MetadataFetch(code) => *code,
        KafkaError::Global(code) => *code,
        _ => return true,
    };
    matches!(
        code,
        C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::Fatal
    )
}

/// One record as read: partition, offset, key and value bytes.
pub type RawRecord = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of `topic` from the beginning to the end it had when the read began, undecoded,
/// read on a blocking thread.
pub async fn read_topic(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<Vec<RawRecord>, KafkaError> {
    let (kafka, name) = (settings.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let r = reader(&kafka, &[name.as_str()], true)?;
        let mut out = Vec::new();
        r.drain(
            None,
            true,
            Duration::from_secs(10),
            || false,
            |m| {
                let key = m.key().map(<[u8]>::to_vec);
                out.push((m.partition(), m.offset(), key, m.payload().map(<[u8]>::to_vec)));
                true
            },
        )?;
        Ok(out)
    })
    .await
    .expect("the reader thread does not panic")
}
