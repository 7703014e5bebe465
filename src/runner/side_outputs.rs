//! Where a record goes when it does not simply succeed — the next rung of the retry ladder, the
//! deferred topic (over budget), the dead-letter topic — and the cost events that accompany
//! every disposition. The dead letter is built here and nowhere else.

use rdkafka::message::Message;

use super::inbound::Inbound;
use super::outputs::OutRecord;
use super::worker::{Disposition, Worker};
use crate::avro::{DeadLetter, DeadLetterClass, Envelope, SchemaKind};
use crate::call::{now_ms, CallLog};
use crate::pii::Redactor;
use crate::retry::state::HeaderPair;
use crate::retry::{own_headers, RetryState};
use crate::stage::Stage;
use crate::telemetry::{CostEventUnencodable, DeadLettered, RecordDeferred, RetryScheduled};

/// A dead letter before encoding: the envelope and the headers its record carries.
pub(super) struct Letter {
    pub envelope: DeadLetter,
    pub headers: Vec<HeaderPair>,
    pub key: Option<Vec<u8>>,
}

impl<S: Stage> Worker<S> {
    /// The record's original key, bytes and headers plus `headers` (its retry state).
    fn parked(&self, inbound: &Inbound, topic: &str, headers: Vec<HeaderPair>) -> Disposition {
        let m = &inbound.message;
        Disposition::Outputs(vec![OutRecord {
            topic: topic.to_owned(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        }])
    }

    /// Parks the record on rung `rung` of the retry ladder, due at `due_ms`.
    pub(super) fn to_rung(
        &self,
        inbound: &Inbound,
        state: &RetryState,
        rung: usize,
        topic: &str,
        due_ms: i64,
    ) -> Disposition {
        RetryScheduled { stage: &self.spec.name, topic, rung }.emit();
        self.parked(inbound, topic, state.headers_at(&inbound.headers, rung, due_ms, now_ms()))
    }

    /// Parks the record on the stage's deferred topic until `due_ms` (its tenant's next budget
    /// window): same rung, no attempt spent.
    pub(super) fn to_deferred(
        &self,
        inbound: &Inbound,
        state: &RetryState,
        due_ms: i64,
        reason: &str,
    ) -> Disposition {
        RecordDeferred { stage: &self.spec.name, reason, due_ms }.emit();
        let headers = state.headers_at(&inbound.headers, state.rung, due_ms, now_ms());
        self.parked(inbound, &self.spec.deferred_topic, headers)
    }

    /// The record with its document text redacted, in the input topic's own schema.
    pub(super) fn redacted(
        &self,
        inbound: &Inbound,
        input: &Envelope,
        r: &Redactor,
    ) -> Option<Vec<u8>> {
        let topic = inbound.message.topic();
        let mut clean = input.clone();
        clean.document.content = r.clean(&clean.document.content);
        if let Some(a) = clean.answer.as_mut() {
            a.text = r.clean(&a.text);
        }
        let kind = self.codec.writer_kind(topic).unwrap_or(SchemaKind::Document);
        let value = clean.to_value(kind).ok()?;
        self.codec.encode(topic, &value).ok()
    }

    /// The dead letter of a record, with the origin and error headers Kafka Connect and Spring
    /// Kafka write so their tooling can read it. On a redacting stage, error texts are redacted
    /// and the value is the redacted re-encoding — or withheld when there is none (the record
    /// stays at its original coordinates), except for bytes that never decoded.
    pub(super) fn letter(
        &self,
        inbound: &Inbound,
        state: &RetryState,
        class: DeadLetterClass,
        reason: &str,
        log: Option<&CallLog>,
    ) -> Letter {
        let (reason, history) = match &self.redactor {
            Some(r) => {
                let mut history = state.history.clone();
                history.iter_mut().for_each(|a| a.message = r.clean(&a.message));
                (r.clean(reason), history)
            }
            None => (reason.to_owned(), state.history.clone()),
        };
        let m = &inbound.message;
        let raw = m.payload().map(<[u8]>::to_vec);
        let value = match (&state.redacted_value, &self.redactor, class) {
            (Some(redacted), _, _) => Some(redacted.clone()),
            (None, Some(_), c) if c != DeadLetterClass::Decode => None,
            _ => raw,
        };
        let origin = &state.origin;
        let own = own_headers(&inbound.headers);
        let (model, prompt_version) = log.and_then(CallLog::last_call).unzip();
        let prompt_version = prompt_version.flatten();
        let envelope = DeadLetter {
            pipeline: self.pipeline.clone(),
            stage: self.spec.name.clone(),
            consumer_group: self.spec.group.clone(),
            original_topic: origin.topic.clone(),
            original_partition: origin.partition,
            original_offset: origin.offset,
            original_timestamp_ms: origin.timestamp_ms,
            original_key: m.key().map(<[u8]>::to_vec),
            original_value: value,
            original_headers: own.clone(),
            error_class: class,
            error_message: reason.clone(),
            attempts: history,
            failed_at_ms: now_ms(),
            model,
            prompt_version,
        };
        let exception = format!("sluice.{}", class.symbol());
        let text = |s: &str| Some(s.as_bytes().to_vec());
        let mut headers = own;
        headers.extend([
            ("__connect.errors.topic".to_owned(), text(&origin.topic)),
            ("__connect.errors.partition".to_owned(), text(&origin.partition.to_string())),
            ("__connect.errors.offset".to_owned(), text(&origin.offset.to_string())),
            ("__connect.errors.exception.class.name".to_owned(), text(&exception)),
            ("__connect.errors.exception.message".to_owned(), text(&reason)),
            ("kafka_dlt-original-topic".to_owned(), text(&origin.topic)),
            (
                "kafka_dlt-original-partition".to_owned(),
                Some(origin.partition.to_be_bytes().to_vec()),
            ),
            ("kafka_dlt-original-offset".to_owned(), Some(origin.offset.to_be_bytes().to_vec())),
            ("kafka_dlt-original-consumer-group".to_owned(), text(&self.spec.group)),
            ("kafka_dlt-exception-fqcn".to_owned(), text(&exception)),
            ("kafka_dlt-exception-message".to_owned(), text(&reason)),
        ]);
        Letter { envelope, headers, key: m.key().map(<[u8]>::to_vec) }
    }

    /// Encodes a dead letter for the dead-letter topic.
    pub(super) fn letter_record(&self, letter: Letter) -> Result<OutRecord, String> {
        let topic = &self.spec.dead_letter_topic;
        let payload = self
            .codec
            .encode(topic, &letter.envelope.to_value())
            .map_err(|e| format!("cannot encode a dead letter: {e}"))?;
        Ok(OutRecord { topic: topic.clone(), key: letter.key, payload, headers: letter.headers })
    }

    /// Dead-letters the record: its outputs are the dead letter alone.
    pub(super) fn dead_letter(
        &self,
        inbound: &Inbound,
        state: &RetryState,
        class: DeadLetterClass,
        reason: &str,
        log: Option<&CallLog>,
    ) -> Disposition {
        let letter = self.letter(inbound, state, class, reason, log);
        let e = &letter.envelope;
        DeadLettered {
            stage: &self.spec.name,
            topic: &e.original_topic,
            partition: e.original_partition,
            offset: e.original_offset,
            class: class.symbol(),
            reason: &e.error_message,
        }
        .emit();
        match self.letter_record(letter) {
            Ok(record) => Disposition::Outputs(vec![record]),
            Err(reason) => Disposition::Fatal(reason),
        }
    }

    /// Adds the cost events of the record's model calls to its outputs: the offset waits for
    /// their acknowledgement too. An event that cannot be encoded stops the worker (the record
    /// stays unfinished) rather than lose a billed call.
    pub(super) fn with_cost_events(
        &self,
        mut outputs: Vec<OutRecord>,
        inbound: &Inbound,
        log: &CallLog,
    ) -> Disposition {
        let topic = &self.metering_topic;
        let trace: Vec<HeaderPair> = inbound
            .traceparent()
            .map(|v| ("traceparent".to_owned(), Some(v.to_vec())))
            .into_iter()
            .collect();
        for event in log.take() {
            let encoded = event
                .to_value()
                .map_err(|e| e.to_string())
                .and_then(|v| self.codec.encode(topic, &v).map_err(|e| e.to_string()));
            match encoded {
                Ok(payload) => outputs.push(OutRecord {
                    topic: topic.clone(),
                    key: Some(event.event_id.into_bytes()),
                    payload,
                    headers: trace.clone(),
                }),
                Err(error) => {
                    CostEventUnencodable { stage: &self.spec.name, error: &error }.emit();
                    return Disposition::Fatal(format!("cannot encode a cost event: {error}"));
                }
            }
        }
        Disposition::Outputs(outputs)
    }
}
