//! The runner's view of its assigned partitions: each one's offset window, pause state and
//! per-key queues, behind one mutex so that storing offsets, pausing and resuming happen in a
//! single order. Completions arrive from worker tasks; admissions from the poll thread; revocation
//! from the rebalance callback, which waits here (bounded) for in-flight records to finish.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;

use super::window::Window;
use crate::shutdown::{Phase, Shutdown};

pub type Tp = (String, i32);

/// A record admitted to a window, on its way to a worker.
#[derive(Debug)]
pub struct Job {
    pub message: OwnedMessage,
    /// Assignment generation of its partition: a job from a revoked assignment is dropped.
    pub epoch: u64,
}

impl Job {
    pub fn tp(&self) -> Tp {
        (self.message.topic().to_owned(), self.message.partition())
    }
}

struct PartState {
    epoch: u64,
    /// Every admitted record whose offset is not yet stored.
    window: Window,
    /// Retry records in the window waiting for their due time: never waited for at revocation
    /// or shutdown (they are redelivered to whoever owns the partition next).
    deferred: usize,
    /// Records handed to workers and not yet done (at most `per_partition`).
    running: usize,
    /// Admitted records ready to run, waiting for a free slot, oldest first.
    ready: VecDeque<Job>,
    /// With key ordering: a key is present while a record of it is running or ready; the deque
    /// holds the records of that key behind it.
    keys: HashMap<Vec<u8>, VecDeque<Job>>,
}

impl PartState {
    /// Records in the window that are being (or waiting to be) processed, not parked.
    fn working(&self) -> usize {
        self.window.len().saturating_sub(self.deferred)
    }

