//! The consumer side of an exactly-once stage: rewinding partitions whose transaction aborted
//! (on the poll thread), and handing revoked partitions over through the committer.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{Nowhere, Partitions, RunnerContext, Tp, Transactions};
use crate::telemetry::{RebalanceKind, Rebalanced};

/// Exactly once: seeks the partitions whose transaction aborted back to their last committed
/// positions, then reads them again. A partition that cannot be sought stops the worker: read
/// on from where it was, it would skip what the aborted transaction held.
pub(super) fn rewind(consumer: &BaseConsumer<RunnerContext>, partitions: &Partitions, stage: &str) {
    for (tp, position) in partitions.take_rewinds() {
        let offset = rdkafka::Offset::Offset(position);
        match consumer.seek(&tp.0, tp.1, offset, Duration::from_secs(10)) {
            Ok(()) => partitions.rewound(&tp),
            Err(e) => {
                let reason = format!("cannot read {}:{} again from {position}: {e}", tp.0, tp.1);
                crate::telemetry::WorkerStopped { stage, reason: &reason }.emit();
                if let Some(txn) = consumer.context().txn.get() {
                    txn.stop_worker(reason);
                }
            }
        }
    }
}

impl RunnerContext {
    /// Exactly once: a revocation drains the revoked partitions (up to the grace period), then
    /// commits the open transaction with their positions before they are handed over; a lost
    /// assignment aborts it (its offsets can no longer be committed by this member).
    pub(super) fn hand_over_in_transaction(
        &self,
        consumer: &BaseConsumer<Self>,
        txn: &Transactions,
        revoked: &[Tp],
    ) {
        let lost = consumer.assignment_lost();
        let grace = if lost { Duration::ZERO } else { self.grace };
        self.partitions.drain(revoked, grace);
        let committed = if lost {
            txn.abort_now();
            false
        } else {
            let set: BTreeSet<Tp> = revoked.iter().cloned().collect();
            txn.commit_now(self.partitions.positions(&set))
        };
        let abandoned = self.partitions.revoke(revoked, Duration::ZERO, &Nowhere);
        let kind = if lost { RebalanceKind::Lost } else { RebalanceKind::Revoked };
        let (stage, partitions) = (&self.stage, revoked.len());
        Rebalanced { stage, kind, partitions, abandoned, committed }.emit();
    }
}
