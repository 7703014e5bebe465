//! The review ledger: what every console replica derives from the review-claims topic, read in
//! log order (one partition). Needs-human records are written at least once, so one document
//! may sit in the queue more than once: the ledger keeps one state per *document* (its tenant
//! and id, carried by every step), so whichever copy a reviewer acts on, the document is open,
//! claimed, decided or done once:
//!
//! - `CLAIM` wins when nobody holds an unexpired claim on the document (at the claim's own time)
//!   or the claimant already holds it (a renewal); a claim on a decided or done document loses.
//! - `RELEASE` by the holder opens the document again.
//! - `DECIDE` counts only from the holder of a claim unexpired at the decision's time, and only
//!   once per document: the first counting decision is *the* decision, named by its offset; a
//!   second copy of the document decided by another reviewer does not count.
//! - `DONE` marks a document done whatever came before: it is written only after the counting
//!   decision's `Reviewed` record was acknowledged (or, for a record that cannot be decoded, when
//!   an operator discards it), and it must stand alone once compaction of the topic (keyed by
//!   item) removed the steps before it.
//!
//! Every replica applies the same records in the same order, so all agree on who holds what
//! and on the one decision per document, without talking to each other.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::avro::{HumanDecision, ReviewEvent, ReviewStep};

/// A needs-human record: its partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub partition: i32,
    pub offset: i64,
}

/// What one decision is about: a document (its tenant and id), or — for a record that cannot be
/// decoded — the record itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocKey {
    Document { tenant: String, id: String },
    Item(ItemKey),
}

impl DocKey {
    /// The document a step is about, as the step says.
    pub fn of_event(e: &ReviewEvent) -> Self {
        match &e.document {
            Some(id) => {
                Self::Document { tenant: e.tenant.clone().unwrap_or_default(), id: id.clone() }
            }
            None => Self::Item(ItemKey { partition: e.item_partition, offset: e.item_offset }),
        }
    }
}

/// The decision that counts for a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Offset of the `DECIDE` record in the review-claims topic.
    pub id: i64,
    /// The copy of the document that was decided: its record is the one produced.
    pub item: ItemKey,
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

#[derive(Debug, Default)]
struct Entry {
    state: ItemState,
    /// The records the steps of this document named: it is forgotten once all are committed.
    items: BTreeSet<ItemKey>,
}

/// The states of every document the review-claims topic mentions, and how far it was read.
#[derive(Debug, Default)]
pub struct Ledger {
    docs: HashMap<DocKey, Entry>,
    /// The next offset of the review-claims topic to apply.
    next: i64,
}

impl Ledger {
    pub fn state(&self, doc: &DocKey) -> ItemState {
        self.docs.get(doc).map(|e| e.state.clone()).unwrap_or_default()
    }

    /// Whether any step named `doc`.
    pub fn knows(&self, doc: &DocKey) -> bool {
        self.docs.contains_key(doc)
    }

    /// Offsets below this one are applied.
    pub fn next_offset(&self) -> i64 {
        self.next
    }

    /// Documents decided but not yet done, with their decisions.
    pub fn undone(&self) -> impl Iterator<Item = &Decision> {
        self.docs.values().filter_map(|e| match &e.state {
            ItemState::Decided(d) => Some(d),
            _ => None,
        })
    }

    /// Forgets the documents all of whose records are behind the queue's commits (`committed`
    /// per partition) and of which the queue `holds` no copy any more; returns their records,
    /// in order (their steps may go from the compacted topic now).
    pub fn forget(
        &mut self,
        committed: &BTreeMap<i32, i64>,
        holds: impl Fn(&DocKey) -> bool,
    ) -> Vec<ItemKey> {
        let behind = |k: &ItemKey| committed.get(&k.partition).is_some_and(|c| k.offset < *c);
        let mut gone = Vec::new();
        self.docs.retain(|doc, e| {
            let keep = !e.items.iter().all(behind) || holds(doc);
            if !keep {
                gone.extend(e.items.iter().copied());
            }
            keep
        });
        gone.sort();
        gone
    }

