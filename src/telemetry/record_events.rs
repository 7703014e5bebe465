//! A record's observable occurrences in the runner: finished, failed an attempt, parked on a
//! retry rung or the deferred topic, dead-lettered, an output retried or refused. Each `emit()`
//! writes the log line and updates the metric together.

use std::time::Duration;

use super::metrics;
use super::runner_metrics::runner_metrics;

/// Outcome label of a finished record.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Ok,
    DeadLettered,
    /// Its partition was revoked before it started; the new owner processes it.
    Skipped,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::DeadLettered => "dead_lettered",
            Self::Skipped => "skipped",
        }
    }
}

pub struct RecordDone<'a> {
    pub stage: &'a str,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

impl RecordDone<'_> {
    pub fn emit(self) {
        let m = metrics::metrics();
        m.records.with_label_values(&[self.stage, self.outcome.label()]).inc();
        m.record_seconds.with_label_values(&[self.stage]).observe(self.elapsed.as_secs_f64());
        tracing::debug!(
            stage = self.stage,
            outcome = self.outcome.label(),
            elapsed_ms = self.elapsed.as_millis() as u64,
            "record done"
        );
    }
}

pub struct AttemptFailed<'a> {
    pub stage: &'a str,
    pub class: &'static str,
    pub attempt: u32,
    pub error: &'a str,
}

impl AttemptFailed<'_> {
    pub fn emit(self) {
        metrics::metrics().attempt_failures.with_label_values(&[self.stage, self.class]).inc();
        tracing::debug!(
            stage = self.stage,
            class = self.class,
            attempt = self.attempt,
            error = self.error,
            "attempt failed"
        );
    }
}

pub struct DeadLettered<'a> {
    pub stage: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub class: &'static str,
    pub reason: &'a str,
}

impl DeadLettered<'_> {
    pub fn emit(self) {
        runner_metrics().dead_letters.with_label_values(&[self.stage, self.class]).inc();
        tracing::warn!(
            stage = self.stage,
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            class = self.class,
            reason = self.reason,
            "record dead-lettered"
        );
    }
}

pub struct PartitionPaused<'a> {
    pub topic: &'a str,
    pub partition: i32,
}

impl PartitionPaused<'_> {
    pub fn emit(self) {
        metrics::metrics().pauses.with_label_values(&[self.topic]).inc();
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            "partition window full: not read until a record finishes"
        );
    }
}

pub struct ProduceRetry<'a> {
    pub topic: &'a str,
    pub error: &'a str,
    pub delay: Duration,
}

impl ProduceRetry<'_> {
    pub fn emit(self) {
        metrics::metrics().produce_retries.with_label_values(&[self.topic]).inc();
        tracing::warn!(
            topic = self.topic,
            error = self.error,
            retry_in_ms = self.delay.as_millis() as u64,
            "produce failed; input offset held, retrying"
        );
    }
}

pub fn in_flight(stage: &str, delta: i64) {
    metrics::metrics().in_flight.with_label_values(&[stage]).add(delta);
}

pub struct RetryScheduled<'a> {
    pub stage: &'a str,
    pub topic: &'a str,
    pub rung: usize,
}

impl RetryScheduled<'_> {
    pub fn emit(self) {
        metrics::metrics()
            .retries_scheduled
            .with_label_values(&[self.stage, &self.rung.to_string()])
            .inc();
        tracing::debug!(
            stage = self.stage,
            topic = self.topic,
            rung = self.rung,
            "record parked on retry topic"
        );
    }
}

pub struct RecordDeferred<'a> {
    pub stage: &'a str,
    pub reason: &'a str,
    pub due_ms: i64,
}

impl RecordDeferred<'_> {
    pub fn emit(self) {
        metrics::metrics().deferred.with_label_values(&[self.stage]).inc();
        tracing::debug!(
            stage = self.stage,
            reason = self.reason,
            due_ms = self.due_ms,
            "record deferred"
        );
    }
}

pub struct OutputRejected<'a> {
    pub stage: &'a str,
    pub topic: &'a str,
    pub error: &'a str,
}

impl OutputRejected<'_> {
    pub fn emit(self) {
        runner_metrics().outputs_refused.with_label_values(&[self.stage, self.topic]).inc();
        tracing::error!(
            stage = self.stage,
            topic = self.topic,
            error = self.error,
            "the broker refused an output for good"
        );
    }
}

pub struct CostEventUnencodable<'a> {
    pub stage: &'a str,
    pub error: &'a str,
}

impl CostEventUnencodable<'_> {
    pub fn emit(self) {
        tracing::error!(stage = self.stage, error = self.error, "cannot encode a cost event");
    }
}

/// Cost events of a record that did not finish here could not be queued for the metering topic:
/// billed calls go unmetered unless an operator reconciles them with the provider's bill.
pub struct CostEventsUnsent<'a> {
    pub stage: &'a str,
    pub events: usize,
    pub error: &'a str,
}

impl CostEventsUnsent<'_> {
    pub fn emit(self) {
        runner_metrics()
            .cost_events_unsent
            .with_label_values(&[self.stage])
            .inc_by(self.events as u64);
        tracing::error!(
            stage = self.stage,
            events = self.events,
            error = self.error,
            "cost events of billed calls could not be queued"
        );
    }
}

/// A parked record (not due yet) at the head of its partition, moved to the end of its topic so
/// the committed offset can pass it.
pub struct RecordRequeued<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub due_ms: i64,
}

impl RecordRequeued<'_> {
    pub fn emit(self) {
        runner_metrics().requeued.with_label_values(&[self.topic]).inc();
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            due_ms = self.due_ms,
            "record not yet due moved to the end of its topic"
        );
    }
}

/// A record the partition's previous owner had completed (the completed-offset map in its last
/// commit): admitted as done, not processed again.
pub struct RecordAlreadyDone<'a> {
    pub topic: &'a str,
}

impl RecordAlreadyDone<'_> {
    pub fn emit(self) {
        runner_metrics().already_done.with_label_values(&[self.topic]).inc();
    }
}
