//! One record's life in the runner: decode → process (the attempt loop; [`crate::retry`] decides
//! what follows a failure) → encode every output → produce and await acknowledgements → mark
//! done. Whatever happens — bad headers, undecodable bytes, a permanent error, a panic in the
//! stage, an output the broker refuses — ends in outputs or a stop, never in a stuck slot.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use tracing::{Instrument, Span};

use super::consumer::RunnerContext;
use super::inbound::Inbound;
use super::outputs::{Delivered, OutRecord};
use super::partitions::{Job, Partitions};
use crate::avro::{AttemptRecord, Codec, CodecError, DeadLetterClass, Envelope};
use crate::call::{now_ms, trace_id_of, CallLog, Origin};
use crate::config::StageSpec;
use crate::pii::Redactor;
use crate::retry::{infrastructure_backoff, Attempts, Next, RetryState};
use crate::shutdown::{Phase, Shutdown};
use crate::stage::{Port, Stage, StageContext, StageError};
use crate::telemetry::{
    self, AttemptFailed, Outcome, RecordDone, RegistryUnavailable, WorkerStopped,
};

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

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
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
        let Job { mut inbound, epoch } = job;
        let span =
            telemetry::record_span(stage, &self.spec.group, &inbound.message, &inbound.headers);
        telemetry::continue_trace(&span, &mut inbound.headers);
        let origin = inbound.state_or_fresh().origin;
        let log = CallLog::new(
            &self.pipeline,
            stage,
            Origin { topic: origin.topic, partition: origin.partition, offset: origin.offset },
        )
        .with_trace(inbound.traceparent().and_then(trace_id_of));
        // A panic in the stage (or here) must not leave the slot and the offset stuck.
        let disposition = AssertUnwindSafe(self.dispose(&inbound, &log))
            .catch_unwind()
            .instrument(span.clone())
            .await
            .unwrap_or_else(|panic| {
                let reason = format!("the stage panicked: {}", panic_text(&*panic));
                self.dead_letter(
                    &inbound,
                    &inbound.state_or_fresh(),
                    DeadLetterClass::Permanent,
                    &reason,
                    Some(&log),
                )
            });
        let outputs =
            match disposition.and_then_outputs(|o| self.with_cost_events(o, &inbound, &log)) {
                Disposition::Outputs(o) => o,
                Disposition::Fatal(reason) => {
                    WorkerStopped { stage, reason: &reason }.emit();
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
        self.partitions.processed(&tp, epoch);
        let outcome = match self.deliver(&inbound, outputs).instrument(span).await {
            Delivered::Acked(outcome) => outcome,
            Delivered::Stopped => {
                telemetry::in_flight(stage, -1);
                return;
            }
            Delivered::Fatal(reason) => {
                WorkerStopped { stage, reason: &reason }.emit();
                self.fatal.lock().expect("fatal lock").get_or_insert(reason);
                self.shutdown.request();
                telemetry::in_flight(stage, -1);
                return;
            }
        };
        let m = &inbound.message;
        self.partitions.complete(&tp, epoch, m.offset(), m.key(), self.consumer.as_ref());
        RecordDone { stage, outcome, elapsed: started.elapsed() }.emit();
        telemetry::in_flight(stage, -1);
    }

    async fn dispose(&self, inbound: &Inbound, log: &CallLog) -> Disposition {
        let mut state = match &inbound.state {
            Ok(state) => state.clone(),
            Err(e) => {
                let reason = format!("retry headers cannot be trusted: {e}");
                let fresh = inbound.state_or_fresh();
                return self.dead_letter(
                    inbound,
                    &fresh,
                    DeadLetterClass::Decode,
                    &reason,
                    Some(log),
                );
            }
        };
        let input = match self.decode(inbound).await {
            Ok(Some(input)) => input,
            Ok(None) => return Disposition::Abandoned,
            Err(reason) => {
                return self.dead_letter(
                    inbound,
                    &state,
                    DeadLetterClass::Decode,
                    &reason,
                    Some(log),
                )
            }
        };
        if let Some(r) = &self.redactor {
            state.redacted_value = self.redacted(inbound, &input, r);
        }
        if let Some(reason) = self.expired(&state) {
            return self.dead_letter(
                inbound,
                &state,
                DeadLetterClass::Permanent,
                &reason,
                Some(log),
            );
        }
        let mut attempts = Attempts::new(&self.spec.retry);
        loop {
            let attempt = attempts.start(&state);
            log.start_attempt();
            let cx = StageContext { stage: &self.spec.name, attempt, log: Some(log) };
            let deadline = self.spec.deadline;
            let error =
                match tokio::time::timeout(deadline, self.stage.process(input.clone(), cx)).await {
                    Ok(Ok(emits)) => return self.encode(inbound, &state, emits, log),
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
            match attempts.after(error.hint(), &state, SystemTime::now()) {
                Next::Retry(delay) => tokio::select! {
                    _ = tokio::time::sleep(delay)
                        .instrument(telemetry::wait_span(&Span::current(), "retry_backoff")) => {}
                    _ = self.shutdown.reached(Phase::Stopped) => return Disposition::Abandoned,
                },
                Next::Rung { rung, topic, due_ms } => {
                    return self.to_rung(inbound, &state, rung, &topic, due_ms)
                }
                Next::Defer { due_ms } => return self.to_deferred(inbound, &state, due_ms, &text),
                Next::DeadLetter => {
                    return self.dead_letter(
                        inbound,
                        &state,
                        DeadLetterClass::Permanent,
                        &text,
                        Some(log),
                    )
                }
                Next::Exhausted => {
                    let reason =
                        format!("gave up after {} attempt(s): {text}", state.attempts_made());
                    let class = DeadLetterClass::RetriesExhausted;
                    return self.dead_letter(inbound, &state, class, &reason, Some(log));
                }
                Next::Stop => return Disposition::Fatal(text),
            }
        }
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

    /// The record as an envelope; `Err` for a record that can never decode, `Ok(None)` if the
    /// worker stopped while the registry was unreachable (never a reason to dead-letter).
    async fn decode(&self, inbound: &Inbound) -> Result<Option<Envelope>, String> {
        let mut backoff = infrastructure_backoff();
        loop {
            match self.codec.decode(inbound.message.payload()).await {
                Ok(d) => {
                    return Envelope::from_value(d.kind, d.value)
                        .map(Some)
                        .map_err(|e| e.to_string())
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
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl Disposition {
    fn and_then_outputs(self, f: impl FnOnce(Vec<OutRecord>) -> Disposition) -> Disposition {
        match self {
            Self::Outputs(o) => f(o),
            other => other,
        }
    }
}
