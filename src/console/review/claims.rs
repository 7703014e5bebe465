//! The review-claims topic as a log-ordered ledger ([`crate::kafka::ledger`]): read in log
//! order into the queue state's [`super::ledger::Ledger`], its reader reporting through the
//! console's typed events.

use std::time::Duration;

use super::queue::QueueState;
use crate::avro::ReviewEvent;
use crate::call::now_ms;
use crate::console::events::{ClaimSkipped, QueueTrouble};
use crate::kafka::ledger::{Book, LedgerEvents};

/// The review-claims topic is read in log order into the queue's ledger.
impl Book for QueueState {
    type Entry = ReviewEvent;

    fn apply(&mut self, offset: i64, entry: Option<ReviewEvent>) {
        // A tombstone (an item behind the queue's commit) or a record no replica can read:
        // nothing to apply, but the offset is passed alike by every replica.
        self.ledger.apply(offset, entry.as_ref(), now_ms());
    }
}

/// The claims ledger's reader reports as the console's typed events.
pub(super) struct ClaimsEvents {
    pub(super) stage: String,
}

impl LedgerEvents for ClaimsEvents {
    fn read_failed(&self, _topic: &str, error: &rdkafka::error::KafkaError) {
        let error = error.to_string();
        QueueTrouble { stage: &self.stage, what: "claims", error: &error }.emit();
    }

    fn registry_wait(&self, _topic: &str, offset: i64, error: &str, _retry_in: Duration) {
        let error = format!("schema registry unavailable at claims offset {offset}: {error}");
        QueueTrouble { stage: &self.stage, what: "claims", error: &error }.emit();
    }

    fn skipped(&self, _topic: &str, offset: i64, reason: &str) {
        ClaimSkipped { stage: &self.stage, offset, error: reason }.emit();
    }
}
