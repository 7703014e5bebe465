//! The consumer side: the rebalance callbacks (assign → new windows and per-partition queues;
//! revoke → drain up to the grace period, then commit) and the poll loop, which runs on its own
//! thread so that waiting in a callback never blocks the async workers, and which keeps polling
//! the main queue while full partitions are left unread, so a slow model never causes a
//! `max.poll.interval.ms` eviction.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};

use rdkafka::message::{BorrowedMessage, Message};

use super::completed;
use super::inbound::{Inbound, Topics};
use super::partitions::{Nowhere, Partitions, Tp};
use super::txn::Transactions;

#[path = "consumer_txn.rs"]
mod txn_side;
use crate::call::now_ms;
use crate::retry::commit_backoff;
use crate::shutdown::{Phase, Shutdown};
use crate::telemetry::{
    ClientStatistics, CommitFailed, CommitMapsRefused, ConsumerError, RebalanceFailed,
    RebalanceKind, Rebalanced, RecordNotAdmitted,
};

pub struct RunnerContext {
    pub stage: String,
    pub partitions: Arc<Partitions>,
    /// How long a revocation waits for in-flight records of the revoked partitions.
    pub grace: Duration,
    /// The consumer this context belongs to, to split partition queues on assignment.
    pub consumer: OnceLock<Weak<BaseConsumer<RunnerContext>>>,
    /// One librdkafka queue per assigned partition, read only while the partition's window has
    /// room. Emptied when the poll loop ends (a queue holds its consumer).
    pub queues: Mutex<HashMap<Tp, PartitionQueue<RunnerContext>>>,
    /// The stage's input and its own retry and deferred topics, whose headers alone are read.
    pub topics: Topics,
    /// The stage's producer, whose queue depth the statistics callback samples.
    pub producer: OnceLock<FutureProducer>,
    /// Exactly once: offsets are committed only in the committer's transactions.
    pub txn: OnceLock<Arc<Transactions>>,
    /// A dynamic member of a classic group: it must leave the group itself when it stops
    /// without partitions (see [`leave_if_idle`]).
    pub classic_dynamic: bool,
}

impl RunnerContext {
    pub fn new(
        stage: String,
        partitions: Arc<Partitions>,
        grace: Duration,
        topics: Topics,
    ) -> Self {
        Self {
            stage,
            partitions,
            grace,
            consumer: OnceLock::new(),
            queues: Mutex::new(HashMap::new()),
            topics,
            producer: OnceLock::new(),
            txn: OnceLock::new(),
            classic_dynamic: false,
        }
    }

    /// The broker refused a commit's completed-offset map: positions are stored again, and from
    /// now on, without maps (see [`Partitions::drop_maps`]); reported the first time.
    fn drop_maps(&self, consumer: &BaseConsumer<Self>) {
        if self.partitions.drop_maps(consumer) {
            CommitMapsRefused { stage: &self.stage }.emit();
        }
    }
}

/// Whether a commit failed because the broker refused its metadata, the completed-offset maps
/// (the brokers' `offset.metadata.max.bytes` is below them).
fn maps_refused(error: &KafkaError) -> bool {
    matches!(error, KafkaError::ConsumerCommit(RDKafkaErrorCode::OffsetMetadataTooLarge))
}

impl ClientContext for RunnerContext {
    /// librdkafka's statistics, every `statistics.interval.ms` on the poll thread: the lag gauges,
    /// with the paused partitions and the producer's queue sampled now. `try_lock`: the poll
    /// thread may hold the queues while it reads them.
    fn stats_raw(&self, json: &[u8]) {
        let paused = self
            .queues
            .try_lock()
            .ok()
            .map(|queues| queues.keys().filter(|tp| !self.partitions.has_room(tp)).count());
        let producer_queue = self.producer.get().map(Producer::in_flight_count);
        ClientStatistics { stage: &self.stage, json, paused, producer_queue }.emit();
    }
}

fn tps(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}

/// Commits stored offsets synchronously; "nothing to commit" is not an error. A coordinator
/// that is mid-rebalance is asked again a few times. Refused maps are dropped and the positions
/// committed without them at once (a different commit, not a retry). Runs on the poll thread,
/// never on an async one.
fn commit_stored(consumer: &BaseConsumer<RunnerContext>) -> KafkaResult<()> {
    let mut waits = commit_backoff();
    let mut maps_dropped = false;
    loop {
        let error = match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => return Ok(()),
            Err(e) => e,
        };
        if maps_refused(&error) && !maps_dropped {
            maps_dropped = true;
            consumer.context().drop_maps(consumer);
            continue;
        }
        let in_progress =
            matches!(error, KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress));
        match waits.next().filter(|_| in_progress) {
            Some(wait) => std::thread::sleep(wait),
            None => return Err(error),
        }
    }
}