    /// Hands ready records to workers while there are free slots.
    fn pump(&mut self, per_partition: usize, jobs: &UnboundedSender<Job>) {
        while self.running < per_partition {
            let Some(job) = self.ready.pop_front() else { break };
            self.running += 1;
            let _ = jobs.send(job);
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
    /// Records admitted but waiting for their due time (retry topics); they hold their offsets
    /// but are not waited for at shutdown.
    changed: Condvar,
    per_partition: usize,
    /// Records admitted beyond `per_partition` before the partition is paused.
    buffer: usize,
    key_ordering: bool,
    jobs: UnboundedSender<Job>,
}

fn tpl_of(tp: &Tp, offset: Option<i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    match offset {
        Some(o) => {
            tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(o)).expect("valid offset");
        }
        None => {
            tpl.add_partition(&tp.0, tp.1);
        }
    }
    tpl
}

impl Partitions {
    pub fn new(
        per_partition: usize,
        buffer: usize,
        key_ordering: bool,
        jobs: UnboundedSender<Job>,
    ) -> Self {
        let inner = Inner { parts: HashMap::new(), next_epoch: 1, closing: false };
        Self {
            inner: Mutex::new(inner),
            changed: Condvar::new(),
            per_partition,
            buffer,
            key_ordering,
            jobs,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("partition state lock")
    }

    pub fn assign(&self, tps: impl IntoIterator<Item = Tp>) {
        let mut inner = self.lock();
        for tp in tps {
            let epoch = inner.next_epoch;
            inner.next_epoch += 1;
            inner.parts.insert(
                tp,
                PartState {
                    epoch,
                    window: Window::default(),
                    deferred: 0,
                    running: 0,
                    ready: VecDeque::new(),
                    keys: HashMap::new(),
                },
            );
        }
    }

    /// Takes a polled record into its partition's window and hands it to a worker when the
    /// partition has a free slot (and, with key ordering, no record of its key is ahead of it);
    /// otherwise it waits here. The poll loop reads a partition only while [`Partitions::has_room`].
    /// Returns false if the record was not admitted (shutting down, or its partition is not
    /// assigned here).
    pub fn admit(&self, message: OwnedMessage) -> bool {
        let tp = (message.topic().to_owned(), message.partition());
        let mut inner = self.lock();
        if inner.closing {
            return false;
        }
        let Some(state) = inner.parts.get_mut(&tp) else { return false };
        state.window.open(message.offset());
        if state.window.len() >= self.per_partition + self.buffer {
            crate::telemetry::PartitionPaused { topic: &tp.0, partition: tp.1 }.emit();
        }
        let job = Job { epoch: state.epoch, message };
        if self.key_ordering {
            if let Some(key) = job.message.key().map(<[u8]>::to_vec) {
                if let Some(behind) = state.keys.get_mut(&key) {
                    behind.push_back(job);
                    return true;
                }
                state.keys.insert(key, VecDeque::new());
            }
        }
        state.ready.push_back(job);
        state.pump(self.per_partition, &self.jobs);
        true
    }

    /// Whether the partition's window can take another record (it is read only then).
    pub fn has_room(&self, tp: &Tp) -> bool {
        let inner = self.lock();
        !inner.closing
            && inner
                .parts
                .get(tp)
                .is_some_and(|s| s.window.len() < self.per_partition + self.buffer)
    }

    /// Whether a job still belongs to the current assignment of its partition.
    pub fn is_current(&self, tp: &Tp, epoch: u64) -> bool {
        self.lock().parts.get(tp).is_some_and(|s| s.epoch == epoch)
    }

    /// A record is done (every output acknowledged): store the new position if it advanced,
    /// free its slot, release the next record of the same key.
    pub fn complete<C: ConsumerContext>(
        &self,
        tp: &Tp,
        epoch: u64,
        offset: i64,
        key: Option<&[u8]>,
        consumer: &BaseConsumer<C>,
    ) {
        let mut inner = self.lock();
        let Some(state) = inner.parts.get_mut(tp).filter(|s| s.epoch == epoch) else { return };
        if let Some(position) = state.window.complete(offset) {
            if let Err(e) = consumer.store_offsets(&tpl_of(tp, Some(position))) {
                tracing::warn!(topic = %tp.0, partition = tp.1, position, error = %e, "cannot store offset");
            }
        }
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
        drop(inner);
        self.changed.notify_all();
    }

    /// A record's processing finished (its outputs may still be in flight to the broker): its
    /// processing slot goes to the next ready record. The offset waits for [`Self::complete`].
    pub fn processed(&self, tp: &Tp, epoch: u64) {
        let mut inner = self.lock();
        let Some(state) = inner.parts.get_mut(tp).filter(|s| s.epoch == epoch) else { return };
        state.running = state.running.saturating_sub(1);
        state.pump(self.per_partition, &self.jobs);
    }

    /// Waits up to `grace` for the windows of `tps` to empty, then forgets them.
    /// Returns how many records were still in flight when it gave up.
    pub fn revoke(&self, tps: &[Tp], grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut inner = self.lock();
        loop {
            let open: usize =
                tps.iter().filter_map(|tp| inner.parts.get(tp)).map(PartState::working).sum();
            let now = Instant::now();
            if open == 0 || now >= deadline {
                for tp in tps {
                    inner.parts.remove(tp);
                }
                return open;
            }
            inner =
                self.changed.wait_timeout(inner, deadline - now).expect("partition state lock").0;
        }
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

    /// Holds `job` until `wait` has passed, then dispatches it (unless the worker stopped).
    pub fn defer(self: &Arc<Self>, job: Job, wait: Duration, shutdown: Shutdown) {
        let (tp, epoch) = (job.tp(), job.epoch);
        self.count_deferred(&tp, epoch, 1);
        let this = self.clone();
        tokio::spawn(async move {
            let due = tokio::select! {
                _ = tokio::time::sleep(wait) => true,
                _ = shutdown.reached(Phase::Stopped) => false,
            };
            // A record still parked when the worker stops stays counted as parked: nobody
            // waits for it, and the partition's next owner redelivers it.
            if due {
                this.count_deferred(&tp, epoch, -1);
                let _ = this.jobs.send(job);
            }
            this.changed.notify_all();
        });
    }

    fn count_deferred(&self, tp: &Tp, epoch: u64, delta: isize) {
        let mut inner = self.lock();
        if let Some(s) = inner.parts.get_mut(tp).filter(|s| s.epoch == epoch) {
            s.deferred = s.deferred.saturating_add_signed(delta);
        }
    }

    /// Records being worked on across all partitions (excluding those waiting for a due time,
    /// which are redelivered after a restart rather than waited for).
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
            let step = (deadline - now).min(Duration::from_millis(100));
            inner = self.changed.wait_timeout(inner, step).expect("partition state lock").0;
        }
    }
}
