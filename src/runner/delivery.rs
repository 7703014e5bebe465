//! Producing a record's outputs and waiting for every acknowledgement before the input counts as
//! done. A produce error is classified: a retriable one is retried with the same bytes (no
//! second model call) while the input offset stays unstored; a record the broker can never
//! accept (too large, invalid) is reported back as refused; an authorization or fencing error
//! stops the worker.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::util::Timeout;

use super::disposition::OutRecord;
use crate::retry::infrastructure_backoff;
use crate::shutdown::{Phase, Shutdown};
use crate::telemetry::{self, Outcome, ProduceRetry};

/// What a produce error means for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceFailure {
    /// Transient (leader moves, timeouts, a broker down): send the same bytes again.
    Retry,
    /// This record can never be accepted (too large, invalid): dead-letter the input.
    Refused,
    /// Nothing this producer sends will be accepted until an operator acts.
    Stop,
}

pub fn classify(e: &KafkaError) -> ProduceFailure {
    let code = match e {
        KafkaError::MessageProduction(code) => *code,
        _ => return ProduceFailure::Retry,
    };
    match code {
        Code::MessageSizeTooLarge
        | Code::InvalidMessageSize
        | Code::InvalidRecord
        | Code::InvalidTopic => ProduceFailure::Refused,
        Code::TopicAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::Fatal
        | Code::ProducerFenced => ProduceFailure::Stop,
        _ => ProduceFailure::Retry,
    }
}

/// How producing a set of records ended.
pub enum Produced<'r> {
    /// Every record acknowledged.
    Acked,
    /// Every record acknowledged except these, which the broker will never accept.
    Refused(Vec<(&'r OutRecord, ProduceFailure, String)>),
    /// The worker stopped first.
    Stopped,
}

pub(super) fn future_record(r: &OutRecord) -> FutureRecord<'_, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (key, value) in &r.headers {
        headers = headers.insert(Header { key, value: value.as_deref() });
    }
    let mut record = FutureRecord::to(&r.topic).payload(r.payload.as_slice()).headers(headers);
    if let Some(k) = &r.key {
        record = record.key(k.as_slice());
    }
    record
}

async fn send(producer: &FutureProducer, r: &OutRecord) -> Result<(), KafkaError> {
    let span = telemetry::send_span(&r.topic);
    let delivered = producer.send(future_record(r), Timeout::After(Duration::from_secs(30))).await;
    telemetry::sent(&span, delivered.as_ref().map(|d| (d.partition, d.offset)).map_err(|(e, _)| e));
    delivered.map(|_| ()).map_err(|(e, _)| e)
}

/// Produces every record and waits for all acknowledgements, retrying transient failures with
/// backoff until they succeed or the worker stops.
pub async fn produce_all<'r>(
    producer: &FutureProducer,
    records: &'r [OutRecord],
    shutdown: &Shutdown,
) -> Produced<'r> {
    let mut pending: Vec<&OutRecord> = records.iter().collect();
    let mut refused = Vec::new();
    let mut backoff = infrastructure_backoff();
    loop {
        let results = join_all(pending.iter().map(|r| send(producer, r))).await;
        let mut failed = Vec::new();
        for (r, result) in pending.into_iter().zip(results) {
            let Err(e) = result else { continue };
            match classify(&e) {
                ProduceFailure::Retry => failed.push((r, e.to_string())),
                kind => refused.push((r, kind, e.to_string())),
            }
        }
        if failed.is_empty() {
            return if refused.is_empty() { Produced::Acked } else { Produced::Refused(refused) };
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
        for (r, e) in &failed {
            ProduceRetry { topic: &r.topic, error: e, delay }.emit();
        }
        pending = failed.into_iter().map(|(r, _)| r).collect();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.reached(Phase::Stopped) => return Produced::Stopped,
        }
    }
}

/// How delivering a record's outputs ended.
pub enum Delivered {
    Acked(Outcome),
    Stopped,
    Fatal(String),
}

/// Hands records to the producer without waiting for them: for cost events of a record that will
/// not finish here (the worker stops, or stopped first), which must be metered all the same.
/// The run's final flush delivers them; `Err` names what could not even be queued.
pub fn enqueue(producer: &FutureProducer, records: &[OutRecord]) -> Result<(), String> {
    let mut errors = Vec::new();
    for r in records {
        if let Err((e, _)) = producer.send_result(future_record(r)) {
            errors.push(format!("'{}': {e}", r.topic));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
