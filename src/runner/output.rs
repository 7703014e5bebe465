//! Building and producing a record's outputs. Every output — next topic, dead letter — is produced
//! and acknowledged before the input counts as done; a failed produce is retried (the same bytes,
//! no second model call) until it succeeds or the worker stops, and the input offset stays
//! unstored meanwhile.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use super::retry_state::{is_retry_header, RetryState};
use crate::avro::{DeadLetter, DeadLetterClass};
use crate::config::StageSpec;
use crate::retry::infrastructure_backoff;
use crate::shutdown::{Phase, Shutdown};
use crate::telemetry::ProduceRetry;

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The input's headers, carried to every output (W3C `traceparent` among them).
pub fn carried_headers(message: &OwnedMessage) -> Vec<(String, Vec<u8>)> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .filter_map(|Header { key, value }| value.map(|v| (key.to_owned(), v.to_vec())))
                .collect()
        })
        .unwrap_or_default()
}

/// The dead-letter envelope for `message`, plus the origin and error headers Kafka Connect and
/// Spring Kafka write, so their tooling can read sluice's dead letters.
pub fn dead_letter(
    spec: &StageSpec,
    pipeline: &str,
    message: &OwnedMessage,
    state: &RetryState,
    class: DeadLetterClass,
    reason: &str,
) -> (DeadLetter, Vec<(String, Vec<u8>)>) {
    let original_headers: Vec<(String, Option<Vec<u8>>)> = message
        .headers()
        .map(|h| {
            h.iter()
                .filter(|Header { key, .. }| !is_retry_header(key))
                .map(|Header { key, value }| (key.to_owned(), value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    let origin = &state.origin;
    let envelope = DeadLetter {
        pipeline: pipeline.to_owned(),
        stage: spec.name.clone(),
        consumer_group: spec.group.clone(),
        original_topic: origin.topic.clone(),
        original_partition: origin.partition,
        original_offset: origin.offset,
        original_timestamp_ms: origin.timestamp_ms,
        original_key: message.key().map(<[u8]>::to_vec),
        original_value: state
            .redacted_value
            .clone()
            .or_else(|| message.payload().map(<[u8]>::to_vec)),
        original_headers,
        error_class: class,
        error_message: reason.to_owned(),
        attempts: state.history.clone(),
        failed_at_ms: now_ms(),
        model: None,
        prompt_version: None,
    };
    let mut headers: Vec<(String, Vec<u8>)> =
        carried_headers(message).into_iter().filter(|(k, _)| !is_retry_header(k)).collect();
    let exception = format!("sluice.{}", class.symbol());
    headers.extend([
        ("__connect.errors.topic".to_owned(), origin.topic.as_bytes().to_vec()),
        ("__connect.errors.partition".to_owned(), origin.partition.to_string().into_bytes()),
        ("__connect.errors.offset".to_owned(), origin.offset.to_string().into_bytes()),
        ("__connect.errors.exception.class.name".to_owned(), exception.clone().into_bytes()),
        ("__connect.errors.exception.message".to_owned(), reason.as_bytes().to_vec()),
        ("kafka_dlt-original-topic".to_owned(), origin.topic.as_bytes().to_vec()),
        ("kafka_dlt-original-partition".to_owned(), origin.partition.to_be_bytes().to_vec()),
        ("kafka_dlt-original-offset".to_owned(), origin.offset.to_be_bytes().to_vec()),
        ("kafka_dlt-original-consumer-group".to_owned(), spec.group.as_bytes().to_vec()),
        ("kafka_dlt-exception-fqcn".to_owned(), exception.into_bytes()),
        ("kafka_dlt-exception-message".to_owned(), reason.as_bytes().to_vec()),
    ]);
    (envelope, headers)
}

async fn send(producer: &FutureProducer, r: &OutRecord) -> Result<(), String> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        headers = headers.insert(Header { key: k, value: Some(v) });
    }
    let mut record = FutureRecord::to(&r.topic).payload(&r.payload).headers(headers);
    if let Some(k) = &r.key {
        record = record.key(k);
    }
    producer
        .send(record, Timeout::After(Duration::from_secs(30)))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

/// Produces every record and waits for all acknowledgements; retries failures with backoff.
/// Returns false if the worker stopped before every record was acknowledged.
pub async fn produce_all(
    producer: &FutureProducer,
    records: &[OutRecord],
    shutdown: &Shutdown,
) -> bool {
    let mut pending: Vec<&OutRecord> = records.iter().collect();
    let mut backoff = infrastructure_backoff();
    loop {
        let results = join_all(pending.iter().map(|r| send(producer, r))).await;
        let failed: Vec<(&OutRecord, String)> =
            pending.iter().zip(results).filter_map(|(r, res)| res.err().map(|e| (*r, e))).collect();
        if failed.is_empty() {
            return true;
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
        for (r, e) in &failed {
            ProduceRetry { topic: &r.topic, error: e, delay }.emit();
        }
        pending = failed.into_iter().map(|(r, _)| r).collect();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.reached(Phase::Stopped) => return false,
        }
    }
}
