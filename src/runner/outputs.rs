//! A record's outputs: encoding what the stage emitted, producing every output, and waiting for
//! every acknowledgement before the input counts as done. A produce error is classified: a
//! retriable one is retried with the same bytes (no second model call) while the input offset
//! stays unstored; an output the broker can never accept (too large, invalid) dead-letters the
//! input with the reason; an authorization or fencing error stops the worker.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::util::Timeout;

use super::inbound::Inbound;
use super::side_outputs::Letter;
use super::worker::{Disposition, Worker};
use crate::avro::{DeadLetterClass, SchemaKind};
use crate::call::CallLog;
use crate::retry::state::HeaderPair;
use crate::retry::{infrastructure_backoff, own_headers, RetryState};
use crate::shutdown::{Phase, Shutdown};
use crate::stage::{Emit, Stage};
use crate::telemetry::{self, Outcome, OutputRejected, ProduceRetry};

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<HeaderPair>,
}

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

async fn send(producer: &FutureProducer, r: &OutRecord) -> Result<(), KafkaError> {
    let span = telemetry::send_span(&r.topic);
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (key, value) in &r.headers {
        headers = headers.insert(Header { key, value: value.as_deref() });
    }
    let mut record = FutureRecord::to(&r.topic).payload(&r.payload).headers(headers);
    if let Some(k) = &r.key {
        record = record.key(k);
    }
    let delivered = producer.send(record, Timeout::After(Duration::from_secs(30))).await;
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

impl<S: Stage> Worker<S> {
    /// Encodes what the stage emitted for the topics of its ports.
    pub(super) fn encode(
        &self,
        inbound: &Inbound,
        state: &RetryState,
        emits: Vec<Emit>,
        log: &CallLog,
    ) -> Disposition {
        let headers = own_headers(&inbound.headers);
        let mut out = Vec::with_capacity(emits.len());
        for emit in emits {
            let Some(topic) = self.ports.get(&emit.port) else {
                return Disposition::Fatal(format!(
                    "stage '{}' emitted on {:?}, which it has no topic for",
                    self.spec.name, emit.port
                ));
            };
            let kind = self.codec.writer_kind(topic).unwrap_or(SchemaKind::Document);
            let encoded = emit
                .record
                .to_value(kind)
                .map_err(|e| e.to_string())
                .and_then(|v| self.codec.encode(topic, &v).map_err(|e| e.to_string()));
            match encoded {
                Ok(payload) => out.push(OutRecord {
                    topic: topic.clone(),
                    key: inbound
                        .message
                        .key()
                        .map(<[u8]>::to_vec)
                        .or_else(|| Some(emit.record.document.id.clone().into_bytes())),
                    payload,
                    headers: headers.clone(),
                }),
                Err(e) => {
                    let reason = format!("stage output does not fit the schema of '{topic}': {e}");
                    let class = DeadLetterClass::Permanent;
                    return self.dead_letter(inbound, state, class, &reason, Some(log));
                }
            }
        }
        Disposition::Outputs(out)
    }

    /// Produces a record's outputs and waits for their acknowledgements. Outputs the broker
    /// refuses for good are replaced by a dead letter of the input (cost events already
    /// acknowledged stay: the calls were made).
    pub(super) async fn deliver(&self, inbound: &Inbound, outputs: Vec<OutRecord>) -> Delivered {
        let dead = outputs.iter().any(|r| r.topic == self.spec.dead_letter_topic);
        let refused = match produce_all(&self.producer, &outputs, &self.shutdown).await {
            Produced::Acked => {
                return Delivered::Acked(if dead { Outcome::DeadLettered } else { Outcome::Ok })
            }
            Produced::Stopped => return Delivered::Stopped,
            Produced::Refused(refused) => refused,
        };
        let mut reasons = Vec::new();
        for (r, kind, error) in &refused {
            OutputRejected { stage: &self.spec.name, topic: &r.topic, error }.emit();
            let stop = *kind == ProduceFailure::Stop
                || r.topic == self.metering_topic
                || r.topic == self.spec.dead_letter_topic;
            if stop {
                return Delivered::Fatal(format!(
                    "the broker refuses records for '{}': {error}",
                    r.topic
                ));
            }
            reasons.push(format!("output to '{}' refused by the broker: {error}", r.topic));
        }
        let (state, reason) = (inbound.state_or_fresh(), reasons.join("; "));
        let letter = self.letter(inbound, &state, DeadLetterClass::Permanent, &reason, None);
        let refusal = match self.send_letter(letter).await {
            Ok(delivered) => return delivered,
            Err(refusal) => refusal,
        };
        // Too large with the input's bytes: send it without them (the record stays at its
        // original coordinates, which the dead letter names).
        let mut letter = self.letter(inbound, &state, DeadLetterClass::Permanent, &reason, None);
        letter.envelope.original_value = None;
        letter.envelope.error_message += &format!("; original value omitted: {refusal}");
        match self.send_letter(letter).await {
            Ok(delivered) => delivered,
            Err(refusal) => Delivered::Fatal(format!(
                "the broker refuses dead letters on '{}': {refusal}",
                self.spec.dead_letter_topic
            )),
        }
    }

    /// Produces a dead letter; `Err` with the broker's reason if it refuses it for good.
    async fn send_letter(&self, letter: Letter) -> Result<Delivered, String> {
        let record = match self.letter_record(letter) {
            Ok(record) => record,
            Err(reason) => return Ok(Delivered::Fatal(reason)),
        };
        match produce_all(&self.producer, std::slice::from_ref(&record), &self.shutdown).await {
            Produced::Acked => Ok(Delivered::Acked(Outcome::DeadLettered)),
            Produced::Stopped => Ok(Delivered::Stopped),
            Produced::Refused(r) => Err(r[0].2.clone()),
        }
    }
}
