//! Events of the budget ledger: claims skipped as malformed, waits for the schema registry, and
//! claims that could not be decided. Label values are the ledger topic's name (from the
//! topology), never tenant ids or budget keys.
//!
//! The metric families live here and register themselves in the one registry on first use.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};

use super::metrics;

pub struct BudgetMetrics {
    /// Ledger records that are not a readable claim (never will be), by ledger topic.
    pub claims_skipped: IntCounterVec,
    /// Times the ledger reader waited for the schema registry before applying a claim.
    pub registry_waits: IntCounterVec,
    /// Claims this process could not get decided (broker or ledger reader unavailable).
    pub claim_failures: IntCounterVec,
}

/// The budget ledger's metric families, registered in the process registry on first use.
pub fn budget_metrics() -> &'static BudgetMetrics {
    static METRICS: OnceLock<BudgetMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["topic"]).expect("valid");
            metrics().registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        BudgetMetrics {
            claims_skipped: counter(
                "budget_ledger_claims_skipped_total",
                "Ledger records skipped because they are not a readable budget claim.",
            ),
            registry_waits: counter(
                "budget_ledger_registry_waits_total",
                "Waits for the schema registry before a ledger claim could be applied.",
            ),
            claim_failures: counter(
                "budget_claim_failures_total",
                "Budget claims that got no decision from the ledger.",
            ),
        }
    })
}

/// A ledger record that can never be read as a claim was skipped (every replica skips it the
/// same way, so their totals stay equal). Someone wrote something else to the ledger topic.
pub struct LedgerClaimSkipped<'a> {
    pub topic: &'a str,
    pub offset: i64,
    pub reason: &'a str,
}

impl LedgerClaimSkipped<'_> {
    pub fn emit(self) {
        budget_metrics().claims_skipped.with_label_values(&[self.topic]).inc();
        tracing::error!(
            topic = self.topic,
            offset = self.offset,
            reason = self.reason,
            "malformed budget claim skipped"
        );
    }
}

/// The ledger reader could not reach the schema registry: it holds its position and retries,
/// so no replica decides a claim the others have not seen.
pub struct LedgerRegistryWait<'a> {
    pub topic: &'a str,
    pub offset: i64,
    pub error: &'a str,
    pub retry_in: Duration,
}

impl LedgerRegistryWait<'_> {
    pub fn emit(self) {
        budget_metrics().registry_waits.with_label_values(&[self.topic]).inc();
        tracing::warn!(
            topic = self.topic,
            offset = self.offset,
            error = self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "schema registry unavailable: budget ledger waits before this claim"
        );
    }
}

/// A budget claim got no decision; the call waits and is retried shortly.
pub struct BudgetClaimFailed<'a> {
    pub topic: &'a str,
    pub error: &'a str,
}

impl BudgetClaimFailed<'_> {
    pub fn emit(self) {
        budget_metrics().claim_failures.with_label_values(&[self.topic]).inc();
        tracing::warn!(
            topic = self.topic,
            error = self.error,
            "budget claim failed; the call is retried shortly"
        );
    }
}

/// The ledger's consumer reported an error (a broker down, a partition moving); it keeps polling.
pub struct LedgerReadFailed<'a> {
    pub topic: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl LedgerReadFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(topic = self.topic, error = %self.error, "budget ledger read failed");
    }
}