/// [`commit_stored`] as the handover of this member's partitions (revocation, shutdown): offsets
/// not committed now are lost to this member, and the next owner reprocesses those records. A
/// failure is reported (`sluice_commit_failures_total{when="handover"}`).
fn commit_handover(consumer: &BaseConsumer<RunnerContext>, stage: &str) -> bool {
    let result = commit_stored(consumer);
    if let Err(error) = &result {
        CommitFailed { stage, error, background: false }.emit();
    }
    result.is_ok()
}

/// The completed-offset maps in the group's last commits of `assigned` (see [`completed`]).
/// At least once, a coordinator that cannot answer only costs the skip: the records are
/// processed again. Exactly once it would cost duplicates, so the lookup is retried — reading
/// committed, it waits for a crashed member's open transaction to be aborted, up to
/// `transaction.timeout.ms` — and `None` says it failed (the worker stops).
fn completed_by_previous_owner(
    consumer: &BaseConsumer<RunnerContext>,
    assigned: &TopicPartitionList,
    exact: bool,
) -> Option<HashMap<Tp, BTreeSet<i64>>> {
    let tries = if exact { EXACT_LOOKUPS } else { 1 };
    let committed = (0..tries)
        .find_map(|_| consumer.committed_offsets(assigned.clone(), Duration::from_secs(10)).ok());
    let Some(committed) = committed else {
        return (!exact).then(HashMap::new);
    };
    let done = committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(position) => {
                let done = completed::decode(position, e.metadata());
                (!done.is_empty()).then(|| ((e.topic().to_owned(), e.partition()), done))
            }
            _ => None,
        })
        .collect();
    Some(done)
}

/// Lookups of the committed positions, 10 s each, before an exactly-once stage gives up.
const EXACT_LOOKUPS: usize = 6;

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) if self.txn.get().is_some() => {
                let txn = self.txn.get().expect("checked");
                self.hand_over_in_transaction(consumer, txn, &tps(tpl));
            }
            Rebalance::Revoke(tpl) => {
                let revoked = tps(tpl);
                // A lost assignment already belongs to another member: its offsets can no
                // longer be committed, so nothing is waited for.
                let lost = consumer.assignment_lost();
                let grace = if lost { Duration::ZERO } else { self.grace };
                // Commit what is complete before draining (quietly: a failure there costs
                // nothing if the handover after draining lands), and again after.
                if !lost {
                    self.partitions.store_maps(Some(&revoked), consumer);
                    let _ = commit_stored(consumer);
                }
                let abandoned = self.partitions.revoke(&revoked, grace, consumer);
                let committed = !lost && commit_handover(consumer, &self.stage);
                let kind = if lost { RebalanceKind::Lost } else { RebalanceKind::Revoked };
                let stage = &self.stage;
                Rebalanced { stage, kind, partitions: revoked.len(), abandoned, committed }.emit();
            }
            Rebalance::Error(e) => RebalanceFailed { stage: &self.stage, error: e }.emit(),
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = tps(tpl);
                let (stage, partitions) = (&self.stage, assigned.len());
                let kind = RebalanceKind::Assigned;
                Rebalanced { stage, kind, partitions, abandoned: 0, committed: false }.emit();
                let done = if self.partitions.commit_completed() {
                    let exact = self.txn.get();
                    match completed_by_previous_owner(consumer, tpl, exact.is_some()) {
                        Some(done) => done,
                        None => {
                            // Not taken: records done by the previous owner would run again.
                            let reason = "the committed positions of newly assigned partitions \
                                          could not be read: exactly once cannot start them";
                            exact.expect("exact").stop_worker(reason.to_owned());
                            return;
                        }
                    }
                } else {
                    HashMap::new()
                };
                self.partitions.assign(assigned.iter().map(|tp| {
                    let skip = done.get(tp).cloned().unwrap_or_default();
                    (tp.clone(), skip)
                }));
                let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else { return };
                let mut queues = self.queues.lock().expect("queues lock");
                for tp in assigned {
                    if let Some(q) = consumer.split_partition_queue(&tp.0, tp.1) {
                        queues.insert(tp, q);
                    }
                }
            }
            Rebalance::Revoke(tpl) => {
                let mut queues = self.queues.lock().expect("queues lock");
                for tp in tps(tpl) {
                    queues.remove(&tp);
                }
            }
            Rebalance::Error(_) => {}
        }
    }

    /// The background commits' results (librdkafka's auto-commit; not the synchronous ones).
    /// After refused maps the positions are stored again without them, for the next one.
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                CommitFailed { stage: &self.stage, error: &e, background: true }.emit();
                // The poll thread holds the consumer while it polls; none when it is closing.
                let consumer = self.consumer.get().and_then(Weak::upgrade);
                if let Some(consumer) = consumer.filter(|_| maps_refused(&e)) {
                    self.drop_maps(&consumer);
                }
            }
        }
    }
}

