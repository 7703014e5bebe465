//! The semantic cache shared by replicas and kept across restarts, the budget ledger's way (no
//! new infrastructure): entries live on a compacted topic sluice owns, keyed by their
//! [`record_key`](super::entry::record_key); every replica reads the topic from its beginning
//! into its own [`SemanticIndex`] at start ([`SemanticStore::open`] returns once it reached the
//! end it had, and reports how long that took), then follows it, so an entry one replica stores
//! answers on all. A tombstone (a false-hit report) removes the entry everywhere, and compaction
//! drops it from the topic.
//!
//! Unlike a budget claim, an entry decides nothing: replicas need not apply records in one order,
//! so the entries topic may have several partitions and is read through the one topic reader
//! ([`crate::kafka::reader`]). Every record is hostile input: one that is not an entry sluice
//! wrote (see [`SemanticEntry::decode`]) is counted and skipped, never indexed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::entry::SemanticEntry;
use super::index::{IndexLimits, InsertError, Lookup, SemanticIndex};
use super::key::SemanticKey;
use crate::call::now_ms;
use crate::config::KafkaSettings;
use crate::kafka::{producer_config, reader};

/// How long a write waits for the broker.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the follower waits for a record before it looks at `stop` again.
const FOLLOW_PATIENCE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("semantic cache {topic}: {error}")]
    Kafka { topic: String, error: KafkaError },
}

/// What reading the topic at start found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuild {
    /// Records read (entries, tombstones, skipped ones).
    pub records: u64,
    /// Entries in the index afterwards.
    pub entries: usize,
    pub elapsed: Duration,
}

struct Shared {
    index: Mutex<SemanticIndex>,
    skipped: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn index(&self) -> MutexGuard<'_, SemanticIndex> {
        self.index.lock().expect("the semantic index lock is never poisoned")
    }

    /// Applies one record of the topic.
    fn apply(&self, topic: &str, m: &BorrowedMessage<'_>) {
        let Some(key) = m.key() else { return self.skip(topic, m.offset(), "no record key") };
        let Some(value) = m.payload() else {
            match std::str::from_utf8(key) {
                Ok(key) => {
                    self.index().remove(key);
                }
                Err(_) => self.skip(topic, m.offset(), "a tombstone whose key is not text"),
            }
            return;
        };
        let entry = match SemanticEntry::decode(key, value) {
            Ok(entry) => entry,
            Err(e) => return self.skip(topic, m.offset(), &e.to_string()),
        };
        match self.index().insert(entry, now_ms()) {
            Ok(_) | Err(InsertError::Expired) => {}
            Err(e) => self.skip(topic, m.offset(), &e.to_string()),
        }
    }

    fn skip(&self, topic: &str, offset: i64, reason: &str) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(topic, offset, reason, "semantic cache record skipped");
    }
}

/// The semantic cache of this replica, backed by its entries topic.
pub struct SemanticStore {
    topic: String,
    shared: Arc<Shared>,
    producer: FutureProducer,
    rebuild: Rebuild,
}

impl Drop for SemanticStore {
    fn drop(&mut self) {
        self.stop();
    }
}

impl SemanticStore {
    /// Reads `topic` to its end into a new index, then follows it on a thread of its own.
    pub async fn open(
        kafka: &KafkaSettings,
        topic: &str,
        limits: IndexLimits,
    ) -> Result<Self, StoreError> {
        let kafka_error = |error| StoreError::Kafka { topic: topic.to_owned(), error };
        let shared = Arc::new(Shared {
            index: Mutex::new(SemanticIndex::new(limits)),
            skipped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let (settings, name, state) = (kafka.clone(), topic.to_owned(), shared.clone());
        let (caught_up, ready) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sluice-semantic".into())
            .spawn(move || follow(&settings, &name, &state, caught_up))
            .expect("a thread can be spawned");
        let rebuild = ready.await.unwrap_or(Err(KafkaError::Canceled)).map_err(kafka_error)?;
        let producer = producer_config(kafka).create().map_err(kafka_error)?;
        Ok(Self { topic: topic.to_owned(), shared, producer, rebuild })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The earlier answer for `text` under `key`, if one is similar enough and compatible.
    pub fn lookup(&self, key: &SemanticKey, vector: &[f32], text: &str, threshold: f32) -> Lookup {
        self.shared.index().lookup(key, vector, text, threshold, now_ms())
    }

    /// Stores `entry` here at once and, through the topic, on every replica.
    pub async fn put(&self, entry: SemanticEntry) -> Result<(), StoreError> {
        let (key, value) = (entry.record_key(), entry.encode());
        // An entry this index refuses (expired, another dimension) is not worth sharing.
        if self.shared.index().insert(entry, now_ms()).is_err() {
            return Ok(());
        }
        self.send(&key, Some(&value)).await
    }

    /// Removes the entry of `record_key` here and, with a tombstone, on every replica.
    pub async fn remove(&self, record_key: &str) -> Result<(), StoreError> {
        self.shared.index().remove(record_key);
        self.send(record_key, None).await
    }

    async fn send(&self, key: &str, value: Option<&Vec<u8>>) -> Result<(), StoreError> {
        let mut record = FutureRecord::<str, Vec<u8>>::to(&self.topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.producer
            .send(record, SEND_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(error, _)| StoreError::Kafka { topic: self.topic.clone(), error })
    }

    /// What reading the topic at start found, and how long it took.
    pub fn rebuild(&self) -> Rebuild {
        self.rebuild
    }

    /// Entries held, and the bytes they hold (roughly).
    pub fn size(&self) -> (usize, usize) {
        let index = self.shared.index();
        (index.len(), index.bytes())
    }

    /// Records skipped because they are not entries sluice wrote.
    pub fn skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Ends the following thread.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// The reader thread: to the end the topic had, reported on `caught_up`, then onwards.
fn follow(
    kafka: &KafkaSettings,
    topic: &str,
    shared: &Shared,
    caught_up: tokio::sync::oneshot::Sender<Result<Rebuild, KafkaError>>,
) {
    let started = Instant::now();
    let stop = || shared.stop.load(Ordering::SeqCst);
    let reader = match reader::reader(kafka, &[topic], true) {
        Ok(r) => r,
        Err(e) => return drop(caught_up.send(Err(e))),
    };
    let mut records = 0;
    let initial = reader.drain(None, true, Duration::from_secs(30), stop, |m| {
        records += 1;
        shared.apply(topic, m);
        true
    });
    let entries = shared.index().len();
    let rebuild = initial.map(|_| Rebuild { records, entries, elapsed: started.elapsed() });
    let failed = rebuild.is_err();
    if caught_up.send(rebuild).is_err() || failed {
        return;
    }
    while !stop() {
        let followed = reader.drain(None, false, FOLLOW_PATIENCE, stop, |m| {
            shared.apply(topic, m);
            true
        });
        if let Err(error) = followed {
            tracing::warn!(topic, %error, "semantic cache topic read failed");
            std::thread::sleep(FOLLOW_PATIENCE);
        }
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
