//! Where a record goes when it does not simply succeed: the deferred topic (over budget), the
//! next rung of the retry ladder, the dead-letter topic — and its cost events, which accompany
//! every disposition.

use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::message::{Message, OwnedMessage};

use super::output::{dead_letter, OutRecord};
use super::retry_state::RetryState;
use super::worker::{Disposition, Worker};
use crate::avro::{DeadLetterClass, Envelope, SchemaKind};
use crate::call::{now_ms, CallLog};
use crate::pii::Redactor;
use crate::stage::Stage;
use crate::telemetry::{DeadLettered, RecordDeferred, RetryScheduled};

impl<S: Stage> Worker<S> {
    /// The metering records of a record's model calls.
    pub(super) fn cost_events(
        &self,
        log: &CallLog,
        traceparent: Option<(String, Vec<u8>)>,
    ) -> Vec<OutRecord> {
        let topic = &self.metering_topic;
        log.take()
            .into_iter()
            .filter_map(|event| {
                let encoded = event
                    .to_value()
                    .map_err(|e| e.to_string())
                    .and_then(|v| self.codec.encode(topic, &v).map_err(|e| e.to_string()));
                match encoded {
                    Ok(payload) => Some(OutRecord {
                        topic: topic.clone(),
                        key: Some(event.event_id.into_bytes()),
                        payload,
                        headers: traceparent.iter().cloned().collect(),
                    }),
                    Err(e) => {
                        tracing::error!(stage = %self.spec.name, error = %e, "cannot encode a cost event");
                        None
                    }
                }
            })
            .collect()
    }

    /// Parks the record on the stage's deferred topic until `until` (its tenant's next budget
    /// window): same rung, no attempt spent.
    pub(super) fn defer(
        &self,
        message: &OwnedMessage,
        state: &RetryState,
        until: SystemTime,
        reason: &str,
    ) -> Disposition {
        let due = until.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        RecordDeferred { stage: &self.spec.name, reason, due_ms: due }.emit();
        Disposition::Outputs(vec![OutRecord {
            topic: self.spec.deferred_topic.clone(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: state.headers_for(message, state.rung, due),
        }])
    }

    /// Parks the record on the next rung of the retry ladder — original key, bytes and headers
    /// plus its retry state — or dead-letters it when the ladder is exhausted.
    pub(super) fn next_rung(
        &self,
        message: &OwnedMessage,
        state: &RetryState,
        not_before: Option<SystemTime>,
        reason: &str,
    ) -> Disposition {
        let rungs = self.spec.retry.retry_topics();
        let Some((topic, delay)) = rungs.get(state.rung) else {
            let attempts = state.history.last().map_or(0, |a| a.attempt);
            let reason = format!("gave up after {attempts} attempt(s): {reason}");
            return self.dead_letter(message, state, DeadLetterClass::RetriesExhausted, &reason);
        };
        let due = now_ms() + delay.as_millis() as i64;
        let due = not_before
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(due, |t| due.max(t.as_millis() as i64));
        RetryScheduled { stage: &self.spec.name, topic, rung: state.rung + 1 }.emit();
        Disposition::Outputs(vec![OutRecord {
            topic: topic.clone(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: state.next_rung_headers(message, due),
        }])
    }

    /// The record with its document text redacted, in the input topic's own schema.
    pub(super) fn redacted(
        &self,
        message: &OwnedMessage,
        input: &Envelope,
        r: &Redactor,
    ) -> Option<Vec<u8>> {
        let mut clean = input.clone();
        clean.document.content = r.clean(&clean.document.content);
        if let Some(a) = clean.answer.as_mut() {
            a.text = r.clean(&a.text);
        }
        let kind = self.codec.writer_kind(message.topic()).unwrap_or(SchemaKind::Document);
        let value = clean.to_value(kind).ok()?;
        self.codec.encode(message.topic(), &value).ok()
    }

    pub(super) fn dead_letter(
        &self,
        message: &OwnedMessage,
        state: &RetryState,
        class: DeadLetterClass,
        reason: &str,
    ) -> Disposition {
        // Error texts can echo the input (a provider quoting the prompt): redact them too.
        let redacted = self.redactor.as_ref().map(|r| {
            let mut s = state.clone();
            s.history.iter_mut().for_each(|a| a.message = r.clean(&a.message));
            (r.clean(reason), s)
        });
        let (reason, state) = match &redacted {
            Some((reason, s)) => (reason.as_str(), s),
            None => (reason, state),
        };
        let (envelope, headers) =
            dead_letter(&self.spec, &self.pipeline, message, state, class, reason);
        DeadLettered {
            stage: &self.spec.name,
            topic: &state.origin.topic,
            partition: state.origin.partition,
            offset: state.origin.offset,
            class: class.symbol(),
            reason,
        }
        .emit();
        let topic = &self.spec.dead_letter_topic;
        match self.codec.encode(topic, &envelope.to_value()) {
            Ok(payload) => Disposition::Outputs(vec![OutRecord {
                topic: topic.clone(),
                key: message.key().map(<[u8]>::to_vec),
                payload,
                headers,
            }]),
            Err(e) => Disposition::Fatal(format!("cannot encode a dead letter: {e}")),
        }
    }
}
