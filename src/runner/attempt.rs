//! Processing one record: decode it, check its retry headers and deadline, run the stage's
//! attempts ([`crate::retry`] decides what follows a failure) and encode what it emits. The
//! outcome is a [`Disposition`]; what the visit learns on the way (failed attempts, the redacted
//! value) goes into its [`Visit`], where every later path — a panic included — finds it.

use std::time::{Duration, SystemTime};

use rdkafka::message::Message;
use tracing::{Instrument, Span};

use super::detours;
use super::disposition::{Disposition, OutRecord, Visit};
use super::inbound::Inbound;
use super::worker::Worker;
use crate::avro::{AttemptRecord, CodecError, DeadLetterClass, Envelope, SchemaKind};
use crate::call::{now_ms, CallLog};
use crate::pii::Redactor;
use crate::retry::state::onward_headers;
use crate::retry::{infrastructure_backoff, Attempts, Next};
use crate::shutdown::Phase;
use crate::stage::{Emit, Stage, StageContext, StageError};
use crate::telemetry::{self, AttemptFailed, RegistryUnavailable};

/// Why a record's value is not an envelope the stage can take.
enum Undecodable {
    /// The bytes are not Avro of any schema the registry knows.
    Bytes(String),
    /// They decoded as Avro, but not as a document sluice can process.
    NotEnvelope(String),
}

fn dead_letter(class: DeadLetterClass, reason: impl Into<String>) -> Disposition {
    Disposition::DeadLetter { class, reason: reason.into() }
}

impl<S: Stage> Worker<S> {
    pub(super) async fn dispose(
        &self,
        inbound: &Inbound,
        visit: &mut Visit,
        log: &CallLog,
    ) -> Disposition {
        let input = match self.decode(inbound).await {
            Ok(Some(input)) => input,
            Ok(None) => return Disposition::Abandoned,
            Err(Undecodable::Bytes(reason)) => return dead_letter(DeadLetterClass::Decode, reason),
            Err(Undecodable::NotEnvelope(reason)) => {
                visit.decoded = true;
                return dead_letter(DeadLetterClass::Decode, reason);
            }
        };
        visit.decoded = true;
        if let Some(r) = self.letters.redactor() {
            visit.state.redacted_value = self.redacted(inbound, &input, r);
        }
        if let Err(e) = &inbound.state {
            return dead_letter(
                DeadLetterClass::Decode,
                format!("retry headers cannot be trusted: {e}"),
            );
        }
        if let Some(reason) = self.expired(visit) {
            return dead_letter(DeadLetterClass::Permanent, reason);
        }
        let state = &mut visit.state;
        let mut attempts = Attempts::new(&self.spec.retry);
        loop {
            let attempt = attempts.start(state);
            log.start_attempt();
            let cx = StageContext { stage: &self.spec.name, attempt, log: Some(log) };
            let deadline = self.spec.deadline;
            // Cut short when the worker stops: a call cancelled in flight leaves its cost event
            // in the log, which is metered all the same.
            let attempted = tokio::select! {
                r = tokio::time::timeout(deadline, self.stage.process(input.clone(), cx)) => r,
                _ = self.shutdown.reached(Phase::Stopped) => return Disposition::Abandoned,
            };
            let error = match attempted {
                Ok(Ok(emits)) => return self.encode(inbound, emits),
                Ok(Err(e)) => e,
                Err(_) => StageError::retryable(format!(
                    "attempt exceeded the stage deadline of {deadline:?}"
                )),
            };
            let text = error.to_string();
            if !matches!(error, StageError::Deferred { .. }) {
                AttemptFailed {
                    stage: &self.spec.name,
                    class: error.class(),
                    attempt,
                    error: &text,
                }
                .emit();
                state.history.push(AttemptRecord {
                    attempt,
                    at_ms: now_ms(),
                    error_class: error.class().into(),
                    message: text.clone(),
                });
            }
            let stage = self.spec.name.as_str();
            match attempts.after(error.hint(), state, SystemTime::now()) {
                Next::Retry(delay) => tokio::select! {
                    _ = tokio::time::sleep(delay)
                        .instrument(telemetry::wait_span(&Span::current(), "retry_backoff")) => {}
                    _ = self.shutdown.reached(Phase::Stopped) => return Disposition::Abandoned,
                },
                Next::Rung { rung, topic, due_ms } => {
                    let copy = detours::to_rung(stage, inbound, state, (rung, &topic), due_ms);
                    return Disposition::Outputs(vec![copy]);
                }
                Next::Defer { due_ms } => {
                    let topic = &self.spec.deferred_topic;
                    let copy = detours::to_deferred(stage, topic, inbound, state, due_ms, &text);
                    return Disposition::Outputs(vec![copy]);
                }
                Next::DeadLetter => return dead_letter(DeadLetterClass::Permanent, text),
                Next::Exhausted => {
                    let reason =
                        format!("gave up after {} attempt(s): {text}", state.attempts_made());
                    return dead_letter(DeadLetterClass::RetriesExhausted, reason);
                }
                Next::Stop => return Disposition::Fatal(text),
            }
        }
    }

    /// Why the document is past its deadline, if it is (age counted from the input record's
    /// timestamp, carried through retry and deferred topics).
    fn expired(&self, visit: &Visit) -> Option<String> {
        let deadline = self.spec.document_deadline?;
        let written = visit.state.origin.timestamp_ms?;
        let age = Duration::from_millis(now_ms().saturating_sub(written).max(0) as u64);
        (age > deadline).then(|| {
            format!(
                "document expired: written {} ago, deadline {}",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(deadline)
            )
        })
    }

    /// The record as an envelope; `Ok(None)` if the worker stopped while the registry was
    /// unreachable (never a reason to dead-letter).
    async fn decode(&self, inbound: &Inbound) -> Result<Option<Envelope>, Undecodable> {
        let mut backoff = infrastructure_backoff();
        loop {
            match self.codec.decode(inbound.message.payload()).await {
                Ok(d) => {
                    return Envelope::from_value(d.kind, d.value)
                        .map(Some)
                        .map_err(|e| Undecodable::NotEnvelope(e.to_string()))
                }
                Err(e @ CodecError::RegistryUnavailable(_)) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    RegistryUnavailable { stage: &self.spec.name, error: &e, retry_in: delay }
                        .emit();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.reached(Phase::Stopped) => return Ok(None),
                    }
                }
                Err(e) => return Err(Undecodable::Bytes(e.to_string())),
            }
        }
    }

    /// The record with its document text redacted, in the input topic's own schema.
    fn redacted(&self, inbound: &Inbound, input: &Envelope, r: &Redactor) -> Option<Vec<u8>> {
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

    /// Encodes what the stage emitted for the topics of its ports, under the record's own
    /// headers (neither its retry state nor its redrive count travel onward).
    fn encode(&self, inbound: &Inbound, emits: Vec<Emit>) -> Disposition {
        let headers = onward_headers(&inbound.headers);
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
                    return dead_letter(DeadLetterClass::Permanent, reason);
                }
            }
        }
        Disposition::Outputs(out)
    }
}