    /// Applies the record at `offset` of the review-claims topic, read at `now_ms`; records at
    /// or below an offset already applied are ignored (a re-read after a reconnect).
    pub fn apply(&mut self, offset: i64, e: Option<&ReviewEvent>, now_ms: i64) {
        if offset < self.next {
            return;
        }
        self.next = offset + 1;
        let Some(e) = e else { return };
        let item = ItemKey { partition: e.item_partition, offset: e.item_offset };
        let entry = self.docs.entry(DocKey::of_event(e)).or_default();
        entry.items.insert(item);
        let state = &mut entry.state;
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
                        item,
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
    const DOC: DocKey = DocKey::Item(ITEM);

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
            document: None,
            tenant: None,
        }
    }

    fn run(events: &[ReviewEvent]) -> Ledger {
        let mut l = Ledger::default();
        for (offset, e) in events.iter().enumerate() {
            l.apply(offset as i64, Some(e), 0);
        }
        l
    }

    fn holder(l: &Ledger, now: i64) -> Option<String> {
        l.state(&DOC).holder_at(now).map(|(_, h)| h.to_owned())
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
        assert!(l.state(&DOC).is_pending(), "b held no claim");
        let l = run(&[event(Claim, "a", 0), event(Decide, "a", 100)]);
        assert!(l.state(&DOC).is_pending(), "a decided after the claim lapsed");
        let l = run(&[
            event(Claim, "a", 0),
            event(Decide, "a", 10),
            event(Claim, "b", 500),
            event(Decide, "b", 510),
        ]);
        let ItemState::Decided(d) = l.state(&DOC) else { panic!("{:?}", l.state(&DOC)) };
        assert_eq!((d.id, d.holder.as_str()), (1, "a"), "the second decision does not count");
        assert_eq!(l.undone().count(), 1);
        let mut l = l;
        l.apply(4, Some(&event(Done, "b", 600)), 0);
        assert_eq!(l.state(&DOC), ItemState::Done, "any replica may finish a decision");
        l.apply(5, Some(&event(Claim, "c", 700)), 0);
        assert_eq!(l.state(&DOC), ItemState::Done, "a done item cannot be claimed");
        assert_eq!(l.undone().count(), 0);
    }

    #[test]
    fn done_stands_alone_after_compaction_and_rereads_are_ignored() {
        use ReviewStep::*;
        let l = run(&[event(Done, "a", 5), event(Claim, "b", 6)]);
        assert_eq!(l.state(&DOC), ItemState::Done, "only the last step survived compaction");
        let mut l = run(&[event(Claim, "a", 0), event(Claim, "b", 5)]);
        l.apply(0, Some(&event(Release, "a", 6)), 0);
        assert_eq!(holder(&l, 7).as_deref(), Some("a"), "offset 0 was applied already");
        assert_eq!(l.next_offset(), 2);
        assert_eq!(l.forget(&BTreeMap::from([(0, 8)]), |_| false), vec![ITEM]);
        assert_eq!(l.state(&DOC), ItemState::Open);
    }

    /// Two copies of one document (as an at-least-once write leaves them): one decision.
    #[test]
    fn two_copies_of_a_document_get_one_decision() {
        use ReviewStep::*;
        let copy = |offset: i64, step, holder: &str, at_ms| ReviewEvent {
            item_offset: offset,
            document: Some("d1".into()),
            tenant: Some("acme".into()),
            ..event(step, holder, at_ms)
        };
        let doc = DocKey::Document { tenant: "acme".into(), id: "d1".into() };
        let l = run(&[copy(7, Claim, "a", 0), copy(8, Claim, "b", 10)]);
        assert_eq!(l.state(&doc).holder_at(20).map(|(_, h)| h), Some("a"), "one claim per doc");
        let l = run(&[
            copy(7, Claim, "a", 0),
            copy(7, Decide, "a", 10),
            copy(8, Claim, "b", 500),
            copy(8, Decide, "b", 510),
        ]);
        let ItemState::Decided(d) = l.state(&doc) else { panic!("{:?}", l.state(&doc)) };
        assert_eq!((d.id, d.item.offset), (1, 7), "the second copy's decision does not count");
        let mut l = l;
        l.apply(4, Some(&copy(7, Done, "a", 600)), 0);
        assert_eq!(l.state(&doc), ItemState::Done);
        let at = |c: i64| BTreeMap::from([(0, c)]);
        assert!(l.forget(&at(8), |_| false).is_empty(), "copy 8 is not committed yet");
        assert_eq!(l.state(&doc), ItemState::Done);
        assert!(l.forget(&at(9), |_| true).is_empty(), "the queue holds a copy not named");
        assert_eq!(l.state(&doc), ItemState::Done, "remembered while a copy waits");
        assert_eq!(l.forget(&at(9), |_| false), vec![ITEM, ItemKey { partition: 0, offset: 8 }]);
        assert_eq!(
            l.state(&doc),
            ItemState::Open,
            "forgotten once every copy is behind the commit"
        );
    }
}
