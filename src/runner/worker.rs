//! One record's life in the runner: decode → process (with in-process retries) → encode every
//! output → produce and await acknowledgements → mark done. Undecodable records and permanent
//! failures become dead letters, which are outputs like any other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;

use super::consumer::RunnerContext;
use super::output::{carried_headers, produce_all, OutRecord};
use super::partitions::{Job, Partitions};
use super::retry_state::RetryState;
use crate::avro::{AttemptRecord, Codec, CodecError, DeadLetterClass, Envelope, SchemaKind};
use crate::call::{now_ms, trace_id_of, CallLog, Origin};
use crate::config::StageSpec;
use crate::pii::Redactor;
use crate::retry::{infrastructure_backoff, AttemptBackoff};
use crate::shutdown::{Phase, Shutdown};
use crate::stage::{Emit, Port, Stage, StageContext, StageError};
use crate::telemetry::{self, AttemptFailed, Outcome, RecordDone};
use rdkafka::message::Headers;

pub struct Worker<S> {
    pub stage: S,
    pub spec: StageSpec,
    pub pipeline: String,
    pub codec: Arc<Codec>,
    pub producer: FutureProducer,
    pub partitions: Arc<Partitions>,
    pub consumer: Arc<BaseConsumer<RunnerContext>>,
    /// Topic of each port this stage emits on.
    pub ports: HashMap<Port, String>,
    pub shutdown: Shutdown,
    /// Set by the first fatal error; the runner stops and reports it.
    pub fatal: Mutex<Option<String>>,
    /// PII redaction for what this stage writes to its dead-letter topic.
    pub redactor: Option<Redactor>,
    /// Where the cost events of model calls go.
    pub metering_topic: String,
}

/// What processing decided for a record.
pub(super) enum Disposition {
    Outputs(Vec<OutRecord>),
    /// Stop the worker; the record stays unfinished.
    Fatal(String),
    /// The worker stopped before the record could finish.
    Abandoned,
}

