//! The runner's view of its assigned partitions: each one's offset window, processing slots,
//! parked records and per-key queues, behind one mutex so that storing offsets and handing out
//! work happen in a single order. Admissions come from the poll thread, completions from worker
//! tasks, revocation from the rebalance callback, which waits here (bounded) for the records it
//! must finish.
//!
//! A record is in exactly one place: parked (waiting for its due time; it holds its offset but
//! no processing slot and no room in the window), waiting behind an earlier record of its key,
//! ready (waiting for a slot), running (at most `per_partition`), processed and waiting for its
//! outputs' acknowledgements, or being moved to the end of its topic.
//!
//! Only records of the stage's own retry and deferred topics are ever parked (their due times
//! differ per record: a provider's Retry-After, a tenant's next budget window). What is parked is
//! bounded by memory ([`super::partition::MAX_PARKED_BYTES`] per partition), not by the window, so long waits never
//! stop records behind them. A parked record at the head of its partition holds the committed
//! offset back; once a whole window's worth of records behind it has completed
//! (`per_partition + buffer`), it is moved to the end of its topic ([`Dispatch::Requeue`]) and its
//! offset completes — one extra produce per window's worth of progress, never a busy loop (with
//! nothing behind it completing, nothing moves).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;

use super::completed;
use super::inbound::Inbound;
pub use super::partition::{Dispatch, Job, Tp};
use super::partition::{Parked, PartState};
use super::window::Window;
use crate::call::now_ms;

/// Where a newly stored position goes — with its metadata, the completed-offset map — the
/// consumer (its offset store, committed in the background), or a test's record.
pub trait OffsetStore {
    fn store(&self, tp: &Tp, position: i64, metadata: &str);
}

impl<C: ConsumerContext> OffsetStore for BaseConsumer<C> {
    fn store(&self, tp: &Tp, position: i64, metadata: &str) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(position)).expect("valid offset");
        if !metadata.is_empty() {
            if let Some(mut e) = tpl.find_partition(&tp.0, tp.1) {
                e.set_metadata(metadata);
            }
        }
        if let Err(e) = self.store_offsets(&tpl) {
            crate::telemetry::OffsetStoreFailed {
                topic: &tp.0,
                partition: tp.1,
                position,
                error: &e,
            }
            .emit();
        }
    }
}

struct Inner {
    parts: HashMap<Tp, PartState>,
    next_epoch: u64,
    /// Shutting down: no new admissions.
    closing: bool,
}

pub struct Partitions {
    inner: Mutex<Inner>,
    /// Signalled whenever the number of working records of a partition changes; revocation and
    /// shutdown wait on it.
    changed: Condvar,
    per_partition: usize,
    /// Records admitted beyond `per_partition` before the partition is no longer read.
    buffer: usize,
    key_ordering: bool,
    /// Store the completed-offset map with each position (`concurrency.commit_completed`).
    commit_completed: bool,
    /// The broker refused a map (see [`Self::drop_maps`]): positions go without one from then on.
    maps_refused: AtomicBool,
    jobs: UnboundedSender<Dispatch>,
}

impl Partitions {
    pub fn new(
        per_partition: usize,
        buffer: usize,
        key_ordering: bool,
        commit_completed: bool,
        jobs: UnboundedSender<Dispatch>,
    ) -> Self {
        let inner = Inner { parts: HashMap::new(), next_epoch: 1, closing: false };
        Self {
            inner: Mutex::new(inner),
            changed: Condvar::new(),
            per_partition,
            buffer,
            key_ordering,
            commit_completed,
            maps_refused: AtomicBool::new(false),
            jobs,
        }
    }

    /// Whether the previous owners' completed-offset maps are read (`concurrency.commit_completed`).
    pub fn commit_completed(&self) -> bool {
        self.commit_completed
    }

    /// Whether positions are stored with the completed-offset map: `commit_completed`, until the
    /// broker refuses a map.
    fn maps_on(&self) -> bool {
        self.commit_completed && !self.maps_refused.load(Ordering::SeqCst)
    }

    /// The broker refused a commit's map (`OFFSET_METADATA_TOO_LARGE`: its
    /// `offset.metadata.max.bytes` is below the map): from now on positions are stored without
    /// maps, and every partition's position is stored again without its map so that the next
    /// commit lands. Returns whether maps were on until now.
    pub fn drop_maps(&self, store: &impl OffsetStore) -> bool {
        // Set before the lock is taken: a store made under the lock before this one is replaced
        // below, and every store after it sees the flag.
        let were_on = self.commit_completed && !self.maps_refused.swap(true, Ordering::SeqCst);
        let inner = self.lock();
        for (tp, state) in &inner.parts {
            if let Some((position, _)) = state.window.progress() {
                store.store(tp, position, "");
            }
        }
        were_on
    }

