//! A review stage's queue as a console replica holds it: the needs-human records read so far,
//! the [`Ledger`] of claims and decisions, and the offsets committed for the queue's group.
//! Pure state: [`super::loops`] fills it, [`super::actions`] acts on it, the pages read it.

use std::collections::{BTreeMap, BTreeSet};

use super::ledger::{ItemKey, ItemState, Ledger};
use crate::avro::Envelope;

/// One needs-human record.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: ItemKey,
    pub timestamp_ms: i64,
    /// The record's `traceparent`, carried to the decision's record.
    pub traceparent: Option<Vec<u8>>,
    /// The record, or why it does not decode (it then holds the queue's commit: nothing is lost).
    pub envelope: Result<Envelope, String>,
}

impl Item {
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
}

impl QueueFilter {
    pub fn selects(&self, item: &Item) -> bool {
        self.tenant.as_deref().is_none_or(|t| item.tenant() == t)
            && self.label.as_deref().is_none_or(|l| item.label() == l)
    }
}

/// Pending items of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDepth {
    pub tenant: String,
    pub items: usize,
    pub oldest_ms: i64,
}

#[derive(Debug, Default)]
pub struct QueueState {
    pub items: BTreeMap<ItemKey, Item>,
    pub ledger: Ledger,
    /// Per needs-human partition: the offset committed for the queue's group.
    pub committed: BTreeMap<i32, i64>,
    /// Per needs-human partition: the next offset to read.
    pub read_to: BTreeMap<i32, i64>,
    /// The tailer's last error, shown on the pages until it reads again.
    pub error: Option<String>,
}

impl QueueState {
    /// Adds a record read at `item.key`.
    pub fn insert(&mut self, item: Item) {
        let key = item.key;
        let next = self.read_to.entry(key.partition).or_insert(key.offset + 1);
        *next = (*next).max(key.offset + 1);
        if key.offset >= self.committed.get(&key.partition).copied().unwrap_or(0) {
            self.items.insert(key, item);
        }
    }

    /// Items nobody decided yet, oldest first, with their states (a claim may have lapsed).
    pub fn pending(&self, filter: &QueueFilter) -> Vec<(&Item, ItemState)> {
        let mut out: Vec<(&Item, ItemState)> = self
            .items
            .values()
            .filter(|i| filter.selects(i))
            .map(|i| (i, self.ledger.state(i.key)))
            .filter(|(_, s)| s.is_pending())
            .collect();
        out.sort_by_key(|(i, _)| (i.timestamp_ms, i.key));
        out
    }

    /// Pending items and the oldest one's timestamp, per tenant.
    pub fn depth(&self) -> Vec<TenantDepth> {
        depth_of(&self.pending(&QueueFilter::default()))
    }
}

/// Pending items (as [`QueueState::pending`] lists them) and the oldest one's timestamp, per
/// tenant.
pub fn depth_of(pending: &[(&Item, ItemState)]) -> Vec<TenantDepth> {
    let mut by: BTreeMap<&str, TenantDepth> = BTreeMap::new();
    for (item, _) in pending {
        let d = by.entry(item.tenant()).or_insert_with(|| TenantDepth {
            tenant: item.tenant().to_owned(),
            items: 0,
            oldest_ms: item.timestamp_ms,
        });
        d.items += 1;
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
            .filter_map(|(&partition, &read_to)| {
                let first_open = self
                    .items
                    .range(
                        ItemKey { partition, offset: 0 }..=ItemKey { partition, offset: i64::MAX },
                    )
                    .find(|(k, _)| self.ledger.state(**k) != ItemState::Done)
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
        self.ledger.forget_below(partition, offset)
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
        };
        state.ledger.apply(at, &e, 0);
    }

    #[test]
    fn the_commit_stops_at_the_first_item_not_done() {
        let mut s = QueueState::default();
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
        let mut s = QueueState::default();
        s.insert(item(1, 0, "b", 30));
        s.insert(item(0, 5, "a", 20));
        s.insert(item(0, 6, "a", 10));
        let order: Vec<i64> =
            s.pending(&QueueFilter::default()).iter().map(|(i, _)| i.key.offset).collect();
        assert_eq!(order, vec![6, 5, 0]);
        let only_b = QueueFilter { tenant: Some("b".into()), label: None };
        assert_eq!(s.pending(&only_b).len(), 1);
        let depth = s.depth();
        assert_eq!(depth[0], TenantDepth { tenant: "a".into(), items: 2, oldest_ms: 10 });
        assert_eq!(depth[1].items, 1);
    }
}