impl<S: Stage> Worker<S> {
    /// Processes one record. `permits` (the stage's and the process's in-flight limits) are held
    /// while the stage works and released before its outputs are awaited: the window, not the
    /// processing limit, bounds records waiting for acknowledgements.
    pub async fn handle<P: Send>(self: Arc<Self>, job: Job, permits: P) {
        let tp = job.tp();
        let stage = self.spec.name.as_str();
        if !self.partitions.is_current(&tp, job.epoch) {
            RecordDone { stage, outcome: Outcome::Skipped, elapsed: Duration::ZERO }.emit();
            return;
        }
        telemetry::in_flight(stage, 1);
        let started = Instant::now();
        let origin = RetryState::of(&job.message).origin;
        let traceparent = job
            .message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "traceparent").and_then(|h| h.value));
        let log = CallLog::new(
            &self.pipeline,
            stage,
            Origin { topic: origin.topic, partition: origin.partition, offset: origin.offset },
        )
        .with_trace(traceparent.and_then(trace_id_of));
        let trace_header = traceparent.map(|v| ("traceparent".to_owned(), v.to_vec()));
        let (outputs, outcome) = match self.dispose(&job.message, &log).await {
            Disposition::Outputs(mut o) => {
                let dead = o.iter().any(|r| r.topic == self.spec.dead_letter_topic);
                // Cost events are outputs: the offset waits for their acknowledgement too.
                o.extend(self.cost_events(&log, trace_header));
                (o, if dead { Outcome::DeadLettered } else { Outcome::Ok })
            }
            Disposition::Fatal(reason) => {
                tracing::error!(stage, error = %reason, "fatal error: stopping the worker");
                self.fatal.lock().expect("fatal lock").get_or_insert(reason);
                self.shutdown.request();
                telemetry::in_flight(stage, -1);
                return;
            }
            Disposition::Abandoned => {
                telemetry::in_flight(stage, -1);
                return;
            }
        };
        drop(permits);
        self.partitions.processed(&tp, job.epoch);
        if produce_all(&self.producer, &outputs, &self.shutdown).await {
            let m = &job.message;
            self.partitions.complete(&tp, job.epoch, m.offset(), m.key(), &self.consumer);
            RecordDone { stage, outcome, elapsed: started.elapsed() }.emit();
        }
        telemetry::in_flight(stage, -1);
    }

    async fn dispose(&self, message: &OwnedMessage, log: &CallLog) -> Disposition {
        let mut state = RetryState::of(message);
        let input = match self.decode(message).await {
            Ok(Some(input)) => input,
            Ok(None) => return Disposition::Abandoned,
            Err(reason) => {
                return self.dead_letter(message, &state, DeadLetterClass::Decode, &reason)
            }
        };
        if let Some(r) = &self.redactor {
            state.redacted_value = self.redacted(message, &input, r);
        }
        if let Some(reason) = self.expired(&state) {
            return self.dead_letter(message, &state, DeadLetterClass::Permanent, &reason);
        }
        let mut backoff = AttemptBackoff::new(&self.spec.retry);
        for local in 1..=self.spec.retry.attempts {
            // Attempt numbers continue across rungs of the ladder.
            let attempt = state.attempts + local;
            log.start_attempt();
            let cx = StageContext { stage: &self.spec.name, attempt, log: Some(log) };
            let deadline = self.spec.deadline;
            let error =
                match tokio::time::timeout(deadline, self.stage.process(input.clone(), cx)).await {
                    Ok(Ok(emits)) => return self.encode(message, emits),
                    Ok(Err(e)) => e,
                    Err(_) => StageError::retryable(format!(
                        "attempt exceeded the stage deadline of {deadline:?}"
                    )),
                };
            if let StageError::Deferred { reason, until } = &error {
                return self.defer(message, &state, *until, reason);
            }
            let text = error.to_string();
            AttemptFailed { stage: &self.spec.name, class: error.class(), attempt, error: &text }
                .emit();
            state.history.push(AttemptRecord {
                attempt,
                at_ms: now_ms(),
                error_class: error.class().into(),
                message: text,
            });
            match error {
                StageError::Fatal { reason } => return Disposition::Fatal(reason),
                StageError::Deferred { .. } => unreachable!("handled before the attempt counts"),
                StageError::Permanent { reason } => {
                    return self.dead_letter(message, &state, DeadLetterClass::Permanent, &reason)
                }
                // A provider asking for a long wait: park the record on the retry topic with
                // that due time rather than hold an in-flight slot.
                StageError::Retryable { not_before: Some(t), reason }
                    if self.waits_too_long(t) && state.rung < self.spec.retry.ladder.len() =>
                {
                    return self.next_rung(message, &state, Some(t), &reason)
                }
                StageError::Retryable { not_before, .. } if local < self.spec.retry.attempts => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay(not_before)) => {}
                        _ = self.shutdown.reached(Phase::Stopped) => return Disposition::Abandoned,
                    }
                }
                StageError::Retryable { not_before, reason } => {
                    return self.next_rung(message, &state, not_before, &reason)
                }
            }
        }
        unreachable!("the last attempt always returns")
    }

    /// Why the document is past its deadline, if it is (age counted from the input record's
    /// timestamp, carried through retry and deferred topics).
    fn expired(&self, state: &RetryState) -> Option<String> {
        let deadline = self.spec.document_deadline?;
        let written = state.origin.timestamp_ms?;
        let age = Duration::from_millis(now_ms().saturating_sub(written).max(0) as u64);
        (age > deadline).then(|| {
            format!(
                "document expired: written {} ago, deadline {}",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(deadline)
            )
        })
    }

    fn waits_too_long(&self, not_before: SystemTime) -> bool {
        not_before
            .duration_since(SystemTime::now())
            .is_ok_and(|wait| wait > self.spec.retry.max_inline_wait)
    }

    /// The record as an envelope; `Err` for a record that can never decode, `Ok(None)` if the
    /// worker stopped while the registry was unreachable (never a reason to dead-letter).
    async fn decode(&self, message: &OwnedMessage) -> Result<Option<Envelope>, String> {
        let mut backoff = infrastructure_backoff();
        loop {
            match self.codec.decode(message.payload()).await {
                Ok(d) => {
                    return Envelope::from_value(d.kind, d.value)
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
                Err(e @ CodecError::RegistryUnavailable(_)) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(stage = %self.spec.name, error = %e, "schema registry unavailable; record waits");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.reached(Phase::Stopped) => return Ok(None),
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn encode(&self, message: &OwnedMessage, emits: Vec<Emit>) -> Disposition {
        let headers = carried_headers(message);
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
                Ok(payload) => {
                    let key = message
                        .key()
                        .map(<[u8]>::to_vec)
                        .or_else(|| Some(emit.record.document.id.clone().into_bytes()));
                    out.push(OutRecord {
                        topic: topic.clone(),
                        key,
                        payload,
                        headers: headers.clone(),
                    });
                }
                Err(e) => {
                    let reason = format!("stage output does not fit the schema of '{topic}': {e}");
                    let state = RetryState::of(message);
                    return self.dead_letter(message, &state, DeadLetterClass::Permanent, &reason);
                }
            }
        }
        Disposition::Outputs(out)
    }
}
