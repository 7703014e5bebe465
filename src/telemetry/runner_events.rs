//! The runner's observable occurrences: records finishing, failing, parking and dead-lettering;
//! partitions assigned, revoked and paused; offsets stored and committed; dependencies
//! unavailable; workers stopping. Each `emit()` writes the log line and updates the metric.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};

use super::metrics;

/// Counters only the runner updates, on the one registry.
struct RunnerMetrics {
    dead_letters: IntCounterVec,
    offset_store_failures: IntCounterVec,
    commit_failures: IntCounterVec,
    rebalances: IntCounterVec,
    registry_unavailable: IntCounterVec,
    worker_stops: IntCounterVec,
    outputs_refused: IntCounterVec,
    consumer_errors: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    metrics().registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn runner_metrics() -> &'static RunnerMetrics {
    static M: OnceLock<RunnerMetrics> = OnceLock::new();
    M.get_or_init(|| RunnerMetrics {
        dead_letters: counter(
            "dead_letters_total",
            "Records dead-lettered, by stage and error class.",
            &["stage", "class"],
        ),
        offset_store_failures: counter(
            "offset_store_failures_total",
            "Offsets that could not be stored (the partition was likely revoked).",
            &["topic"],
        ),
        commit_failures: counter(
            "commit_failures_total",
            "Offset commits that failed; uncommitted records are redelivered.",
            &["stage"],
        ),
        rebalances: counter(
            "rebalances_total",
            "Rebalance events, by stage and kind (assigned, revoked, lost, error).",
            &["stage", "kind"],
        ),
        registry_unavailable: counter(
            "registry_unavailable_total",
            "Schema registry lookups that failed while records waited.",
            &["stage"],
        ),
        worker_stops: counter(
            "worker_fatal_stops_total",
            "Workers stopped by a fatal error.",
            &["stage"],
        ),
        outputs_refused: counter(
            "outputs_refused_total",
            "Outputs the broker refused for good, by stage and topic.",
            &["stage", "topic"],
        ),
        consumer_errors: counter(
            "consumer_errors_total",
            "Errors reported by the consumer while polling.",
            &["stage"],
        ),
    })
}

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

pub struct OffsetStoreFailed<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub position: i64,
    pub error: &'a dyn std::fmt::Display,
}

impl OffsetStoreFailed<'_> {
    pub fn emit(self) {
        runner_metrics().offset_store_failures.with_label_values(&[self.topic]).inc();
        tracing::warn!(
            topic = self.topic,
            partition = self.partition,
            position = self.position,
            error = %self.error,
            "cannot store offset"
        );
    }
}

pub struct CommitFailed<'a> {
    pub stage: &'a str,
    pub error: &'a dyn std::fmt::Display,
    /// In the background (librdkafka's auto-commit) rather than on revoke or shutdown.
    pub background: bool,
}

impl CommitFailed<'_> {
    pub fn emit(self) {
        runner_metrics().commit_failures.with_label_values(&[self.stage]).inc();
        tracing::warn!(
            stage = self.stage,
            error = %self.error,
            background = self.background,
            "offset commit failed; uncommitted records will be redelivered"
        );
    }
}

/// What a rebalance did to this member.
#[derive(Debug, Clone, Copy)]
pub enum RebalanceKind {
    Assigned,
    Revoked,
    /// The assignment was lost (session timeout, fenced): nothing was waited for.
    Lost,
}

impl RebalanceKind {
    fn label(self) -> &'static str {
        match self {
            Self::Assigned => "assigned",
            Self::Revoked => "revoked",
            Self::Lost => "lost",
        }
    }
}

pub struct Rebalanced<'a> {
    pub stage: &'a str,
    pub kind: RebalanceKind,
    pub partitions: usize,
    /// Revocations: records still working when the grace period ended (redelivered).
    pub abandoned: usize,
    /// Revocations: whether the stored offsets were committed.
    pub committed: bool,
}

impl Rebalanced<'_> {
    pub fn emit(self) {
        runner_metrics().rebalances.with_label_values(&[self.stage, self.kind.label()]).inc();
        tracing::info!(
            stage = self.stage,
            kind = self.kind.label(),
            partitions = self.partitions,
            abandoned = self.abandoned,
            committed = self.committed,
            "rebalance"
        );
    }
}

pub struct RebalanceFailed<'a> {
    pub stage: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl RebalanceFailed<'_> {
    pub fn emit(self) {
        runner_metrics().rebalances.with_label_values(&[self.stage, "error"]).inc();
        tracing::warn!(stage = self.stage, error = %self.error, "rebalance error");
    }
}

pub struct ConsumerError<'a> {
    pub stage: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl ConsumerError<'_> {
    pub fn emit(self) {
        runner_metrics().consumer_errors.with_label_values(&[self.stage]).inc();
        tracing::warn!(stage = self.stage, error = %self.error, "consumer error");
    }
}

pub struct RecordNotAdmitted<'a> {
    pub stage: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl RecordNotAdmitted<'_> {
    pub fn emit(self) {
        runner_metrics().consumer_errors.with_label_values(&[self.stage]).inc();
        tracing::error!(
            stage = self.stage,
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            "record of an unassigned partition was not admitted"
        );
    }
}

pub struct RegistryUnavailable<'a> {
    pub stage: &'a str,
    pub error: &'a dyn std::fmt::Display,
    pub retry_in: Duration,
}

impl RegistryUnavailable<'_> {
    pub fn emit(self) {
        runner_metrics().registry_unavailable.with_label_values(&[self.stage]).inc();
        tracing::warn!(
            stage = self.stage,
            error = %self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "schema registry unavailable; record waits"
        );
    }
}

pub struct WorkerStopped<'a> {
    pub stage: &'a str,
    pub reason: &'a str,
}

impl WorkerStopped<'_> {
    pub fn emit(self) {
        runner_metrics().worker_stops.with_label_values(&[self.stage]).inc();
        tracing::error!(
            stage = self.stage,
            error = self.reason,
            "fatal error: stopping the worker"
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

pub struct StageRunning<'a> {
    pub stage: &'a str,
    pub group: &'a str,
    pub input: &'a str,
}

impl StageRunning<'_> {
    pub fn emit(self) {
        tracing::info!(stage = self.stage, group = self.group, input = self.input, "stage running");
    }
}

pub struct StageStopped<'a> {
    pub stage: &'a str,
    pub abandoned: usize,
}

impl StageStopped<'_> {
    pub fn emit(self) {
        tracing::info!(stage = self.stage, abandoned = self.abandoned, "stage stopped");
    }
}
