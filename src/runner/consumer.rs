//! The consumer side: the rebalance callbacks (assign → new windows and per-partition queues;
//! revoke → drain up to the grace period, then commit) and the poll loop, which runs on its own
//! thread so that waiting in a callback never blocks the async workers, and which keeps polling
//! the main queue while full partitions are left unread, so a slow model never causes a
//! `max.poll.interval.ms` eviction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};

use super::partitions::{Partitions, Tp};
use crate::shutdown::{Phase, Shutdown};

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
}

impl RunnerContext {
    pub fn new(stage: String, partitions: Arc<Partitions>, grace: Duration) -> Self {
        Self {
            stage,
            partitions,
            grace,
            consumer: OnceLock::new(),
            queues: Mutex::new(HashMap::new()),
        }
    }
}

impl ClientContext for RunnerContext {}

fn tps(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}

/// Commits stored offsets synchronously; "nothing to commit" is not an error. A coordinator
/// that is mid-rebalance is asked again a few times: offsets not committed before a revocation
/// completes are lost to this member, and the next owner reprocesses those records.
pub fn commit_stored<C: ConsumerContext>(consumer: &BaseConsumer<C>, stage: &str) -> bool {
    for attempt in 1..=3 {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => return true,
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress))
                if attempt < 3 =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                tracing::warn!(stage, error = %e, "offset commit failed; uncommitted records will be redelivered");
                return false;
            }
        }
    }
    false
}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = tps(tpl);
                let abandoned = self.partitions.revoke(&revoked, self.grace);
                let committed = commit_stored(consumer, &self.stage);
                tracing::info!(stage = %self.stage, partitions = revoked.len(), abandoned, committed, "partitions revoked");
            }
            Rebalance::Error(e) => {
                tracing::warn!(stage = %self.stage, error = %e, "rebalance error")
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = tps(tpl);
                tracing::info!(stage = %self.stage, partitions = assigned.len(), "partitions assigned");
                self.partitions.assign(assigned.iter().cloned());
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

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(stage = %self.stage, error = %e, "background offset commit failed")
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
    let admit = |message: rdkafka::message::BorrowedMessage<'_>| {
        let (topic, partition, offset) =
            (message.topic().to_owned(), message.partition(), message.offset());
        if !partitions.admit(message.detach()) && shutdown.phase() == Phase::Running {
            tracing::error!(
                stage,
                topic,
                partition,
                offset,
                "record of an unassigned partition was not admitted"
            );
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
                Err(e) => tracing::warn!(stage, error = %e, "consumer error"),
            }
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
                    Some(Err(e)) => tracing::warn!(stage, error = %e, "consumer error"),
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
    let _ = commit_stored(consumer, stage);
    consumer.context().queues.lock().expect("queues lock").clear();
    left
}

use rdkafka::message::Message;
