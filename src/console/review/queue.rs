//! A review stage's queue as a console replica holds it: the needs-human records read so far
//! (at most `capacity` of them: a full queue stops reading a partition, *parks* it, and reads
//! on from where it stopped once decisions made room), the [`Ledger`] of claims and decisions,
//! and the offsets committed for the queue's group. Copies of one document are listed once.
//! Pure state: [`super::loops`] fills it, [`super::actions`] acts on it, the pages read it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::ledger::{DocKey, ItemKey, ItemState, Ledger};
use crate::avro::Envelope;

/// One needs-human record.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: ItemKey,
    pub timestamp_ms: i64,
    /// The record's `traceparent`, carried to the decision's record.
    pub traceparent: Option<Vec<u8>>,
    /// The record, or why it does not decode: it then holds the queue's commit, shown as
    /// "cannot display" until an operator discards it.
    pub envelope: Result<Envelope, String>,
}

impl Item {
    /// The document this record is a copy of; a record that does not decode is its own.
    pub fn doc(&self) -> DocKey {
        match &self.envelope {
            Ok(e) => {
                DocKey::Document { tenant: e.document.tenant.clone(), id: e.document.id.clone() }
            }
            Err(_) => DocKey::Item(self.key),
        }
    }

    pub fn tenant(&self) -> &str {
        self.envelope.as_ref().map_or("", |e| e.document.tenant.as_str())
    }

    pub fn label(&self) -> &str {
        self.envelope
            .as_ref()
            .ok()
            .and_then(|e| e.classification.as_ref())
            .map_or("", |c| c.label.as_str())
    }
}

/// Which pending items a page lists.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub tenant: Option<String>,
    pub label: Option<String>,
    /// The tenants the viewer may see; `None`: every tenant.
    pub scope: Option<BTreeSet<String>>,
}

impl QueueFilter {
    pub fn selects(&self, item: &Item) -> bool {
        self.tenant.as_deref().is_none_or(|t| item.tenant() == t)
            && self.label.as_deref().is_none_or(|l| item.label() == l)
            && self.scope.as_ref().is_none_or(|s| s.contains(item.tenant()))
    }
}

/// What became of a record offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Held,
    /// Read before, or its partition is parked: nothing to do.
    Ignored,
    /// The queue holds `capacity` records: the partition must be parked at this record.
    Full,
}

/// Pending items of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDepth {
    pub tenant: String,
    /// Every pending item, claimed or not.
    pub items: usize,
    /// Of `items`, those a reviewer holds an unexpired claim on (the rest wait for one).
    pub claimed: usize,
    pub oldest_ms: i64,
}

#[derive(Debug)]
pub struct QueueState {
    /// The most records held at once.
    pub capacity: usize,
    pub items: BTreeMap<ItemKey, Item>,
    pub ledger: Ledger,
    /// Per needs-human partition: the offset committed for the queue's group.
    pub committed: BTreeMap<i32, i64>,
    /// Per needs-human partition: the next offset to read.
    pub read_to: BTreeMap<i32, i64>,
    /// The tailer's last error, shown on the pages until it reads again.
    pub error: Option<String>,
    /// Partitions not read now because the queue was full: read on from `read_to` (or the
    /// commit) once there is room.
    pub parked: BTreeSet<i32>,
    /// Partitions whose group commit someone else moved back below what this replica knew
    /// (a replay it could not see), with the offset found: never committed again by this
    /// replica, which must be restarted to read from there.
    pub moved_back: BTreeMap<i32, i64>,
    /// Partitions whose group commit was found below what this replica knew on the last round
    /// only: another replica's commit racing this one's read looks the same for a round (its
    /// next round moves the group forward again), so a move back counts on the second round.
    pub suspected_back: BTreeMap<i32, i64>,
}

