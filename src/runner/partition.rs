//! One assigned partition's state and the records passing through it: its offset window, its
//! processing slots, its parked records (bounded by memory, moved to the end of their topic when
//! they hold the committed offset back) and its per-key queues. [`super::partitions`] keeps one
//! per assigned partition behind its lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use rdkafka::message::Message;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use super::inbound::Inbound;
use super::window::Window;
use crate::telemetry::RecordRequeued;

/// Bytes of parked records (value, key and headers, plus [`PARKED_OVERHEAD`] each) a partition
/// holds before it is no longer read: past it, records wait in Kafka instead of in memory.
pub const MAX_PARKED_BYTES: usize = 16 << 20;
/// What a parked record costs beyond its bytes (the message, its job, the map entry), roughly.
const PARKED_OVERHEAD: usize = 512;

pub type Tp = (String, i32);

/// A record admitted to a window, on its way to a worker.
#[derive(Debug)]
pub struct Job {
    pub inbound: Inbound,
    /// Assignment generation of its partition: a job from a revoked assignment is dropped.
    pub epoch: u64,
}

impl Job {
    pub fn tp(&self) -> Tp {
        (self.inbound.message.topic().to_owned(), self.inbound.message.partition())
    }

    fn key(&self) -> Option<Vec<u8>> {
        self.inbound.message.key().map(<[u8]>::to_vec)
    }
}

/// What the dispatcher is handed.
#[derive(Debug)]
pub enum Dispatch {
    /// Run this job now: it holds one of its partition's processing slots.
    Run(Job),
    /// Wake the parked record at `offset` at its due time (`Partitions::unpark`), unless
    /// `revoked` closes first: its partition was revoked or lost.
    Park { tp: Tp, epoch: u64, offset: i64, due_ms: i64, revoked: watch::Receiver<()> },
    /// Produce this parked record again at the end of its topic, then complete its offset
    /// (`Partitions::complete`), or give it back (`Partitions::repark`) if that fails.
    Requeue { job: Job, due_ms: i64 },
}

/// A record waiting for its due time.
#[derive(Debug)]
pub(super) struct Parked {
    pub(super) job: Job,
    pub(super) due_ms: i64,
    pub(super) bytes: usize,
}

pub(super) struct PartState {
    pub(super) epoch: u64,
    /// Every admitted record whose offset is not yet stored.
    pub(super) window: Window,
    /// Records in the window waiting for their due time, by offset: they hold no slot and no
    /// room, and revocation and shutdown do not wait for them (the partition's next owner
    /// redelivers them).
    pub(super) parked: BTreeMap<i64, Parked>,
    /// Bytes the parked records hold, bounded by [`MAX_PARKED_BYTES`].
    pub(super) parked_bytes: usize,
    /// Parked records whose move to the end of the topic failed: they wait where they are.
    pub(super) pinned: HashSet<i64>,
    /// Records handed to workers and not yet processed (at most `per_partition`).
    pub(super) running: usize,
    /// Admitted records ready to run, waiting for a free slot, oldest first.
    pub(super) ready: VecDeque<Job>,
    /// With key ordering: a key is present while a record of it is running or ready; the deque
    /// holds the records of that key behind it.
    pub(super) keys: HashMap<Vec<u8>, VecDeque<Job>>,
    /// Dropped with the state: closes every parked record's `revoked` receiver.
    pub(super) revoked: watch::Sender<()>,
    /// Offsets the previous owner completed beyond its committed position (from the commit's
    /// metadata): admitted as done, never processed again.
    pub(super) skip: BTreeSet<i64>,
    /// Exactly once: the position and done offsets of the last committed transaction (at first,
    /// where this assignment began reading), where an aborted transaction rewinds to.
    pub(super) committed: Option<(i64, BTreeSet<i64>)>,
    /// Exactly once: a transaction with records of this partition aborted; it is not read, and
    /// what it polls is dropped, until the poll thread has sought back to `committed`.
    pub(super) rewinding: bool,
}

impl PartState {
    /// A partition's state as a new assignment (or a rewind) starts it.
    pub(super) fn fresh(epoch: u64, skip: BTreeSet<i64>) -> Self {
        Self {
            epoch,
            window: Window::default(),
            parked: BTreeMap::new(),
            parked_bytes: 0,
            pinned: HashSet::new(),
            running: 0,
            ready: VecDeque::new(),
            keys: HashMap::new(),
            revoked: watch::channel(()).0,
            skip,
            committed: None,
            rewinding: false,
        }
    }

    /// Records in the window that are being (or waiting to be) processed, not parked.
    pub(super) fn working(&self) -> usize {
        self.window.len().saturating_sub(self.parked.len())
    }

    /// Whether the partition can be read: room in the window for working records, and in
    /// memory for parked ones.
    pub(super) fn has_room(&self, window: usize) -> bool {
        !self.rewinding && self.working() < window && self.parked_bytes < MAX_PARKED_BYTES
    }

    pub(super) fn park(&mut self, job: Job, due_ms: i64) {
        let bytes = job.inbound.size() + PARKED_OVERHEAD;
        self.parked_bytes += bytes;
        self.parked.insert(job.inbound.message.offset(), Parked { job, due_ms, bytes });
    }

    pub(super) fn unpark(&mut self, offset: i64) -> Option<Parked> {
        let parked = self.parked.remove(&offset)?;
        self.parked_bytes = self.parked_bytes.saturating_sub(parked.bytes);
        self.pinned.remove(&offset);
        Some(parked)
    }

    /// Moves parked records at the head of the window to the end of their topic once `window`
    /// records behind them have completed: they hold the committed offset back.
    pub(super) fn requeue_head(
        &mut self,
        tp: &Tp,
        window: usize,
        jobs: &UnboundedSender<Dispatch>,
    ) {
        while self.window.done_len() >= window {
            let Some(head) = self.window.lowest_open() else { break };
            if self.pinned.contains(&head) {
                break;
            }
            let Some(Parked { job, due_ms, .. }) = self.unpark(head) else { break };
            RecordRequeued { topic: &tp.0, partition: tp.1, offset: head, due_ms }.emit();
            let _ = jobs.send(Dispatch::Requeue { job, due_ms });
        }
    }

    /// Queues a job behind an earlier record of its key, or makes it ready.
    pub(super) fn enqueue(&mut self, job: Job, key_ordering: bool) {
        if key_ordering {
            if let Some(key) = job.key() {
                if let Some(behind) = self.keys.get_mut(&key) {
                    behind.push_back(job);
                    return;
                }
                self.keys.insert(key, VecDeque::new());
            }
        }
        self.ready.push_back(job);
    }

    /// Hands ready records to workers while there are free slots.
    pub(super) fn pump(&mut self, per_partition: usize, jobs: &UnboundedSender<Dispatch>) {
        while self.running < per_partition {
            let Some(job) = self.ready.pop_front() else { break };
            self.running += 1;
            let _ = jobs.send(Dispatch::Run(job));
        }
    }
}
