//! Exactly-once delivery (`delivery: exactly_once`): one transactional producer per stage and
//! process, driven by one committer thread. Workers hand it a finished record's writes (outputs,
//! a retry or deferred copy, a dead letter); it completes the record in its partition's window
//! and sends the writes into the open transaction — both on this one thread, so a record's writes
//! and its "done" mark are never in different transactions — and every `interval` (or
//! `max_records` records) it commits the transaction with the positions of the partitions it
//! touched and their completed-offset maps (`send_offsets_to_transaction`, fenced through the
//! consumer's group metadata as KIP-447 allows). An aborted transaction rewinds its partitions
//! to their last committed positions ([`Partitions::rewind`]); a fatal error (a newer producer
//! of the same transactional id) stops the worker.
//!
//! Cost events are not in the transaction: the provider billed the call whether or not the
//! transaction commits, and a transaction that aborts or dies with its process would take the
//! call's only record with it. They are produced by the stage's idempotent producer and
//! acknowledged before the record enters the transaction (see docs/ARCHITECTURE.md).

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use super::completed;
use super::consumer::RunnerContext;
use super::delivery::{classify, future_record, ProduceFailure};
use super::disposition::OutRecord;
use super::partitions::{Added, Partitions, Position, Tp};
use crate::config::{KafkaSettings, Transactions as Settings};
use crate::shutdown::Shutdown;
use crate::telemetry::{TransactionAborted, TransactionCommitted};

/// How long one transactional call (init, offsets, commit, abort) may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long starting keeps retrying `init_transactions` while it fails with a retriable error
/// (the first transaction on a cluster waits for its transaction log to be created).
const INIT_DEADLINE: Duration = Duration::from_secs(120);
/// Retriable failures of one commit before the transaction is aborted instead.
const COMMIT_TRIES: usize = 5;

/// The stage's transactional producer: `transactional.id` = `<group>.<instance>`, the worker's
/// static instance id (`sluice run --instance-id`) when it has one — a restarted worker then
/// fences its predecessor and aborts its open transaction at once — else an id of this process
/// (a crashed worker's open transaction then holds back readers of its outputs until the broker
/// aborts it, `transaction.timeout.ms`, 10 s by default here).
pub fn producer(kafka: &KafkaSettings, group: &str) -> Result<FutureProducer, KafkaError> {
    let instance = match kafka.consumer.get("group.instance.id") {
        Some(id) => id.clone(),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{}-{nanos:x}", std::process::id())
        }
    };
    crate::kafka::transactional_producer_config(kafka, &format!("{group}.{instance}")).create()
}

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

enum Msg {
    Record(Finished, oneshot::Sender<Settled>),
    Commit(Vec<Position>, mpsc::Sender<bool>),
    Abort(mpsc::Sender<()>),
    Stop,
}

/// The stage's handle on its committer thread.
pub struct Transactions {
    tx: Mutex<mpsc::Sender<Msg>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    refusals: Arc<Mutex<HashMap<(Tp, i64), Refusal>>>,
    fatal: Arc<Mutex<Option<String>>>,
    shutdown: Shutdown,
    pub settings: Settings,
}

