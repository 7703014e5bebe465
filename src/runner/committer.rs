//! The committer thread of an exactly-once stage ([`super::txn`]): it owns the transactional
//! producer and the open transaction, completes records as their writes enter it, commits it
//! with the touched partitions' positions, aborts and rewinds, and renews a producer whose
//! epoch ended.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use super::completed;
use super::delivery::{classify, future_record, ProduceFailure};
use super::disposition::OutRecord;
use super::partitions::{Added, Partitions, Position, Tp};
use super::txn_producer::{is_fatal, TxnProducer, TXN_TIMEOUT};
use crate::config::Transactions as Settings;
use crate::shutdown::Shutdown;
use crate::telemetry::{TransactionAborted, TransactionCommitted};

/// The stage consumer's group metadata as of now (none once it is gone): what fences a
/// transaction's offsets (KIP-447). A function, so the committer knows nothing of the consumer.
pub type GroupMetadata = Box<dyn Fn() -> Option<ConsumerGroupMetadata> + Send>;

/// A record's writes, handed to the committer.
pub struct Finished {
    pub tp: Tp,
    pub epoch: u64,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub records: Vec<OutRecord>,
}

/// How a record handed to the committer ended.
#[derive(Debug)]
pub enum Settled {
    /// Its writes and its offset committed together.
    Committed,
    /// Its transaction aborted, or its partition moved: it is read and processed again.
    Aborted,
    /// Its partition's map cannot name it yet: hand it over again after the next commit.
    Full(Vec<OutRecord>),
    /// The producer cannot go on; the worker stops.
    Fatal(String),
}

/// An output the broker refused inside an aborted transaction: the record is dead-lettered
/// when it comes back (the same bytes would be refused again).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub topic: String,
    pub error: String,
}

pub(super) enum Msg {
    Record(Finished, oneshot::Sender<Settled>),
    Commit(Vec<Position>, mpsc::Sender<bool>),
    Abort(mpsc::Sender<()>),
    Stop,
}

/// How long an abort is retried while the broker cannot be reached.
const ABORT_DEADLINE: Duration = Duration::from_secs(60);
/// Retriable failures of one commit before the transaction is aborted instead.
const COMMIT_TRIES: usize = 5;

/// A record in the open transaction: its writes, who waits for it, and the deliveries of its
/// writes (by index) that were queued.
type Entry = (Finished, oneshot::Sender<Settled>, Vec<(usize, DeliveryFuture)>);

/// The open transaction.
#[derive(Default)]
pub(super) struct Batch {
    open: bool,
    opened: Option<Instant>,
    records: Vec<Entry>,
    touched: BTreeSet<Tp>,
    /// A write that could not even be queued: the transaction must abort.
    failed: Option<String>,
}

pub(super) struct Committer {
    pub(super) txp: TxnProducer,
    /// The stage consumer's group metadata now (KIP-447: offsets are fenced by it).
    pub(super) group: GroupMetadata,
    pub(super) partitions: Arc<Partitions>,
    pub(super) settings: Settings,
    pub(super) stage: String,
    pub(super) shutdown: Shutdown,
    pub(super) refusals: Arc<Mutex<HashMap<(Tp, i64), Refusal>>>,
    pub(super) fatal: Arc<Mutex<Option<String>>>,
    pub(super) batch: Batch,
}

