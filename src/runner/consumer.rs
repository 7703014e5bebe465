//! The consumer side: the rebalance callbacks (assign → new windows; revoke → drain up to the
//! grace period, then commit) and the poll loop, which runs on its own thread so that waiting in
//! a callback never blocks the async workers, and which keeps polling while partitions are
//! paused, so a slow model never causes a `max.poll.interval.ms` eviction.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = tps(tpl);
            tracing::info!(stage = %self.stage, partitions = assigned.len(), "partitions assigned");
            self.partitions.assign(assigned);
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
    while shutdown.phase() == Phase::Running {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let (topic, partition, offset) =
                    (message.topic().to_owned(), message.partition(), message.offset());
                if !partitions.admit(message.detach(), consumer)
                    && shutdown.phase() == Phase::Running
                {
                    tracing::error!(
                        stage,
                        topic,
                        partition,
                        offset,
                        "record of an unassigned partition was not admitted"
                    );
                }
            }
            Some(Err(e)) => tracing::warn!(stage, error = %e, "consumer error"),
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
    left
}

use rdkafka::message::Message;
