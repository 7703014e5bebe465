//! The runner's consumer-side and lifecycle occurrences: partitions assigned, revoked or lost;
//! offsets stored and committed; the registry unavailable; workers starting, stopping and
//! failing; shutdown signals. Each `emit()` writes the log line and updates the metric together;
//! the lifecycle events also update the process's [`super::Health`].

use std::time::Duration;

use super::client_stats;
use super::health::health;
pub use super::health::RebalanceKind;
use super::runner_metrics::runner_metrics;

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
        let when = if self.background { "background" } else { "handover" };
        runner_metrics().commit_failures.with_label_values(&[self.stage, when]).inc();
        tracing::warn!(
            stage = self.stage,
            error = %self.error,
            background = self.background,
            "offset commit failed; uncommitted records will be redelivered"
        );
    }
}

/// The broker refused a commit's completed-offset map (`OFFSET_METADATA_TOO_LARGE`): the stage
/// commits its positions without maps from now on, once per run. Nothing is lost, but a new owner
/// of a partition processes again what was finished out of order.
pub struct CommitMapsRefused<'a> {
    pub stage: &'a str,
}

impl CommitMapsRefused<'_> {
    pub fn emit(self) {
        tracing::warn!(
            stage = self.stage,
            "the broker refused the completed-offset map in a commit: committing positions \
             without it from now on (raise the brokers' offset.metadata.max.bytes to 4096 or \
             set concurrency.commit_completed: false)"
        );
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
        health().rebalanced(self.stage, self.kind, self.partitions);
        let delta = self.partitions as i64;
        let delta = match self.kind {
            RebalanceKind::Assigned => delta,
            RebalanceKind::Revoked | RebalanceKind::Lost => -delta,
        };
        client_stats::partitions_changed(self.stage, delta);
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
        // The error text may name the registry's URL: the health body says only what happened.
        health().registry_checked(Err(format!("stage {} waited on it (see the log)", self.stage)));
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
        health().worker_stopped(self.stage);
        tracing::error!(
            stage = self.stage,
            error = self.reason,
            "fatal error: stopping the worker"
        );
    }
}

/// The consumer group protocol this process's stages speak, decided at start, and why.
pub struct GroupProtocolChosen<'a> {
    pub protocol: &'a str,
    pub reason: &'a str,
    /// The broker's session timeout for KIP-848 groups, when it was read.
    pub broker_session_timeout_ms: Option<u64>,
}

impl GroupProtocolChosen<'_> {
    pub fn emit(self) {
        tracing::info!(
            protocol = self.protocol,
            reason = self.reason,
            broker_session_timeout_ms = self.broker_session_timeout_ms,
            "consumer group protocol chosen"
        );
    }
}

pub struct StageRunning<'a> {
    pub stage: &'a str,
    pub group: &'a str,
    pub input: &'a str,
}

impl StageRunning<'_> {
    pub fn emit(self) {
        health().stage_running(self.stage);
        client_stats::stage_started(self.stage);
        tracing::info!(stage = self.stage, group = self.group, input = self.input, "stage running");
    }
}

pub struct StageStopped<'a> {
    pub stage: &'a str,
    pub abandoned: usize,
}

impl StageStopped<'_> {
    pub fn emit(self) {
        health().stage_stopped(self.stage);
        client_stats::stage_stopped(self.stage);
        tracing::info!(stage = self.stage, abandoned = self.abandoned, "stage stopped");
    }
}

/// A SIGINT or SIGTERM: the first drains, the second stops at once.
pub struct ShutdownSignalled {
    pub forced: bool,
}

impl ShutdownSignalled {
    pub fn emit(self) {
        if self.forced {
            tracing::warn!("second signal: stopping without waiting for in-flight records");
        } else {
            tracing::info!("shutdown requested: draining in-flight records");
        }
    }
}
