//! The counters only the runner's events update, registered on the one registry.

use std::sync::OnceLock;

use prometheus::{IntCounterVec, Opts};

use super::metrics;

/// Counters only the runner updates, on the one registry.
pub(super) struct RunnerMetrics {
    pub(super) dead_letters: IntCounterVec,
    pub(super) offset_store_failures: IntCounterVec,
    pub(super) commit_failures: IntCounterVec,
    pub(super) rebalances: IntCounterVec,
    pub(super) registry_unavailable: IntCounterVec,
    pub(super) worker_stops: IntCounterVec,
    pub(super) outputs_refused: IntCounterVec,
    pub(super) consumer_errors: IntCounterVec,
    pub(super) already_done: IntCounterVec,
    pub(super) cost_events_unsent: IntCounterVec,
    pub(super) requeued: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    metrics().registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

const COMMIT_FAILURES_HELP: &str = "Offset commits that failed, by when: background (the \
    periodic commit; routine while a group rebalances) or handover (a revocation's or shutdown's \
    last commit: the partitions' next owner replays all since the last commit that landed).";

pub(super) fn runner_metrics() -> &'static RunnerMetrics {
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
        commit_failures: counter("commit_failures_total", COMMIT_FAILURES_HELP, &["stage", "when"]),
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
        already_done: counter(
            "records_already_done_total",
            "Records skipped because the partition's previous owner had completed them.",
            &["topic"],
        ),
        cost_events_unsent: counter(
            "cost_events_unsent_total",
            "Cost events of billed calls that could not even be queued for the metering topic.",
            &["stage"],
        ),
        requeued: counter(
            "records_requeued_total",
            "Records not yet due that were moved to the end of their topic because they held \
             the partition's committed offset back.",
            &["topic"],
        ),
        consumer_errors: counter(
            "consumer_errors_total",
            "Errors reported by the consumer while polling.",
            &["stage"],
        ),
    })
}
