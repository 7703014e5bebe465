//! Events of the web console's review queue: each decision (logged with its reviewer, counted by
//! stage and decision — reviewers are not a label, their number is unbounded) and the queue's
//! size and age per stage, for alerting on a queue nobody works.

use std::sync::OnceLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use super::metrics;

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    metrics().registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// `sluice_review_decisions_total{stage, decision}`.
fn decisions() -> &'static IntCounterVec {
    static C: OnceLock<IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        let opts = Opts::new("review_decisions_total", "Decisions made in the review queue.");
        register(IntCounterVec::new(opts, &["stage", "decision"]).expect("valid"))
    })
}

/// `sluice_review_queue_items{stage}` and `sluice_review_queue_oldest_seconds{stage}`.
fn queue() -> &'static (IntGaugeVec, IntGaugeVec) {
    static G: OnceLock<(IntGaugeVec, IntGaugeVec)> = OnceLock::new();
    G.get_or_init(|| {
        let items = Opts::new("review_queue_items", "Needs-human records nobody decided yet.");
        let oldest =
            Opts::new("review_queue_oldest_seconds", "Age of the oldest undecided record.");
        (
            register(IntGaugeVec::new(items, &["stage"]).expect("valid")),
            register(IntGaugeVec::new(oldest, &["stage"]).expect("valid")),
        )
    })
}

/// A reviewer's decision counted (its record acknowledged follows separately).
pub struct ReviewDecided<'a> {
    pub stage: &'a str,
    /// `partition/offset` of the needs-human record.
    pub item: &'a str,
    pub reviewer: &'a str,
    /// `approved` or `rejected`.
    pub decision: &'a str,
}

impl ReviewDecided<'_> {
    pub fn emit(self) {
        decisions().with_label_values(&[self.stage, self.decision]).inc();
        tracing::info!(
            stage = self.stage,
            item = self.item,
            reviewer = self.reviewer,
            decision = self.decision,
            "review decision"
        );
    }
}

/// The review queue of a stage as a console replica sees it.
pub struct ReviewQueueSize<'a> {
    pub stage: &'a str,
    pub items: usize,
    pub oldest_seconds: i64,
}

impl ReviewQueueSize<'_> {
    pub fn emit(self) {
        let (items, oldest) = queue();
        items.with_label_values(&[self.stage]).set(self.items as i64);
        oldest.with_label_values(&[self.stage]).set(self.oldest_seconds);
    }
}
