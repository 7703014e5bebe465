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

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::committer::{Batch, Committer, Msg};
pub use super::committer::{Finished, GroupMetadata, Refusal, Settled};
use super::partitions::{Partitions, Position, Tp};
use super::txn_producer::TxnProducer;
use crate::config::Transactions as Settings;
use crate::shutdown::Shutdown;

/// The stage's handle on its committer thread.
pub struct Transactions {
    tx: Mutex<mpsc::Sender<Msg>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    refusals: Arc<Mutex<HashMap<(Tp, i64), Refusal>>>,
    fatal: Arc<Mutex<Option<String>>>,
    shutdown: Shutdown,
    /// Whether the last [`Self::commit_now`] committed: the answer once the committer has ended
    /// (the consumer's close revokes what the shutdown's last commit already handed over).
    last_commit: Mutex<bool>,
    pub settings: Settings,
}

impl Transactions {
    /// Starts the committer of `producer` (initialised: [`TxnProducer::start`]).
    pub fn start(
        producer: TxnProducer,
        group: GroupMetadata,
        partitions: Arc<Partitions>,
        settings: Settings,
        stage: String,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel();
        let refusals = Arc::new(Mutex::new(HashMap::new()));
        let fatal = Arc::new(Mutex::new(None));
        let committer = Committer {
            txp: producer,
            group,
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
        let last_commit = Mutex::new(false);
        Arc::new(Self { tx, thread, refusals, fatal, shutdown, last_commit, settings })
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
        let mut last = self.last_commit.lock().expect("last commit");
        if self.send(Msg::Commit(positions, reply)) {
            *last = done.recv().unwrap_or(false);
        }
        *last
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
