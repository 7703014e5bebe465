//! An exactly-once stage's transactions: each commit and abort, counted by outcome.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};

use super::metrics;

fn transactions() -> &'static IntCounterVec {
    static C: OnceLock<IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        let opts = Opts::new(
            "transactions_total",
            "Transactions of exactly-once stages, by outcome: committed, or aborted (its records \
             are read again from the last committed offsets and processed again).",
        );
        let c = IntCounterVec::new(opts, &["stage", "outcome"]).expect("valid metric");
        metrics().registry.register(Box::new(c.clone())).expect("unique metric");
        c
    })
}

/// A transaction committed.
pub struct TransactionCommitted<'a> {
    pub stage: &'a str,
    pub records: usize,
    pub elapsed: Duration,
}

impl TransactionCommitted<'_> {
    pub fn emit(self) {
        transactions().with_label_values(&[self.stage, "committed"]).inc();
        tracing::debug!(
            stage = self.stage,
            records = self.records,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "transaction committed"
        );
    }
}

/// A transaction aborted: its records are processed again.
pub struct TransactionAborted<'a> {
    pub stage: &'a str,
    pub records: usize,
    pub reason: &'a str,
}

impl TransactionAborted<'_> {
    pub fn emit(self) {
        transactions().with_label_values(&[self.stage, "aborted"]).inc();
        tracing::warn!(
            stage = self.stage,
            records = self.records,
            reason = self.reason,
            "transaction aborted; its records are read again from the last committed offsets"
        );
    }
}