impl QueueState {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            items: BTreeMap::new(),
            ledger: Ledger::default(),
            committed: BTreeMap::new(),
            read_to: BTreeMap::new(),
            error: None,
            parked: BTreeSet::new(),
            moved_back: BTreeMap::new(),
            suspected_back: BTreeMap::new(),
        }
    }

    /// Offers a record read at `item.key`; a full queue holds nothing more.
    pub fn insert(&mut self, item: Item) -> Inserted {
        let key = item.key;
        let next = self.resume_at(key.partition);
        if self.parked.contains(&key.partition) || key.offset < next {
            return Inserted::Ignored;
        }
        if self.items.len() >= self.capacity {
            return Inserted::Full;
        }
        self.read_to.insert(key.partition, key.offset + 1);
        self.items.insert(key, item);
        Inserted::Held
    }

    /// Where a parked `partition` reads on from.
    pub fn resume_at(&self, partition: i32) -> i64 {
        let start = self.committed.get(&partition).copied().unwrap_or(0);
        self.read_to.get(&partition).copied().unwrap_or(start).max(start)
    }

    /// The state of the document `key` is a copy of.
    pub fn item_state(&self, key: ItemKey) -> ItemState {
        match self.items.get(&key) {
            Some(item) => self.state_of(item),
            None => self.ledger.state(&DocKey::Item(key)),
        }
    }

    /// The state of the document `item` is a copy of; steps that named no document (written
    /// before steps did) count for the record they name.
    pub fn state_of(&self, item: &Item) -> ItemState {
        let doc = item.doc();
        match self.ledger.knows(&doc) {
            true => self.ledger.state(&doc),
            false => self.ledger.state(&DocKey::Item(item.key)),
        }
    }

    /// Documents nobody decided yet, oldest first — one copy each — with their states (a
    /// claim may have lapsed). Records that cannot be decoded are listed by [`Self::undecodable`].
    pub fn pending(&self, filter: &QueueFilter) -> Vec<(&Item, ItemState)> {
        let mut all: Vec<&Item> =
            self.items.values().filter(|i| i.envelope.is_ok() && filter.selects(i)).collect();
        all.sort_by_key(|i| (i.timestamp_ms, i.key));
        let mut seen = HashSet::new();
        all.into_iter()
            .filter(|i| seen.insert(i.doc()))
            .map(|i| (i, self.state_of(i)))
            .filter(|(_, s)| s.is_pending())
            .collect()
    }

    /// How many records held are copies of `doc`.
    pub fn copies(&self, doc: &DocKey) -> usize {
        self.items.values().filter(|i| i.doc() == *doc).count()
    }

    /// Whether the copies of `doc` held differ in what a reviewer judges (the document's text or
    /// the answer): written again after a regeneration, or forged.
    pub fn copies_differ(&self, doc: &DocKey) -> bool {
        let judged = |i: &Item| {
            i.envelope
                .as_ref()
                .ok()
                .map(|e| (e.document.content.clone(), e.answer.as_ref().map(|a| a.text.clone())))
        };
        let mut seen = self.items.values().filter(|i| i.doc() == *doc).map(judged);
        let Some(first) = seen.next() else { return false };
        seen.any(|other| other != first)
    }

    /// Records that cannot be decoded and were not discarded: they hold the commit.
    pub fn undecodable(&self) -> Vec<&Item> {
        self.items
            .values()
            .filter(|i| i.envelope.is_err() && self.state_of(i) != ItemState::Done)
            .collect()
    }

    /// Pending items and the oldest one's timestamp, per tenant.
    pub fn depth(&self) -> Vec<TenantDepth> {
        depth_of(&self.pending(&QueueFilter::default()), crate::call::now_ms())
    }
}

/// Pending items (as [`QueueState::pending`] lists them), those claimed at `now_ms`, and the
/// oldest one's timestamp, per tenant.
pub fn depth_of(pending: &[(&Item, ItemState)], now_ms: i64) -> Vec<TenantDepth> {
    let mut by: BTreeMap<&str, TenantDepth> = BTreeMap::new();
    for (item, state) in pending {
        let d = by.entry(item.tenant()).or_insert_with(|| TenantDepth {
            tenant: item.tenant().to_owned(),
            items: 0,
            claimed: 0,
            oldest_ms: item.timestamp_ms,
        });
        d.items += 1;
        d.claimed += usize::from(state.holder_at(now_ms).is_some());
        d.oldest_ms = d.oldest_ms.min(item.timestamp_ms);
    }
    by.into_values().collect()
}

