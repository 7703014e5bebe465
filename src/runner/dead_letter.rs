//! The dead-letter path, as a plain value every way out of a record goes through: build the
//! envelope, count and log it ([`DeadLettered`], once per letter, whichever path sent it), encode
//! it for the stage's dead-letter topic.
//!
//! A letter carries what the visit learnt ([`Visit`]): the record's origin, this visit's
//! attempts, and its value — on a redacting stage the redacted re-encoding, or nothing when the
//! value decoded but has none (the record stays at its original coordinates); raw bytes only
//! when they never decoded as Avro. When the broker refuses the full letter (a record near the
//! size limit, with its headers and history, outgrows it), [`DeadLetters::slim`] sends it again
//! without the original value and headers, with a shortened history and the
//! [`ORIGINAL_OMITTED`] header saying what was left out and why.

use std::sync::Arc;

use rdkafka::message::Message;

use super::disposition::{OutRecord, Visit};
use super::inbound::Inbound;
use crate::avro::{Codec, DeadLetter, DeadLetterClass};
use crate::call::{now_ms, CallLog};
use crate::config::StageSpec;
use crate::pii::Redactor;
use crate::retry::own_headers;
use crate::retry::state::HeaderPair;
use crate::telemetry::DeadLettered;

/// Header of a slim dead letter: what it leaves out of the record and why.
pub const ORIGINAL_OMITTED: &str = "sluice-original-omitted";

/// Attempts a slim letter keeps (the latest), and the length its texts are cut to.
const SLIM_ATTEMPTS: usize = 3;
const SLIM_TEXT: usize = 1024;
/// A key longer than this is left out of a slim letter too.
const SLIM_KEY: usize = 1024;

/// Why a record is dead-lettered.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cause<'a> {
    pub class: DeadLetterClass,
    pub reason: &'a str,
    /// Topics of the record's outputs that the broker acknowledged before another was refused.
    pub delivered: &'a [String],
}

impl<'a> Cause<'a> {
    pub fn new(class: DeadLetterClass, reason: &'a str) -> Self {
        Self { class, reason, delivered: &[] }
    }
}

/// A stage's dead-letter path.
pub(super) struct DeadLetters {
    pipeline: String,
    stage: String,
    group: String,
    topic: String,
    codec: Arc<Codec>,
    /// PII redaction for what this stage writes to its dead-letter topic.
    redactor: Option<Redactor>,
}

/// Cuts `text` to at most `max` bytes, on a character boundary, marking the cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let end = (0..=max).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}… ({} bytes)", &text[..end], text.len())
}

impl DeadLetters {
    pub fn new(
        spec: &StageSpec,
        pipeline: &str,
        codec: Arc<Codec>,
        redactor: Option<Redactor>,
    ) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            stage: spec.name.clone(),
            group: spec.group.clone(),
            topic: spec.dead_letter_topic.clone(),
            codec,
            redactor,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn redactor(&self) -> Option<&Redactor> {
        self.redactor.as_ref()
    }

    /// The dead letter of `inbound`, counted and logged: the record to produce, or why it
    /// cannot be encoded.
    pub fn letter(
        &self,
        inbound: &Inbound,
        visit: &Visit,
        cause: Cause<'_>,
        log: Option<&CallLog>,
    ) -> Result<OutRecord, String> {
        let (envelope, headers) = self.build(inbound, visit, cause, log);
        DeadLettered {
            stage: &self.stage,
            topic: &envelope.original_topic,
            partition: envelope.original_partition,
            offset: envelope.original_offset,
            class: cause.class.symbol(),
            reason: &envelope.error_message,
        }
        .emit();
        self.record(&envelope, headers, inbound.message.key())
    }

