//! The budget ledger: a single-partition topic of claims. Every replica reads it from the start
//! and decides each claim the same way, in log order (see [`super::book`]). A replica writes a
//! claim, then waits to read its own decision — so no two replicas can be granted the same money,
//! without any coordinator.
//!
//! Every replica must apply the same claims: a record is skipped only when it can never be read
//! as a claim (every replica skips it alike). While the schema registry is unreachable the reader
//! holds its position and retries; it never passes a claim the others may have read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::book::{Book, Claim, Decision};
use crate::avro::{Codec, CodecError, SchemaKind};
use crate::call::now_ms;
use crate::config::KafkaSettings;
use crate::kafka::{producer_config, reader_config};
use crate::retry::infrastructure_backoff;
use crate::telemetry::{LedgerClaimSkipped, LedgerReadFailed, LedgerRegistryWait};

/// How long a claimer waits for the decision on its claim.
const DECISION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("budget ledger: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("budget ledger: {0}")]
    Other(String),
}

pub struct Ledger {
    topic: String,
    replica: String,
    seq: AtomicU64,
    producer: FutureProducer,
    codec: Arc<Codec>,
    book: Arc<Mutex<Book>>,
    /// Offsets applied so far; closed when the reader thread ends.
    applied: tokio::sync::watch::Receiver<i64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Whether a metadata error only means the broker is still electing the partition's leader (a
/// broker or a topic that has just come up), not that the ledger cannot be read.
fn electing(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e,
        KafkaError::MetadataFetch(
            Code::NotLeaderForPartition | Code::LeaderNotAvailable | Code::NotCoordinator
        )
    )
}

/// The ledger partition's high watermark, waiting (up to [`ELECTION_WAIT`], logged) while a
/// fresh broker elects its leader; any other error at once.
fn high_watermark(consumer: &BaseConsumer, topic: &str) -> Result<i64, KafkaError> {
    let give_up = std::time::Instant::now() + ELECTION_WAIT;
    let mut waits = infrastructure_backoff();
    loop {
        match consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)) {
            Ok((_, high)) => return Ok(high),
            Err(e) if electing(&e) && std::time::Instant::now() < give_up => {
                LedgerReadFailed { topic, error: &format!("{e}; waiting for a leader") }.emit();
                std::thread::sleep(waits.next().unwrap_or(Duration::from_secs(1)));
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long opening the ledger waits for its partition's leader to be elected.
const ELECTION_WAIT: Duration = Duration::from_secs(60);

impl Ledger {
    /// Starts reading the ledger and returns once everything written before now is applied
    /// (waiting out a schema registry outage).
    pub async fn open(
        kafka: &KafkaSettings,
        topic: &str,
        codec: Arc<Codec>,
        replica: String,
    ) -> Result<Self, LedgerError> {
        // Asking the broker for the watermarks blocks: off the async threads.
        let (settings, name) = (kafka.clone(), topic.to_owned());
        let (consumer, high) = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = reader_config(&settings).create()?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&name, 0, Offset::Beginning)?;
            consumer.assign(&tpl)?;
            let high = high_watermark(&consumer, &name)?;
            Ok::<_, LedgerError>((consumer, high))
        })
        .await
        .map_err(|e| LedgerError::Other(e.to_string()))??;
        let book = Arc::new(Mutex::new(Book::default()));
        let (changed, mut applied) = tokio::sync::watch::channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let reader = Reader {
                topic: topic.to_owned(),
                replica: replica.clone(),
                book: book.clone(),
                changed,
                stop: stop.clone(),
                codec: codec.clone(),
                handle: tokio::runtime::Handle::current(),
            };
            std::thread::Builder::new()
                .name("budget-ledger".into())
                .spawn(move || reader.run(&consumer))
                .map_err(|e| LedgerError::Other(e.to_string()))?;
        }
        let caught_up = applied.wait_for(|applied| *applied >= high).await.is_ok();
        if !caught_up {
            return Err(LedgerError::Other("reader stopped while catching up".into()));
        }
        let producer = producer_config(kafka).create()?;
        Ok(Self {
            topic: topic.to_owned(),
            replica,
            seq: AtomicU64::new(0),
            producer,
            codec,
            book,
            applied,
            stop,
        })
    }

    /// The ledger topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Micro-dollars granted under `key` so far, by every replica.
    pub fn granted(&self, key: &str) -> u64 {
        self.book.lock().expect("ledger lock").granted(key)
    }

    /// Records skipped because they can never be read as a claim.
    pub fn skipped(&self) -> u64 {
        self.book.lock().expect("ledger lock").skipped()
    }

    /// Budget windows held in memory.
    pub fn windows(&self) -> usize {
        self.book.lock().expect("ledger lock").windows()
    }

    /// Claims `amount` under `key` and waits for the ledger's decision.
    pub async fn claim(
        &self,
        key: &str,
        tenant: &str,
        amount: u64,
        limit: u64,
    ) -> Result<Decision, LedgerError> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) as i64;
        let claim = Claim {
            budget_key: key.to_owned(),
            tenant: tenant.to_owned(),
            replica: self.replica.clone(),
            seq,
            amount_micro_usd: amount as i64,
            limit_micro_usd: limit as i64,
            at_ms: now_ms(),
        };
        let value = apache_avro::to_value(&claim)
            .and_then(|v| v.resolve(SchemaKind::BudgetClaim.schema()))
            .map_err(|e| LedgerError::Other(e.to_string()))?;
        let payload = self
            .codec
            .encode(&self.topic, &value)
            .map_err(|e| LedgerError::Other(e.to_string()))?;
        let mut applied = self.applied.clone();
        applied.borrow_and_update();
        let record = FutureRecord::to(&self.topic).key(key).payload(&payload).partition(0);
        self.producer
            .send(record, DECISION_TIMEOUT)
            .await
            .map_err(|(e, _)| LedgerError::Kafka(e))?;
        let decided = tokio::time::timeout(DECISION_TIMEOUT, async {
            loop {
                if let Some(d) = self.book.lock().expect("ledger lock").take_own(seq) {
                    return Ok(d);
                }
                if applied.changed().await.is_err() {
                    return Err(LedgerError::Other("the ledger reader stopped".into()));
                }
            }
        });
        match decided.await {
            Ok(decision) => decision,
            Err(_) => {
                self.book.lock().expect("ledger lock").forget_own(seq);
                Err(LedgerError::Other(format!(
                    "no decision on a claim within {DECISION_TIMEOUT:?}"
                )))
            }
        }
    }
}

