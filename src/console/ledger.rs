//! The review ledger: what every console replica derives from the review-claims topic, read in
//! log order (one partition). Each needs-human item is open, claimed, decided or done:
//!
//! - `CLAIM` wins when nobody holds an unexpired claim (at the claim's own time) or the claimant
//!   already holds it (a renewal); a claim on a decided or done item loses.
//! - `RELEASE` by the holder opens the item again.
//! - `DECIDE` counts only from the holder of a claim unexpired at the decision's time, and only
//!   once: the first counting decision is *the* decision, named by its offset.
//! - `DONE` marks an item done whatever came before: it is written only after the counting
//!   decision's `Reviewed` record was acknowledged, and it must stand alone once compaction of
//!   the topic (keyed by item) removed the steps before it.
//!
//! Every replica applies the same records in the same order, so all agree on who holds what
//! and on the one decision per item, without talking to each other.

use std::collections::HashMap;

use crate::avro::{HumanDecision, ReviewEvent, ReviewStep};

/// A needs-human record: its partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub partition: i32,
    pub offset: i64,
}

/// The decision that counts for an item.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Offset of the `DECIDE` record in the review-claims topic.
    pub id: i64,
    pub reviewer: String,
    pub holder: String,
    pub decision: HumanDecision,
    pub answer: Option<String>,
    pub note: String,
    /// When the deciding replica decided (its clock).
    pub at_ms: i64,
    /// When this replica applied the decision (its own clock): what the finisher waits from.
    pub seen_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum ItemState {
    #[default]
    Open,
    Claimed {
        reviewer: String,
        holder: String,
        expires_ms: i64,
    },
    Decided(Decision),
    Done,
}

impl ItemState {
    /// Who holds an unexpired claim at `now_ms`.
    pub fn holder_at(&self, now_ms: i64) -> Option<(&str, &str)> {
        match self {
            Self::Claimed { reviewer, holder, expires_ms } if *expires_ms > now_ms => {
                Some((reviewer, holder))
            }
            _ => None,
        }
    }

    /// Open, or claimed by a claim that lapsed before `now_ms`: anyone may claim it.
    pub fn is_pending(&self) -> bool {
        matches!(self, Self::Open | Self::Claimed { .. })
    }
}

/// The states of every item the review-claims topic mentions, and how far it was read.
#[derive(Debug, Default)]
pub struct Ledger {
    states: HashMap<ItemKey, ItemState>,
    /// The next offset of the review-claims topic to apply.
    next: i64,
}

impl Ledger {
    pub fn state(&self, key: ItemKey) -> ItemState {
        self.states.get(&key).cloned().unwrap_or_default()
    }

    /// Offsets below this one are applied.
    pub fn next_offset(&self) -> i64 {
        self.next
    }

    /// Items decided but not yet done, with their decisions.
    pub fn undone(&self) -> impl Iterator<Item = (ItemKey, &Decision)> {
        self.states.iter().filter_map(|(k, s)| match s {
            ItemState::Decided(d) => Some((*k, d)),
            _ => None,
        })
    }

    /// Forgets items below `committed` on `partition` (their records are behind the queue);
    /// returns them, in order.
    pub fn forget_below(&mut self, partition: i32, committed: i64) -> Vec<ItemKey> {
        let mut gone: Vec<ItemKey> = self
            .states
            .keys()
            .filter(|k| k.partition == partition && k.offset < committed)
            .copied()
            .collect();
        gone.sort();
        for k in &gone {
            self.states.remove(k);
        }
        gone
    }