impl Committer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let wait = match self.batch.opened {
                Some(at) => self.settings.interval.saturating_sub(at.elapsed()),
                None => Duration::from_secs(1),
            };
            match rx.recv_timeout(wait) {
                Ok(Msg::Record(finished, reply)) => self.add(finished, reply),
                Ok(Msg::Commit(positions, reply)) => {
                    let _ = reply.send(self.commit(positions));
                }
                Ok(Msg::Abort(reply)) => {
                    if self.batch.open {
                        self.abort("the assignment was lost");
                    }
                    let _ = reply.send(());
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.commit(Vec::new());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let due = self.batch.opened.is_some_and(|at| at.elapsed() >= self.settings.interval);
            if due || self.batch.records.len() >= self.settings.max_records {
                self.commit(Vec::new());
            }
        }
    }

    fn stopped(&self) -> bool {
        self.shutdown.phase() == crate::shutdown::Phase::Stopped
    }

    fn fatal_reason(&self) -> Option<String> {
        self.fatal.lock().expect("txn fatal").clone()
    }

    fn begin(&mut self) -> bool {
        if self.batch.open {
            return true;
        }
        match self.txp.producer.begin_transaction() {
            Ok(()) => {
                self.batch.open = true;
                self.batch.opened = Some(Instant::now());
                true
            }
            Err(e) if is_fatal(&e) && self.renew(&e) => self.begin(),
            Err(e) => {
                self.stop_worker(format!("cannot begin a transaction: {e}"));
                false
            }
        }
    }

    /// Completes the record in its window and sends its writes into the open transaction.
    fn add(&mut self, f: Finished, reply: oneshot::Sender<Settled>) {
        if let Some(reason) = self.fatal_reason() {
            let _ = reply.send(Settled::Fatal(reason));
            return;
        }
        if !self.begin() {
            let _ = reply.send(Settled::Fatal(self.fatal_reason().unwrap_or_default()));
            return;
        }
        match self.partitions.add_to_transaction(&f.tp, f.epoch, f.offset, f.key.as_deref()) {
            Added::Stale => {
                let _ = reply.send(Settled::Aborted);
            }
            Added::Full => {
                let _ = reply.send(Settled::Full(f.records));
            }
            Added::Done => {
                let mut deliveries = Vec::with_capacity(f.records.len());
                for (i, r) in f.records.iter().enumerate() {
                    match self.queue(r) {
                        Ok(delivery) => deliveries.push((i, delivery)),
                        Err(e) => {
                            let reason = format!("output to '{}' not queued: {e}", r.topic);
                            self.batch.failed.get_or_insert(reason);
                        }
                    }
                }
                self.batch.touched.insert(f.tp.clone());
                self.batch.records.push((f, reply, deliveries));
            }
        }
    }

    /// Queues one write, waiting while the producer's queue is full.
    fn queue(&self, r: &OutRecord) -> Result<DeliveryFuture, KafkaError> {
        let mut record = future_record(r);
        loop {
            match self.txp.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Waits for every write of the open transaction; notes what the broker refused for good.
    /// Returns why the transaction cannot commit, if it cannot.
    /// Each delivery is waited for on its own (bounded by `message.timeout.ms`, which the
    /// transactional producer keeps within `transaction.timeout.ms`), not by `flush`: rust-rdkafka's
    /// flush sleeps in 100 ms polls while the producer's own thread takes the delivery reports,
    /// which made every commit take 100 ms (docs/BENCHMARKS.md, "Exactly once").
    fn delivered(&mut self) -> Option<String> {
        let mut failed = self.batch.failed.take();
        for (f, _, deliveries) in &mut self.batch.records {
            for (i, delivery) in deliveries.iter_mut() {
                let error = match futures::executor::block_on(delivery) {
                    Ok(Ok(_)) => continue,
                    Ok(Err((e, _))) => e,
                    Err(_) => KafkaError::Canceled,
                };
                let topic = &f.records[*i].topic;
                if classify(&error) == ProduceFailure::Refused {
                    let refusal = Refusal { topic: topic.clone(), error: error.to_string() };
                    self.refusals
                        .lock()
                        .expect("refusals")
                        .insert((f.tp.clone(), f.offset), refusal);
                }
                failed.get_or_insert(format!("output to '{topic}' failed: {error}"));
            }
        }
        failed
    }

    /// Commits the open transaction with the positions of every partition it touched (and
    /// `extra`). Returns whether it committed.
    fn commit(&mut self, extra: Vec<Position>) -> bool {
        if self.fatal_reason().is_some() {
            self.settle(|reason| Settled::Fatal(reason.clone()));
            return false;
        }
        if !self.batch.open && extra.is_empty() {
            return true;
        }
        let started = Instant::now();
        if !self.begin() {
            return false;
        }
        if let Some(reason) = self.delivered() {
            return self.abort(&reason);
        }
        let mut positions = self.partitions.positions(&self.batch.touched);
        positions.retain(|(tp, ..)| !extra.iter().any(|(x, ..)| x == tp));
        positions.extend(extra);
        if let Err(e) = self.send_offsets(&positions) {
            return self.failed(e);
        }
        let mut tries = 0;
        loop {
            match self.txp.producer.commit_transaction(TXN_TIMEOUT) {
                Ok(()) => break,
                Err(KafkaError::Flush(_)) if tries < COMMIT_TRIES => tries += 1,
                Err(KafkaError::Transaction(e)) if e.is_retriable() && tries < COMMIT_TRIES => {
                    tries += 1
                }
                Err(e) => return self.failed(e),
            }
        }
        self.partitions.committed(&positions);
        let records = self.batch.records.len();
        TransactionCommitted { stage: &self.stage, records, elapsed: started.elapsed() }.emit();
        self.settle(|_| Settled::Committed);
        true
    }

    fn send_offsets(&self, positions: &[Position]) -> Result<(), KafkaError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), position, done) in positions {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*position))?;
            let map = completed::encode(*position, done);
            if let Some(mut e) = tpl.find_partition(topic, *partition).filter(|_| !map.is_empty()) {
                e.set_metadata(map);
            }
        }
        let metadata = (self.group)().ok_or(KafkaError::Canceled)?;
        self.txp.producer.send_offsets_to_transaction(&tpl, &metadata, TXN_TIMEOUT)
    }

    /// A transactional call failed: fatal errors stop the worker, anything else aborts.
    fn failed(&mut self, error: KafkaError) -> bool {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetMetadataTooLarge) {
            self.stop_worker(format!(
                "the broker refuses the completed-offset map ({error}): exactly-once stages \
                 need the brokers' offset.metadata.max.bytes at its default (4096) or above"
            ));
        }
        if is_fatal(&error) {
            if self.renew(&error) {
                return self.aborted(&error.to_string());
            }
            self.settle(|reason| Settled::Fatal(reason.clone()));
            return false;
        }
        self.abort(&error.to_string())
    }

    /// Replaces a producer whose epoch ended (its open transaction is gone with it); false if
    /// the worker stops instead.
    fn renew(&mut self, why: &KafkaError) -> bool {
        match self.txp.renew(why) {
            Ok(()) => true,
            Err(reason) => {
                self.stop_worker(reason);
                false
            }
        }
    }

    /// Aborts the open transaction and rewinds the partitions it touched. A broker that cannot
    /// be reached is waited for (a while: the broker aborts the transaction itself after
    /// `transaction.timeout.ms`, and the producer is renewed then).
    fn abort(&mut self, reason: &str) -> bool {
        let mut waits = crate::retry::infrastructure_backoff();
        let started = Instant::now();
        loop {
            match self.txp.producer.abort_transaction(TXN_TIMEOUT) {
                Ok(()) => break,
                Err(e) if is_fatal(&e) => {
                    // Renewed, the producer's open transaction is gone; else the worker stops.
                    self.renew(&e);
                    break;
                }
                Err(_) if started.elapsed() < ABORT_DEADLINE && !self.stopped() => {
                    std::thread::sleep(waits.next().unwrap_or(Duration::from_secs(1)));
                }
                Err(e) => {
                    // The next owner of its partitions starts from the last committed positions
                    // once the broker aborts it.
                    self.stop_worker(format!("cannot abort a transaction ({reason}): {e}"));
                    break;
                }
            }
        }
        self.aborted(reason)
    }

    /// The open transaction is gone: its partitions are rewound, its records told.
    fn aborted(&mut self, reason: &str) -> bool {
        self.partitions.rewind(&self.batch.touched);
        let records = self.batch.records.len();
        TransactionAborted { stage: &self.stage, records, reason }.emit();
        self.settle(|_| Settled::Aborted);
        false
    }

    /// Tells every record of the ended transaction how it ended, and starts afresh.
    fn settle(&mut self, how: impl Fn(&String) -> Settled) {
        let reason = self.fatal_reason().unwrap_or_default();
        for (_, reply, _) in std::mem::take(&mut self.batch).records {
            let _ = reply.send(how(&reason));
        }
    }

    fn stop_worker(&self, reason: String) {
        self.fatal.lock().expect("txn fatal").get_or_insert(reason);
        self.shutdown.request();
    }
}