/// The reader thread: applies every record in log order.
struct Reader {
    topic: String,
    replica: String,
    book: Arc<Mutex<Book>>,
    changed: tokio::sync::watch::Sender<i64>,
    stop: Arc<AtomicBool>,
    codec: Arc<Codec>,
    handle: tokio::runtime::Handle,
}

impl Reader {
    fn run(self, consumer: &BaseConsumer) {
        while !self.stop.load(Ordering::SeqCst) {
            let Some(result) = consumer.poll(Duration::from_millis(50)) else { continue };
            let m = match result {
                Ok(m) => m,
                Err(e) => {
                    LedgerReadFailed { topic: &self.topic, error: &e }.emit();
                    continue;
                }
            };
            let decode = || self.decode(m.payload());
            let claim =
                match read_claim(decode, infrastructure_backoff(), &self.stop, |e, delay| {
                    LedgerRegistryWait {
                        topic: &self.topic,
                        offset: m.offset(),
                        error: &e.to_string(),
                        retry_in: delay,
                    }
                    .emit();
                }) {
                    None => return, // stopped while waiting for the registry
                    Some(Ok(claim)) => Some(claim),
                    Some(Err(reason)) => {
                        LedgerClaimSkipped {
                            topic: &self.topic,
                            offset: m.offset(),
                            reason: &reason,
                        }
                        .emit();
                        None
                    }
                };
            let mut book = self.book.lock().expect("ledger lock");
            book.apply(m.offset(), claim.as_ref(), &self.replica);
            let applied = book.applied();
            drop(book);
            self.changed.send_replace(applied);
        }
    }

    fn decode(&self, payload: Option<&[u8]>) -> Result<Claim, CodecError> {
        let decoded = self.handle.block_on(self.codec.decode(payload))?;
        if decoded.kind != SchemaKind::BudgetClaim {
            return Err(CodecError::Malformed(format!(
                "a {} record, not a budget claim",
                decoded.kind.full_name()
            )));
        }
        apache_avro::from_value::<Claim>(&decoded.value)
            .map_err(|e| CodecError::Malformed(format!("not a budget claim: {e}")))
    }
}

/// Reads one ledger record as a claim. A registry outage is waited out — the same record is
/// decoded again after each of `delays` — because skipping a claim other replicas read would
/// make their totals differ. `Err` only for a record that can never be a claim; `None` when
/// `stop` is raised while waiting.
fn read_claim(
    mut decode: impl FnMut() -> Result<Claim, CodecError>,
    mut delays: impl Iterator<Item = Duration>,
    stop: &AtomicBool,
    mut waiting: impl FnMut(&CodecError, Duration),
) -> Option<Result<Claim, String>> {
    loop {
        match decode() {
            Ok(claim) => return Some(Ok(claim)),
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

    fn claim() -> Claim {
        Claim {
            budget_key: "t|p|2026-01".into(),
            tenant: "t".into(),
            replica: "r".into(),
            seq: 0,
            amount_micro_usd: 5,
            limit_micro_usd: 10,
            at_ms: 0,
        }
    }

    #[test]
    fn a_registry_outage_is_waited_out_on_the_same_record() {
        let mut outcomes = vec![
            Err(CodecError::RegistryUnavailable("503".into())),
            Err(CodecError::RegistryUnavailable("503".into())),
            Ok(claim()),
        ]
        .into_iter();
        let mut waits = 0;
        let read = read_claim(
            || outcomes.next().expect("no more decodes than outcomes"),
            std::iter::repeat(Duration::ZERO),
            &AtomicBool::new(false),
            |_, _| waits += 1,
        );
        assert_eq!(waits, 2);
        assert_eq!(read.expect("not stopped").expect("a claim").amount_micro_usd, 5);
    }

    #[test]
    fn only_a_malformed_record_is_given_up_on() {
        let read = read_claim(
            || Err(CodecError::Malformed("wrong magic byte".into())),
            std::iter::repeat(Duration::ZERO),
            &AtomicBool::new(false),
            |_, _| panic!("a malformed record is not waited on"),
        );
        assert!(read.expect("not stopped").expect_err("skipped").contains("wrong magic byte"));
    }

    #[test]
    fn stopping_ends_the_wait() {
        let read = read_claim(
            || Err(CodecError::RegistryUnavailable("503".into())),
            std::iter::repeat(Duration::ZERO),
            &AtomicBool::new(true),
            |_, _| {},
        );
        assert!(read.is_none());
    }
}