    /// The same letter without the original value and headers, with the latest attempts and
    /// every text cut short, for a broker that refused the full one (`refusal`). Not counted
    /// again: it replaces a letter [`Self::letter`] counted.
    pub fn slim(
        &self,
        inbound: &Inbound,
        visit: &Visit,
        cause: Cause<'_>,
        log: Option<&CallLog>,
        refusal: &str,
    ) -> Result<OutRecord, String> {
        let (mut envelope, mut headers) = self.build(inbound, visit, cause, log);
        let mut omitted = Vec::new();
        if let Some(v) = envelope.original_value.take() {
            omitted.push(format!("value ({} bytes)", v.len()));
        }
        if !envelope.original_headers.is_empty() {
            // `build` puts the record's own headers first.
            omitted.push(format!("{} header(s)", envelope.original_headers.len()));
            headers.drain(..envelope.original_headers.len());
            envelope.original_headers.clear();
        }
        let total = envelope.attempts.len();
        if total > SLIM_ATTEMPTS {
            omitted.push(format!("{} of {total} attempts", total - SLIM_ATTEMPTS));
            envelope.attempts.drain(..total - SLIM_ATTEMPTS);
        }
        envelope.attempts.iter_mut().for_each(|a| a.message = cut(&a.message, SLIM_TEXT));
        envelope.error_message = cut(&envelope.error_message, SLIM_TEXT);
        let key = inbound.message.key().filter(|k| k.len() <= SLIM_KEY);
        if let Some(k) = envelope.original_key.take_if(|k| k.len() > SLIM_KEY) {
            omitted.push(format!("key ({} bytes)", k.len()));
        }
        for (_, v) in headers.iter_mut() {
            if let Some(text) = v.as_ref().and_then(|b| std::str::from_utf8(b).ok()) {
                *v = Some(cut(text, SLIM_TEXT).into_bytes());
            }
        }
        let why = format!(
            "{}: the broker refused the full dead letter: {}",
            omitted.join(", "),
            cut(refusal, SLIM_TEXT)
        );
        headers.push((ORIGINAL_OMITTED.to_owned(), Some(why.into_bytes())));
        self.record(&envelope, headers, key)
    }

    fn record(
        &self,
        envelope: &DeadLetter,
        headers: Vec<HeaderPair>,
        key: Option<&[u8]>,
    ) -> Result<OutRecord, String> {
        let payload = self
            .codec
            .encode(&self.topic, &envelope.to_value())
            .map_err(|e| format!("cannot encode a dead letter: {e}"))?;
        Ok(OutRecord { topic: self.topic.clone(), key: key.map(<[u8]>::to_vec), payload, headers })
    }

    /// The envelope, and the headers Kafka Connect and Spring Kafka write so their tooling can
    /// read it. On a redacting stage error texts are redacted too.
    fn build(
        &self,
        inbound: &Inbound,
        visit: &Visit,
        cause: Cause<'_>,
        log: Option<&CallLog>,
    ) -> (DeadLetter, Vec<HeaderPair>) {
        let state = &visit.state;
        let mut history = state.history.clone();
        let reason = match &self.redactor {
            Some(r) => {
                history.iter_mut().for_each(|a| a.message = r.clean(&a.message));
                r.clean(cause.reason)
            }
            None => cause.reason.to_owned(),
        };
        let m = &inbound.message;
        let value = match (&state.redacted_value, &self.redactor) {
            (Some(redacted), _) => Some(redacted.clone()),
            (None, Some(_)) if visit.decoded => None,
            _ => m.payload().map(<[u8]>::to_vec),
        };
        let origin = &state.origin;
        let own = own_headers(&inbound.headers);
        let (model, prompt_version) = log.and_then(CallLog::last_call).unzip();
        let envelope = DeadLetter {
            pipeline: self.pipeline.clone(),
            stage: self.stage.clone(),
            consumer_group: self.group.clone(),
            original_topic: origin.topic.clone(),
            original_partition: origin.partition,
            original_offset: origin.offset,
            original_timestamp_ms: origin.timestamp_ms,
            original_key: m.key().map(<[u8]>::to_vec),
            original_value: value,
            original_headers: own.clone(),
            error_class: cause.class,
            error_message: reason.clone(),
            attempts: history,
            failed_at_ms: now_ms(),
            model,
            prompt_version: prompt_version.flatten(),
            delivered_outputs: cause.delivered.to_vec(),
        };
        let exception = format!("sluice.{}", cause.class.symbol());
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
            ("kafka_dlt-original-consumer-group".to_owned(), text(&self.group)),
            ("kafka_dlt-exception-fqcn".to_owned(), text(&exception)),
            ("kafka_dlt-exception-message".to_owned(), text(&reason)),
        ]);
        (envelope, headers)
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn texts_are_cut_on_a_character_boundary_and_say_so() {
        assert_eq!(cut("short", 10), "short");
        let cut_text = cut("ééééé", 3);
        assert!(cut_text.starts_with('é') && cut_text.ends_with("(10 bytes)"), "{cut_text}");
    }
}