/// The tenants and labels of pending items, for the filters.
pub fn facets_of(pending: &[(&Item, ItemState)]) -> (BTreeSet<String>, BTreeSet<String>) {
    let tenants = pending.iter().map(|(i, _)| i.tenant().to_owned()).collect();
    let labels =
        pending.iter().map(|(i, _)| i.label().to_owned()).filter(|l| !l.is_empty()).collect();
    (tenants, labels)
}

impl QueueState {
    /// Per partition, where the queue's group may commit now, when that is past its commit: the
    /// first item not done (decided is not done: its record may not be acknowledged yet), or
    /// the end of what was read when every item read is done.
    pub fn commit_points(&self) -> Vec<(i32, i64)> {
        self.read_to
            .iter()
            .filter(|(partition, _)| !self.moved_back.contains_key(partition))
            .filter_map(|(&partition, &read_to)| {
                let first_open = self
                    .items
                    .range(
                        ItemKey { partition, offset: 0 }..=ItemKey { partition, offset: i64::MAX },
                    )
                    .find(|(_, i)| self.state_of(i) != ItemState::Done)
                    .map(|(k, _)| k.offset);
                let point = first_open.unwrap_or(read_to);
                let committed = self.committed.get(&partition).copied().unwrap_or(0);
                (point > committed).then_some((partition, point))
            })
            .collect()
    }

