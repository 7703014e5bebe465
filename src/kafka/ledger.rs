//! The log-ordered ledger: a one-partition topic every replica reads from its beginning, in
//! order, applying each record to a [`Book`] of its own — so all replicas derive the same state
//! without talking to each other (the budget's claims, the review queue's claims). A writer
//! produces a record and waits until its reader applied it ([`LogLedger::wait_applied`]) to
//! learn what it decided.
//!
//! Every replica must apply the same records: a record is given to the book as `None` only when
//! it can never be read as an entry (every replica skips it alike) or is a tombstone. While the
//! schema registry is unreachable the reader holds its position and waits (the backoff of
//! [`crate::retry`]); it never passes a record the others may have read. The reader is a thread
//! of its own and ends when [`LogLedger::stop`] is called or the ledger is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::avro::{Codec, CodecError, SchemaKind};
use crate::config::KafkaSettings;
use crate::kafka::reader_config;
use crate::retry::infrastructure_backoff;

const POLL: Duration = Duration::from_millis(50);

/// What a ledger's records are applied to.
pub trait Book: Send + 'static {
    /// One record, as the ledger's schema reads.
    type Entry: DeserializeOwned;

    /// Applies the record at `offset`: an entry, or `None` for a tombstone or a record that can
    /// never be read as an entry (skipped alike by every replica).
    fn apply(&mut self, offset: i64, entry: Option<Self::Entry>);
}

/// What a ledger's reader reports, as typed events of the ledger's owner.
pub trait LedgerEvents: Send + 'static {
    fn read_failed(&self, topic: &str, error: &KafkaError);
    fn registry_wait(&self, topic: &str, offset: i64, error: &str, retry_in: Duration);
    fn skipped(&self, topic: &str, offset: i64, reason: &str);
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {topic}: {error}")]
    Kafka { topic: String, error: KafkaError },
    #[error("ledger {0}: the reader stopped while catching up")]
    Stopped(String),
}

/// A ledger being read into a book.
pub struct LogLedger<B: Book> {
    topic: String,
    book: Arc<Mutex<B>>,
    /// The next offset to apply; closed when the reader thread ends.
    applied: watch::Receiver<i64>,
    stop: Arc<AtomicBool>,
}

impl<B: Book> Drop for LogLedger<B> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<B: Book> LogLedger<B> {
    /// Starts reading `topic` (partition 0, from its beginning) into `book`, each record decoded
    /// as `kind`, and returns once everything written before now is applied.
    pub async fn open(
        kafka: &KafkaSettings,
        topic: &str,
        kind: SchemaKind,
        codec: Arc<Codec>,
        book: Arc<Mutex<B>>,
        events: impl LedgerEvents,
    ) -> Result<Self, LedgerError> {
        let kafka_error = |error| LedgerError::Kafka { topic: topic.to_owned(), error };
        let (settings, name) = (kafka.clone(), topic.to_owned());
        let opened = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = reader_config(&settings).create()?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&name, 0, Offset::Beginning)?;
            consumer.assign(&tpl)?;
            let high = high_watermark(&consumer, &name)?;
            Ok::<_, KafkaError>((consumer, high))
        })
        .await
        .expect("the ledger's metadata thread does not panic");
        let (consumer, high) = opened.map_err(kafka_error)?;
        let (changed, mut applied) = watch::channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            topic: topic.to_owned(),
            kind,
            book: book.clone(),
            changed,
            stop: stop.clone(),
            codec,
            handle: tokio::runtime::Handle::current(),
            events,
        };
        std::thread::Builder::new()
            .name("sluice-ledger".into())
            .spawn(move || reader.run(&consumer))
            .expect("a thread can be spawned");
        if applied.wait_for(|next| *next >= high).await.is_err() {
            return Err(LedgerError::Stopped(topic.to_owned()));
        }
        Ok(Self { topic: topic.to_owned(), book, applied, stop })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn book(&self) -> MutexGuard<'_, B> {
        self.book.lock().expect("the ledger's book lock is never poisoned")
    }

    /// The next offset to apply, as it changes; closed once the reader stopped.
    pub fn applied(&self) -> watch::Receiver<i64> {
        self.applied.clone()
    }

    /// Waits (at most `timeout`) until the record at `offset` is applied.
    pub async fn wait_applied(&self, offset: i64, timeout: Duration) -> bool {
        let mut rx = self.applied.clone();
        let wait = async move { rx.wait_for(|next| *next > offset).await.is_ok() };
        matches!(tokio::time::timeout(timeout, wait).await, Ok(true))
    }

    /// Ends the reader thread (after the record it is applying, or its wait for the registry).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The ledger partition's high watermark, waiting (see [`super::ready`]) while a fresh broker
