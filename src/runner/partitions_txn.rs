//! What an exactly-once stage's partitions add to [`Partitions`]: records complete as they enter
//! the open transaction (never with a map that would leave them out), each commit records the
//! positions it committed, and an aborted transaction rewinds its partitions to them — the state
//! is dropped at once (its records are refused from then on), and the poll thread seeks back
//! and reads them again ([`Partitions::take_rewinds`], [`Partitions::rewound`]).

use std::collections::BTreeSet;

use super::{completed, OffsetStore, PartState, Partitions, Tp};

/// A partition's place as a transaction commits it: the next offset to read, and the offsets
/// done above it (the completed-offset map).
pub type Position = (Tp, i64, BTreeSet<i64>);

/// How adding a record to the open transaction went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Complete: its outputs go into this transaction.
    Done,
    /// Its partition was revoked or rewound: its outputs go nowhere.
    Stale,
    /// Its partition's map cannot name it (too many offsets done behind a slow record): it
    /// waits for a later transaction.
    Full,
}

/// Positions are computed by the transaction, not stored in the consumer.
pub struct Nowhere;

impl OffsetStore for Nowhere {
    fn store(&self, _: &Tp, _: i64, _: &str) {}
}

impl Partitions {
    /// Completes a record as its outputs enter the open transaction: its offset and key are
    /// released like [`Partitions::complete`]'s, nothing is stored in the consumer.
    pub fn add_to_transaction(
        &self,
        tp: &Tp,
        epoch: u64,
        offset: i64,
        key: Option<&[u8]>,
    ) -> Added {
        let mut inner = self.lock();
        let Some(state) = inner.parts.get_mut(tp).filter(|s| s.epoch == epoch && !s.rewinding)
        else {
            return Added::Stale;
        };
        if let Some((position, done)) = state.window.progress() {
            // The lowest open offset advances the position: its map only shrinks. Others are
            // checked without a copy of the map while it is small (the usual case).
            let near = |o: i64| o - position < completed::NEAR;
            let small = done.len() < completed::SMALL
                && near(offset)
                && done.last().is_none_or(|last| near(*last));
            if !small && state.window.lowest_open() != Some(offset) {
                let mut with = done.clone();
                with.insert(offset);
                if !completed::fits(position, &with) {
                    return Added::Full;
                }
            }
        }
        self.finish(state, tp, offset, key, &Nowhere);
        drop(inner);
        self.changed.notify_all();
        Added::Done
    }

    /// Where each of `tps` stands now: what the open transaction commits.
    pub fn positions(&self, tps: &BTreeSet<Tp>) -> Vec<Position> {
        let inner = self.lock();
        tps.iter()
            .filter_map(|tp| {
                let state = inner.parts.get(tp).filter(|s| !s.rewinding)?;
                let (position, done) = state.window.progress()?;
                Some((tp.clone(), position, done.clone()))
            })
            .collect()
    }

    /// A transaction committed `positions`: an abort from now on returns to them.
    pub fn committed(&self, positions: &[Position]) {
        let mut inner = self.lock();
        for (tp, position, done) in positions {
            if let Some(state) = inner.parts.get_mut(tp) {
                state.committed = Some((*position, done.clone()));
            }
        }
    }

    /// A transaction with records of `tps` aborted: each partition's state is dropped (its
    /// records in flight are refused from now on, parked ones end) and it is read again from its
    /// last committed position once the poll thread has sought there.
    pub fn rewind(&self, tps: &BTreeSet<Tp>) {
        let mut inner = self.lock();
        for tp in tps {
            let epoch = inner.next_epoch;
            let Some(state) = inner.parts.get_mut(tp) else { continue };
            let Some((position, done)) = state.committed.clone() else { continue };
            inner.next_epoch += 1;
            let mut fresh = PartState::fresh(epoch, done.clone());
            fresh.committed = Some((position, done));
            fresh.rewinding = true;
            inner.parts.insert(tp.clone(), fresh);
        }
        drop(inner);
        self.changed.notify_all();
    }

    /// The partitions waiting to be read again, with the offset to seek to (poll thread).
    pub fn take_rewinds(&self) -> Vec<(Tp, i64)> {
        let inner = self.lock();
        let waiting = inner.parts.iter().filter(|(_, s)| s.rewinding);
        waiting.filter_map(|(tp, s)| Some((tp.clone(), s.committed.as_ref()?.0))).collect()
    }

    /// The poll thread sought `tp` back to its committed position: it is read again.
    pub fn rewound(&self, tp: &Tp) {
        if let Some(state) = self.lock().parts.get_mut(tp) {
            state.rewinding = false;
        }
    }
}

#[cfg(test)]
#[path = "partitions_txn_tests.rs"]
mod tests;