    /// Records that `partition` is committed at `offset`, and forgets what is behind it;
    /// returns the items the ledger forgot.
    pub fn committed_at(&mut self, partition: i32, offset: i64) -> Vec<ItemKey> {
        self.committed.insert(partition, offset);
        self.items.retain(|k, _| k.partition != partition || k.offset >= offset);
        let held: HashSet<DocKey> = self.items.values().map(Item::doc).collect();
        self.ledger.forget(&self.committed, |d| held.contains(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::{Document, HumanDecision, ReviewEvent, ReviewStep};

    fn item(partition: i32, offset: i64, tenant: &str, ts: i64) -> Item {
        let doc = Document {
            id: format!("d{offset}"),
            tenant: tenant.into(),
            content: String::new(),
            metadata: Default::default(),
        };
        Item {
            key: ItemKey { partition, offset },
            timestamp_ms: ts,
            traceparent: None,
            envelope: Ok(Envelope::new(doc)),
        }
    }

    fn step(state: &mut QueueState, at: i64, key: ItemKey, step: ReviewStep) {
        let e = ReviewEvent {
            item_partition: key.partition,
            item_offset: key.offset,
            step,
            reviewer: "r".into(),
            holder: "h".into(),
            at_ms: 0,
            expires_ms: 1_000,
            decision: Some(HumanDecision::Rejected),
            answer: None,
            note: None,
            document: Some(format!("d{}", key.offset)),
            tenant: Some("t".into()),
        };
        state.ledger.apply(at, Some(&e), 0);
    }

    #[test]
    fn the_commit_stops_at_the_first_item_not_done() {
        let mut s = QueueState::new(usize::MAX);
        s.committed.insert(0, 10);
        for o in 10..13 {
            s.insert(item(0, o, "t", o));
        }
        assert!(s.commit_points().is_empty());
        let k = |offset| ItemKey { partition: 0, offset };
        step(&mut s, 0, k(11), ReviewStep::Claim);
        step(&mut s, 1, k(11), ReviewStep::Decide);
        step(&mut s, 2, k(11), ReviewStep::Done);
        assert!(s.commit_points().is_empty(), "10 is still open");
        step(&mut s, 3, k(10), ReviewStep::Claim);
        step(&mut s, 4, k(10), ReviewStep::Decide);
        assert!(s.commit_points().is_empty(), "10 is decided but its record is not acknowledged");
        step(&mut s, 5, k(10), ReviewStep::Done);
        assert_eq!(s.commit_points(), vec![(0, 12)]);
        let forgotten = s.committed_at(0, 12);
        assert_eq!(
            forgotten,
            vec![ItemKey { partition: 0, offset: 10 }, ItemKey { partition: 0, offset: 11 }]
        );
        assert_eq!(s.items.len(), 1);
        step(&mut s, 6, k(12), ReviewStep::Claim);
        step(&mut s, 7, k(12), ReviewStep::Decide);
        step(&mut s, 8, k(12), ReviewStep::Done);
        assert_eq!(s.commit_points(), vec![(0, 13)], "all read are done: up to the end read");
    }

    #[test]
    fn pending_is_oldest_first_filtered_and_counted_per_tenant() {
        let mut s = QueueState::new(usize::MAX);
        s.insert(item(1, 0, "b", 30));
        s.insert(item(0, 5, "a", 20));
        s.insert(item(0, 6, "a", 10));
        let order: Vec<i64> =
            s.pending(&QueueFilter::default()).iter().map(|(i, _)| i.key.offset).collect();
        assert_eq!(order, vec![6, 5, 0]);
        let only_b = QueueFilter { tenant: Some("b".into()), ..QueueFilter::default() };
        assert_eq!(s.pending(&only_b).len(), 1);
        let depth = s.depth();
        assert_eq!(
            depth[0],
            TenantDepth { tenant: "a".into(), items: 2, claimed: 0, oldest_ms: 10 }
        );
        assert_eq!(depth[1].items, 1);
        let claim = ReviewEvent {
            item_partition: 0,
            item_offset: 6,
            step: ReviewStep::Claim,
            reviewer: "r".into(),
            holder: "h".into(),
            at_ms: 0,
            expires_ms: 1_000,
            decision: None,
            answer: None,
            note: None,
            document: Some("d6".into()),
            tenant: Some("a".into()),
        };
        s.ledger.apply(0, Some(&claim), 0);
        let depth = depth_of(&s.pending(&QueueFilter::default()), 500);
        assert_eq!((depth[0].items, depth[0].claimed), (2, 1), "claimed items are told apart");
        let lapsed = depth_of(&s.pending(&QueueFilter::default()), 1_000);
        assert_eq!(lapsed[0].claimed, 0, "a lapsed claim waits again");
    }

    #[test]
    fn a_full_queue_holds_no_more_and_reads_on_from_the_record_that_did_not_fit() {
        let capacity = 2;
        let mut s = QueueState::new(capacity);
        s.committed.insert(0, 10);
        assert_eq!(s.insert(item(0, 9, "t", 1)), Inserted::Ignored, "behind the commit");
        assert_eq!(s.insert(item(0, 10, "t", 1)), Inserted::Held);
        assert_eq!(s.insert(item(0, 11, "t", 1)), Inserted::Held);
        assert_eq!(s.insert(item(0, 12, "t", 1)), Inserted::Full);
        assert_eq!(s.items.len(), capacity);
        s.parked.insert(0);
        assert_eq!(s.insert(item(0, 13, "t", 1)), Inserted::Ignored, "fetched before parking");
        assert_eq!(s.resume_at(0), 12, "the record that did not fit is read again");
        let k = |offset| ItemKey { partition: 0, offset };
        for (at, step_) in
            [ReviewStep::Claim, ReviewStep::Decide, ReviewStep::Done].into_iter().enumerate()
        {
            step(&mut s, at as i64, k(10), step_);
        }
        assert_eq!(s.commit_points(), vec![(0, 11)]);
        s.committed_at(0, 11);
        s.parked.clear();
        assert_eq!(s.insert(item(0, 11, "t", 1)), Inserted::Ignored, "read already");
        assert_eq!(s.insert(item(0, 12, "t", 1)), Inserted::Held, "room again");
    }

    #[test]
    fn copies_of_a_document_are_listed_once() {
        let mut s = QueueState::new(usize::MAX);
        let copy = |offset| {
            let mut i = item(0, offset, "t", offset);
            if let Ok(e) = i.envelope.as_mut() {
                e.document.id = "same".into();
            }
            i
        };
        s.insert(copy(0));
        s.insert(copy(1));
        s.insert(item(0, 2, "t", 2));
        let listed: Vec<i64> =
            s.pending(&QueueFilter::default()).iter().map(|(i, _)| i.key.offset).collect();
        assert_eq!(listed, vec![0, 2], "the oldest copy stands for the document");
        assert_eq!(s.copies(&s.items[&ItemKey { partition: 0, offset: 1 }].doc()), 2);
    }
}