/// elects its leader; any other error at once.
fn high_watermark(consumer: &BaseConsumer, topic: &str) -> Result<i64, KafkaError> {
    let what = format!("the offsets of the ledger {topic}");
    super::ready::retry(&what, || consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)))
        .map(|(_, high)| high)
}

/// The reader thread: applies every record in log order.
struct Reader<B: Book, E> {
    topic: String,
    kind: SchemaKind,
    book: Arc<Mutex<B>>,
    changed: watch::Sender<i64>,
    stop: Arc<AtomicBool>,
    codec: Arc<Codec>,
    handle: tokio::runtime::Handle,
    events: E,
}

impl<B: Book, E: LedgerEvents> Reader<B, E> {
    fn run(self, consumer: &BaseConsumer) {
        while !self.stop.load(Ordering::SeqCst) {
            let Some(result) = consumer.poll(POLL) else { continue };
            let m = match result {
                Ok(m) => m,
                Err(e) => {
                    self.events.read_failed(&self.topic, &e);
                    continue;
                }
            };
            let entry = match m.payload() {
                None => None,
                Some(payload) => {
                    let decode = || self.decode(payload);
                    let wait = |e: &CodecError, delay| {
                        self.events.registry_wait(&self.topic, m.offset(), &e.to_string(), delay)
                    };
                    match read_entry(decode, infrastructure_backoff(), &self.stop, wait) {
                        None => return, // stopped while waiting for the registry
                        Some(Ok(entry)) => Some(entry),
                        Some(Err(reason)) => {
                            self.events.skipped(&self.topic, m.offset(), &reason);
                            None
                        }
                    }
                }
            };
            self.book.lock().expect("never poisoned").apply(m.offset(), entry);
            self.changed.send_replace(m.offset() + 1);
        }
    }

    fn decode(&self, payload: &[u8]) -> Result<B::Entry, CodecError> {
        let decoded = self.handle.block_on(self.codec.decode(Some(payload)))?;
        if decoded.kind != self.kind {
            return Err(CodecError::Malformed(format!(
                "a {} record, not a {}",
                decoded.kind.full_name(),
                self.kind.full_name()
            )));
        }
        apache_avro::from_value::<B::Entry>(&decoded.value)
            .map_err(|e| CodecError::Malformed(format!("not a {}: {e}", self.kind.full_name())))
    }
}

/// Reads one ledger record as an entry. A registry outage is waited out — the same record is
/// decoded again after each of `delays` — because skipping a record other replicas read would
/// make their books differ. `Err` only for a record that can never be an entry; `None` when
/// `stop` is raised while waiting.
pub fn read_entry<T>(
    mut decode: impl FnMut() -> Result<T, CodecError>,
    mut delays: impl Iterator<Item = Duration>,
    stop: &AtomicBool,
    mut waiting: impl FnMut(&CodecError, Duration),
) -> Option<Result<T, String>> {
    loop {
        match decode() {
            Ok(entry) => return Some(Ok(entry)),
            Err(e) if e.is_retryable() => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                waiting(&e, delay);
                std::thread::sleep(delay);
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_outage_is_waited_out_on_the_same_record() {
        let mut outcomes = vec![
            Err(CodecError::RegistryUnavailable("503".into())),
            Err(CodecError::RegistryUnavailable("503".into())),
            Ok(5),
        ]
        .into_iter();
        let mut waits = 0;
        let read = read_entry(
            || outcomes.next().expect("no more decodes than outcomes"),
            std::iter::repeat(Duration::ZERO),
            &AtomicBool::new(false),
            |_, _| waits += 1,
        );
        assert_eq!(waits, 2);
        assert_eq!(read.expect("not stopped").expect("an entry"), 5);
    }

    #[test]
    fn only_a_malformed_record_is_given_up_on() {
        let read = read_entry::<i32>(
            || Err(CodecError::Malformed("wrong magic byte".into())),
            std::iter::repeat(Duration::ZERO),
            &AtomicBool::new(false),
            |_, _| panic!("a malformed record is not waited on"),
        );
        assert!(read.expect("not stopped").expect_err("skipped").contains("wrong magic byte"));
    }

    #[test]
    fn stopping_ends_the_wait() {
        let read = read_entry::<i32>(
            || Err(CodecError::RegistryUnavailable("503".into())),
            std::iter::repeat(Duration::ZERO),
            &AtomicBool::new(true),
            |_, _| {},
        );
        assert!(read.is_none());
    }
}