    /// Stores the partition's progress when its position advanced, with the completed-offset map
    /// when that is on. (A completion that does not move the position is not stored on its own:
    /// encoding the map per record cost a fifth of the passthrough throughput. Commits on revoke
    /// and shutdown store every partition's exact map first, see [`Self::store_maps`].)
    fn store_progress(&self, tp: &Tp, w: &Window, advanced: bool, store: &impl OffsetStore) {
        if !advanced {
            return;
        }
        let Some((position, done)) = w.progress() else { return };
        let map = if self.maps_on() { completed::encode(position, done) } else { String::new() };
        store.store(tp, position, &map);
    }

    /// Stores the exact completed-offset map of `tps` (every assigned partition when `None`),
    /// right before an explicit commit.
    pub fn store_maps(&self, tps: Option<&[Tp]>, store: &impl OffsetStore) {
        if !self.maps_on() {
            return;
        }
        let inner = self.lock();
        for (tp, state) in inner.parts.iter().filter(|(tp, _)| tps.is_none_or(|t| t.contains(tp))) {
            if let Some((position, done)) = state.window.progress() {
                store.store(tp, position, &completed::encode(position, done));
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("partition state lock")
    }

    /// Takes new partitions, each with the offsets its previous owner completed beyond the
    /// committed position (empty without the completed-offset map).
    pub fn assign(&self, tps: impl IntoIterator<Item = (Tp, BTreeSet<i64>)>) {
        let mut inner = self.lock();
        for (tp, skip) in tps {
            let epoch = inner.next_epoch;
            inner.next_epoch += 1;
            inner.parts.insert(tp, PartState::fresh(epoch, skip));
        }
    }

    /// Takes a polled record into its partition's window. A record due later is parked without
    /// a slot; any other runs when the partition has a free slot (and, with key ordering, no
    /// record of its key is ahead of it). The poll loop reads a partition only while
    /// [`Partitions::has_room`]. Returns false if the record was not admitted (shutting down,
    /// or its partition is not assigned here).
    pub fn admit(&self, inbound: Inbound, store: &impl OffsetStore) -> bool {
        let tp = (inbound.message.topic().to_owned(), inbound.message.partition());
        let due_ms = inbound.due_ms().filter(|due| *due > now_ms());
        let offset = inbound.message.offset();
        let mut inner = self.lock();
        if inner.closing {
            return false;
        }
        let Some(state) = inner.parts.get_mut(&tp) else { return false };
        if state.rewinding {
            // Read before the seek back to the committed position: read again after it.
            return true;
        }
        if state.committed.is_none() {
            state.committed = Some((offset, state.skip.clone()));
        }
        state.window.open(offset);
        if state.skip.remove(&offset) {
            // Done by the previous owner: counts as complete without a second model call.
            let advanced = state.window.complete(offset).is_some();
            self.store_progress(&tp, &state.window, advanced, store);
            state.requeue_head(&tp, self.per_partition + self.buffer, &self.jobs);
            crate::telemetry::RecordAlreadyDone { topic: &tp.0 }.emit();
            return true;
        }
        let job = Job { epoch: state.epoch, inbound };
        match due_ms {
            Some(due_ms) => {
                let (epoch, revoked) = (state.epoch, state.revoked.subscribe());
                state.park(job, due_ms);
                let tp = tp.clone();
                let _ = self.jobs.send(Dispatch::Park { tp, epoch, offset, due_ms, revoked });
            }
            None => {
                state.enqueue(job, self.key_ordering);
                state.pump(self.per_partition, &self.jobs);
            }
        }
        if !state.has_room(self.per_partition + self.buffer) {
            crate::telemetry::PartitionPaused { topic: &tp.0, partition: tp.1 }.emit();
        }
        drop(inner);
        self.changed.notify_all();
        true
    }

    /// A parked record is due: it queues for a slot like a new one (nothing if its partition
    /// was revoked meanwhile, or the record was moved to the end of its topic).
    pub fn unpark(&self, tp: &Tp, epoch: u64, offset: i64) {
        let mut inner = self.lock();
        let Some(state) = inner.parts.get_mut(tp).filter(|s| s.epoch == epoch) else { return };
        let Some(Parked { job, .. }) = state.unpark(offset) else { return };
        state.enqueue(job, self.key_ordering);
        state.pump(self.per_partition, &self.jobs);
        drop(inner);
        self.changed.notify_all();
    }

    /// A parked record could not be moved to the end of its topic: it waits for its due time
    /// where it is (its timer still runs), and is not moved again.
    pub fn repark(&self, job: Job, due_ms: i64) {
        let tp = job.tp();
        let mut inner = self.lock();
        let Some(state) = inner.parts.get_mut(&tp).filter(|s| s.epoch == job.epoch) else {
            return;
        };
        let offset = job.inbound.message.offset();
        state.park(job, due_ms);
        state.pinned.insert(offset);
        drop(inner);
        self.changed.notify_all();
    }

    /// Whether the partition can take another record (it is read only then).
    pub fn has_room(&self, tp: &Tp) -> bool {
        let inner = self.lock();
        !inner.closing
            && inner.parts.get(tp).is_some_and(|s| s.has_room(self.per_partition + self.buffer))
    }

    /// Whether a job still belongs to the current assignment of its partition.
    pub fn is_current(&self, tp: &Tp, epoch: u64) -> bool {
        self.lock().parts.get(tp).is_some_and(|s| s.epoch == epoch)
    }

    /// A record is done (every output acknowledged): store the new position if it advanced and
    /// release the next record of the same key.
    pub fn complete(
        &self,
        tp: &Tp,
        epoch: u64,
        offset: i64,
        key: Option<&[u8]>,
        store: &impl OffsetStore,
    ) {
        let mut inner = self.lock();
        let Some(state) = inner.parts.get_mut(tp).filter(|s| s.epoch == epoch) else { return };
        self.finish(state, tp, offset, key, store);
        drop(inner);
        self.changed.notify_all();
    }

    /// [`Self::complete`] under the lock, on the partition's current state.
    fn finish(
        &self,
        state: &mut PartState,
        tp: &Tp,
        offset: i64,
        key: Option<&[u8]>,
        store: &impl OffsetStore,
    ) {
        let advanced = state.window.complete(offset).is_some();
        self.store_progress(tp, &state.window, advanced, store);
        state.requeue_head(tp, self.per_partition + self.buffer, &self.jobs);
        if let Some(key) = key.filter(|_| self.key_ordering) {
            if let Some(behind) = state.keys.get_mut(key) {
                match behind.pop_front() {
                    // Next of its key: first in line, it has waited longest.
                    Some(next) => state.ready.push_front(next),
                    None => {
                        state.keys.remove(key);
                    }
                }
            }
        }
        state.pump(self.per_partition, &self.jobs);
    }

    /// A record's processing finished (its outputs may still be in flight to the broker): its
    /// processing slot goes to the next ready record. The offset waits for [`Self::complete`].
    pub fn processed(&self, tp: &Tp, epoch: u64) {
        let mut inner = self.lock();
        let Some(state) = inner.parts.get_mut(tp).filter(|s| s.epoch == epoch) else { return };
        state.running = state.running.saturating_sub(1);
        state.pump(self.per_partition, &self.jobs);
    }

    /// Waits up to `grace` for the working records of `tps` to finish (none when `grace` is
    /// zero: a lost assignment), then forgets the partitions, which ends their parked records'
    /// timers. Returns how many records were still working when it gave up.
    pub fn revoke(&self, tps: &[Tp], grace: Duration, store: &impl OffsetStore) -> usize {
        let (mut inner, open) = self.drained(tps, grace);
        for tp in tps {
            let Some(state) = inner.parts.remove(tp) else { continue };
            if let Some((position, done)) = state.window.progress().filter(|_| self.maps_on()) {
                store.store(tp, position, &completed::encode(position, done));
            }
        }
        open
    }

    /// Waits up to `grace` for the working records of `tps` to finish; returns the lock and how
    /// many were still working.
    fn drained(&self, tps: &[Tp], grace: Duration) -> (MutexGuard<'_, Inner>, usize) {
        let deadline = Instant::now() + grace;
        let mut inner = self.lock();
        loop {
            let open: usize =
                tps.iter().filter_map(|tp| inner.parts.get(tp)).map(PartState::working).sum();
            let now = Instant::now();
            if open == 0 || now >= deadline {
                return (inner, open);
            }
            inner =
                self.changed.wait_timeout(inner, deadline - now).expect("partition state lock").0;
        }
    }

    /// [`Self::revoke`]'s wait alone: the partitions stay until [`Self::revoke`] forgets them.
    pub fn drain(&self, tps: &[Tp], grace: Duration) -> usize {
        self.drained(tps, grace).1
    }

    /// Stops admissions and pauses every assigned partition (shutdown step one).
    pub fn close<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let mut inner = self.lock();
        inner.closing = true;
        let mut tpl = TopicPartitionList::new();
        for tp in inner.parts.keys() {
            tpl.add_partition(&tp.0, tp.1);
        }
        if tpl.count() > 0 {
            let _ = consumer.pause(&tpl);
        }
    }

    /// Records being worked on across all partitions (excluding parked ones, which are
    /// redelivered after a restart rather than waited for).
    pub fn in_flight(&self) -> usize {
        self.lock().parts.values().map(PartState::working).sum()
    }

    /// Waits until nothing is in flight or `deadline` passes; returns what is still in flight.
    pub fn wait_drained(&self, deadline: Instant) -> usize {
        let mut inner = self.lock();
        loop {
            let open: usize = inner.parts.values().map(PartState::working).sum();
            let now = Instant::now();
            if open == 0 || now >= deadline {
                return open;
            }
            inner =
                self.changed.wait_timeout(inner, deadline - now).expect("partition state lock").0;
        }
    }
}

#[path = "partitions_txn.rs"]
mod txn;
pub use txn::{Added, Nowhere, Position};

#[cfg(test)]
#[path = "partitions_tests.rs"]
mod tests;
#[cfg(test)]
use tests as tests_support;