/// Polls until shutdown is requested, then runs the shutdown sequence: stop admitting and pause
/// every partition, keep polling while in-flight records drain (up to `grace`), commit the stored
/// offsets. Returns how many records were still in flight at the end (they will be redelivered).
pub fn poll_loop(
    consumer: &BaseConsumer<RunnerContext>,
    partitions: &Partitions,
    shutdown: &Shutdown,
    grace: Duration,
    stage: &str,
) -> usize {
    let topics = &consumer.context().topics;
    let admit = |message: BorrowedMessage<'_>| {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let inbound = Inbound::read(&message, topics, now_ms());
        if !partitions.admit(inbound, consumer) && shutdown.phase() == Phase::Running {
            RecordNotAdmitted { stage, topic, partition, offset }.emit();
        }
    };
    let mut idle = true;
    while shutdown.phase() == Phase::Running {
        // The main queue: callbacks, and records fetched before their partition's queue was
        // split. Drained completely first, so a partition's records are admitted in order.
        let mut timeout = if idle { Duration::from_millis(5) } else { Duration::ZERO };
        while let Some(result) = consumer.poll(timeout) {
            timeout = Duration::ZERO;
            match result {
                Ok(message) => admit(message),
                Err(e) => ConsumerError { stage, error: &e }.emit(),
            }
        }
        if consumer.context().txn.get().is_some() {
            txn_side::rewind(consumer, partitions, stage);
        }
        // Partition queues, each only while its window has room: a full partition is simply not
        // read (librdkafka's prefetch limits bound what waits), and nothing is discarded.
        idle = true;
        let queues = consumer.context().queues.lock().expect("queues lock");
        for (tp, queue) in queues.iter() {
            while partitions.has_room(tp) {
                match queue.poll(Duration::ZERO) {
                    Some(Ok(message)) => {
                        idle = false;
                        admit(message);
                    }
                    Some(Err(e)) => ConsumerError { stage, error: &e }.emit(),
                    None => break,
                }
            }
        }
    }
    partitions.close(consumer);
    let deadline = Instant::now() + grace;
    let mut left = partitions.in_flight();
    while left > 0 && Instant::now() < deadline && shutdown.phase() != Phase::Stopped {
        // Keep serving callbacks; records polled now are not admitted and stay uncommitted.
        let _ = consumer.poll(Duration::from_millis(20));
        left = partitions.wait_drained(
            Instant::now() + Duration::from_millis(50).min(deadline - Instant::now()),
        );
    }
    match consumer.context().txn.get() {
        Some(txn) => {
            let assigned: BTreeSet<Tp> =
                tps(&consumer.assignment().unwrap_or_default()).into_iter().collect();
            if !txn.commit_now(partitions.positions(&assigned)) {
                CommitFailed {
                    stage,
                    error: &"the last transaction did not commit",
                    background: false,
                }
                .emit();
            }
        }
        None => {
            partitions.store_maps(None, consumer);
            commit_handover(consumer, stage);
        }
    }
    consumer.context().queues.lock().expect("queues lock").clear();
    leave_if_idle(consumer);
    left
}

/// Makes a stopping member of a classic group that owns no partitions leave the group.
/// librdkafka (2.12) closes such a member without a LeaveGroup: its close revokes nothing, and
/// only a revocation leads to the leave. The member then stays in the group until its session
/// times out, and the rebalance its departure starts — or one already under way, in which its
/// JoinGroup is parked — waits for it, stranding the other members' partitions for a session
/// (issue 19: a newcomer stopped before its second cooperative round). Unsubscribing first
/// takes the path that does leave (a rejoin without a subscription); the close that follows
/// waits for the answer. A static member (`group.instance.id`) must not leave, and a KIP-848
/// member leaves on close whatever it owns.
fn leave_if_idle(consumer: &BaseConsumer<RunnerContext>) {
    let idle = consumer.assignment().is_ok_and(|assigned| assigned.count() == 0);
    if consumer.context().classic_dynamic && idle {
        consumer.unsubscribe();
    }
}