impl Transactions {
    /// Initialises `producer`'s transactions (fencing any older producer of its transactional
    /// id and aborting its open transaction) and starts the committer. Blocking.
    pub fn start(
        producer: FutureProducer,
        consumer: Weak<BaseConsumer<RunnerContext>>,
        partitions: Arc<Partitions>,
        settings: Settings,
        stage: String,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, KafkaError> {
        let started = Instant::now();
        let mut waits = crate::retry::infrastructure_backoff();
        loop {
            match producer.init_transactions(TXN_TIMEOUT) {
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && started.elapsed() < INIT_DEADLINE =>
                {
                    std::thread::sleep(waits.next().unwrap_or(Duration::from_secs(1)));
                }
                done => break done?,
            }
        }
        let (tx, rx) = mpsc::channel();
        let refusals = Arc::new(Mutex::new(HashMap::new()));
        let fatal = Arc::new(Mutex::new(None));
        let committer = Committer {
            producer,
            consumer,
            partitions,
            settings,
            stage,
            shutdown: shutdown.clone(),
            refusals: refusals.clone(),
            fatal: fatal.clone(),
            batch: Batch::default(),
        };
        let thread = std::thread::Builder::new()
            .name("sluice-txn".into())
            .spawn(move || committer.run(rx))
            .expect("spawn the committer thread");
        let tx = Mutex::new(tx);
        let thread = Mutex::new(Some(thread));
        Ok(Arc::new(Self { tx, thread, refusals, fatal, shutdown, settings }))
    }

    fn send(&self, msg: Msg) -> bool {
        self.tx.lock().expect("txn sender").send(msg).is_ok()
    }

    /// Hands a record's writes to the committer and waits for its transaction to end.
    pub async fn submit(&self, finished: Finished) -> Settled {
        let (reply, settled) = oneshot::channel();
        if !self.send(Msg::Record(finished, reply)) {
            return Settled::Aborted;
        }
        settled.await.unwrap_or(Settled::Aborted)
    }

    /// Commits the open transaction now, with `positions` too (revocation, shutdown: the
    /// partitions' last positions). Blocking; false if it did not commit.
    pub fn commit_now(&self, positions: Vec<Position>) -> bool {
        let (reply, done) = mpsc::channel();
        self.send(Msg::Commit(positions, reply)) && done.recv().unwrap_or(false)
    }

    /// Aborts the open transaction now (a lost assignment). Blocking.
    pub fn abort_now(&self) {
        let (reply, done) = mpsc::channel();
        if self.send(Msg::Abort(reply)) {
            let _ = done.recv();
        }
    }

    /// Commits what is open and ends the committer. Blocking.
    pub fn stop(&self) {
        self.send(Msg::Stop);
        if let Some(thread) = self.thread.lock().expect("txn thread").take() {
            let _ = thread.join();
        }
    }

    /// The refusal that aborted a transaction with this record's writes, if any.
    pub fn refusal(&self, tp: &Tp, offset: i64) -> Option<Refusal> {
        self.refusals.lock().expect("refusals").remove(&(tp.clone(), offset))
    }

    /// Stops the worker with `reason` (the first reason stays).
    pub fn stop_worker(&self, reason: String) {
        self.fatal.lock().expect("txn fatal").get_or_insert(reason);
        self.shutdown.request();
    }

    /// Why the committer stopped the worker, if it did.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().expect("txn fatal").clone()
    }
}

/// The open transaction.
#[derive(Default)]
struct Batch {
    open: bool,
    opened: Option<Instant>,
    records: Vec<(Finished, oneshot::Sender<Settled>, Vec<(usize, DeliveryFuture)>)>,
    touched: BTreeSet<Tp>,
    /// A write that could not even be queued: the transaction must abort.
    failed: Option<String>,
}

struct Committer {
    producer: FutureProducer,
    consumer: Weak<BaseConsumer<RunnerContext>>,
    partitions: Arc<Partitions>,
    settings: Settings,
    stage: String,
    shutdown: Shutdown,
    refusals: Arc<Mutex<HashMap<(Tp, i64), Refusal>>>,
    fatal: Arc<Mutex<Option<String>>>,
    batch: Batch,
}

impl Committer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
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

    fn fatal_reason(&self) -> Option<String> {
        self.fatal.lock().expect("txn fatal").clone()
    }

    fn begin(&mut self) -> bool {
        if self.batch.open {
            return true;
        }
        match self.producer.begin_transaction() {
            Ok(()) => {
                self.batch.open = true;
                self.batch.opened = Some(Instant::now());
                true
            }
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
            match self.producer.send_result(record) {
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
    fn delivered(&mut self) -> Option<String> {
        let _ = self.producer.flush(TXN_TIMEOUT);
        let mut failed = self.batch.failed.take();
        for (f, _, deliveries) in &mut self.batch.records {
            for (i, delivery) in deliveries.iter_mut() {
                let error = match delivery.now_or_never() {
                    Some(Ok(Ok(_))) => continue,
                    Some(Ok(Err((e, _)))) => e,
                    Some(Err(_)) | None => KafkaError::Canceled,
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
            match self.producer.commit_transaction(TXN_TIMEOUT) {
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
        let consumer = self.consumer.upgrade();
        let metadata = consumer.as_ref().and_then(|c| c.group_metadata());
        let metadata = metadata.ok_or(KafkaError::Canceled)?;
        self.producer.send_offsets_to_transaction(&tpl, &metadata, TXN_TIMEOUT)
    }

    /// A transactional call failed: fatal errors stop the worker, anything else aborts.
    fn failed(&mut self, error: KafkaError) -> bool {
        match &error {
            KafkaError::Transaction(e) if e.is_fatal() => {
                self.stop_worker(format!("the transactional producer cannot go on: {error}"));
                self.settle(|reason| Settled::Fatal(reason.clone()));
                false
            }
            _ => self.abort(&error.to_string()),
        }
    }

    /// Aborts the open transaction and rewinds the partitions it touched.
    fn abort(&mut self, reason: &str) -> bool {
        if let Err(e) = self.producer.abort_transaction(TXN_TIMEOUT) {
            // A producer that cannot abort cannot go on: the next owner of its partitions
            // starts from the last committed positions once the broker aborts it.
            self.stop_worker(format!("cannot abort a transaction ({reason}): {e}"));
        }
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