    /// Applies the record at `offset` of the review-claims topic, read at `now_ms`; records at
    /// or below an offset already applied are ignored (a re-read after a reconnect).
    pub fn apply(&mut self, offset: i64, e: &ReviewEvent, now_ms: i64) {
        if offset < self.next {
            return;
        }
        self.next = offset + 1;
        let key = ItemKey { partition: e.item_partition, offset: e.item_offset };
        let state = self.states.entry(key).or_default();
        let held_by_claimant = state.holder_at(e.at_ms).is_some_and(|(_, h)| h == e.holder);
        match e.step {
            ReviewStep::Claim
                if state.is_pending()
                    && (held_by_claimant || state.holder_at(e.at_ms).is_none()) =>
            {
                *state = ItemState::Claimed {
                    reviewer: e.reviewer.clone(),
                    holder: e.holder.clone(),
                    expires_ms: e.expires_ms,
                };
            }
            ReviewStep::Release if held_by_claimant => *state = ItemState::Open,
            ReviewStep::Decide if held_by_claimant => {
                if let Some(decision) = e.decision {
                    *state = ItemState::Decided(Decision {
                        id: offset,
                        reviewer: e.reviewer.clone(),
                        holder: e.holder.clone(),
                        decision,
                        answer: e.answer.clone(),
                        note: e.note.clone().unwrap_or_default(),
                        at_ms: e.at_ms,
                        seen_ms: now_ms,
                    });
                }
            }
            ReviewStep::Done => *state = ItemState::Done,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEM: ItemKey = ItemKey { partition: 0, offset: 7 };

    fn event(step: ReviewStep, holder: &str, at_ms: i64) -> ReviewEvent {
        ReviewEvent {
            item_partition: ITEM.partition,
            item_offset: ITEM.offset,
            step,
            reviewer: format!("reviewer of {holder}"),
            holder: holder.into(),
            at_ms,
            expires_ms: if step == ReviewStep::Claim { at_ms + 100 } else { 0 },
            decision: (step == ReviewStep::Decide).then_some(HumanDecision::Approved),
            answer: None,
            note: None,
        }
    }

    fn run(events: &[ReviewEvent]) -> Ledger {
        let mut l = Ledger::default();
        for (offset, e) in events.iter().enumerate() {
            l.apply(offset as i64, e, 0);
        }
        l
    }

    fn holder(l: &Ledger, now: i64) -> Option<String> {
        l.state(ITEM).holder_at(now).map(|(_, h)| h.to_owned())
    }

    #[test]
    fn the_first_claim_wins_until_it_expires() {
        use ReviewStep::*;
        let l = run(&[event(Claim, "a", 0), event(Claim, "b", 50)]);
        assert_eq!(holder(&l, 60).as_deref(), Some("a"), "b claimed while a held it");
        let l = run(&[event(Claim, "a", 0), event(Claim, "b", 100)]);
        assert_eq!(holder(&l, 150).as_deref(), Some("b"), "a's claim had lapsed at 100");
        let l = run(&[event(Claim, "a", 0), event(Claim, "a", 90)]);
        assert_eq!(holder(&l, 150).as_deref(), Some("a"), "a renewed until 190");
        let l = run(&[event(Claim, "a", 0), event(Release, "b", 10), event(Claim, "b", 20)]);
        assert_eq!(holder(&l, 30).as_deref(), Some("a"), "only the holder releases");
        let l = run(&[event(Claim, "a", 0), event(Release, "a", 10), event(Claim, "b", 20)]);
        assert_eq!(holder(&l, 30).as_deref(), Some("b"));
    }

    #[test]
    fn only_the_holders_first_decision_counts() {
        use ReviewStep::*;
        let l = run(&[event(Claim, "a", 0), event(Decide, "b", 10)]);
        assert!(l.state(ITEM).is_pending(), "b held no claim");
        let l = run(&[event(Claim, "a", 0), event(Decide, "a", 100)]);
        assert!(l.state(ITEM).is_pending(), "a decided after the claim lapsed");
        let l = run(&[
            event(Claim, "a", 0),
            event(Decide, "a", 10),
            event(Claim, "b", 500),
            event(Decide, "b", 510),
        ]);
        let ItemState::Decided(d) = l.state(ITEM) else { panic!("{:?}", l.state(ITEM)) };
        assert_eq!((d.id, d.holder.as_str()), (1, "a"), "the second decision does not count");
        assert_eq!(l.undone().count(), 1);
        let mut l = l;
        l.apply(4, &event(Done, "b", 600), 0);
        assert_eq!(l.state(ITEM), ItemState::Done, "any replica may finish a decision");
        l.apply(5, &event(Claim, "c", 700), 0);
        assert_eq!(l.state(ITEM), ItemState::Done, "a done item cannot be claimed");
        assert_eq!(l.undone().count(), 0);
    }

    #[test]
    fn done_stands_alone_after_compaction_and_rereads_are_ignored() {
        use ReviewStep::*;
        let l = run(&[event(Done, "a", 5), event(Claim, "b", 6)]);
        assert_eq!(l.state(ITEM), ItemState::Done, "only the last step survived compaction");
        let mut l = run(&[event(Claim, "a", 0), event(Claim, "b", 5)]);
        l.apply(0, &event(Release, "a", 6), 0);
        assert_eq!(holder(&l, 7).as_deref(), Some("a"), "offset 0 was applied already");
        assert_eq!(l.next_offset(), 2);
        assert_eq!(l.forget_below(0, 8), vec![ITEM]);
        assert_eq!(l.state(ITEM), ItemState::Open);
    }
}
