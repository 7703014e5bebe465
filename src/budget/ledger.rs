//! The budget ledger: a single-partition topic of claims, read by every replica into its
//! [`Book`] on the one log-ordered ledger primitive ([`crate::kafka::ledger`]): each replica
//! decides each claim the same way, in log order. A replica writes a claim, then waits to read
//! its own decision — so no two replicas can be granted the same money, without any coordinator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::book::{Book, Claim, Decision};
use crate::avro::{Codec, SchemaKind};
use crate::call::now_ms;
use crate::config::KafkaSettings;
use crate::kafka::ledger::{self as log, LedgerEvents, LogLedger};
use crate::kafka::producer_config;
use crate::telemetry::{LedgerClaimSkipped, LedgerReadFailed, LedgerRegistryWait};

/// How long a claimer waits for the decision on its claim.
const DECISION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("budget ledger: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("budget {0}")]
    Log(#[from] log::LedgerError),
    #[error("budget ledger: {0}")]
    Other(String),
}

/// The book of this replica: claims decided in log order, this replica's own recognised.
struct Claims {
    book: Book,
    replica: String,
}

impl log::Book for Claims {
    type Entry = Claim;

    fn apply(&mut self, offset: i64, entry: Option<Claim>) {
        self.book.apply(offset, entry.as_ref(), &self.replica);
    }
}

/// The budget's events of its ledger's reader.
struct Events;

impl LedgerEvents for Events {
    fn read_failed(&self, topic: &str, error: &KafkaError) {
        LedgerReadFailed { topic, error }.emit();
    }

    fn registry_wait(&self, topic: &str, offset: i64, error: &str, retry_in: Duration) {
        LedgerRegistryWait { topic, offset, error, retry_in }.emit();
    }

    fn skipped(&self, topic: &str, offset: i64, reason: &str) {
        LedgerClaimSkipped { topic, offset, reason }.emit();
    }
}

pub struct Ledger {
    log: LogLedger<Claims>,
    replica: String,
    seq: AtomicU64,
    producer: FutureProducer,
    codec: Arc<Codec>,
}

impl Ledger {
    /// Starts reading the ledger and returns once everything written before now is applied
    /// (waiting out a schema registry outage).
    pub async fn open(
        kafka: &KafkaSettings,
        topic: &str,
        codec: Arc<Codec>,
        replica: String,
    ) -> Result<Self, LedgerError> {
        let book = Claims { book: Book::default(), replica: replica.clone() };
        let book = Arc::new(std::sync::Mutex::new(book));
        let kind = SchemaKind::BudgetClaim;
        let log = LogLedger::open(kafka, topic, kind, codec.clone(), book, Events).await?;
        let producer = producer_config(kafka).create()?;
        Ok(Self { log, replica, seq: AtomicU64::new(0), producer, codec })
    }

    /// The ledger topic.
    pub fn topic(&self) -> &str {
        self.log.topic()
    }

    /// Micro-dollars granted under `key` so far, by every replica.
    pub fn granted(&self, key: &str) -> u64 {
        self.log.book().book.granted(key)
    }

    /// Records skipped because they can never be read as a claim.
    pub fn skipped(&self) -> u64 {
        self.log.book().book.skipped()
    }

    /// The next ledger offset this replica's book applies (all before it are applied).
    pub fn applied(&self) -> i64 {
        self.log.book().book.applied()
    }

    /// Budget windows held in memory.
    pub fn windows(&self) -> usize {
        self.log.book().book.windows()
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
        let topic = self.log.topic();
        let value = apache_avro::to_value(&claim)
            .and_then(|v| v.resolve(SchemaKind::BudgetClaim.schema()))
            .map_err(|e| LedgerError::Other(e.to_string()))?;
        let payload =
            self.codec.encode(topic, &value).map_err(|e| LedgerError::Other(e.to_string()))?;
        let mut applied = self.log.applied();
        applied.borrow_and_update();
        let record = FutureRecord::to(topic).key(key).payload(&payload).partition(0);
        self.producer
            .send(record, DECISION_TIMEOUT)
            .await
            .map_err(|(e, _)| LedgerError::Kafka(e))?;
        let decided = tokio::time::timeout(DECISION_TIMEOUT, async {
            loop {
                if let Some(d) = self.log.book().book.take_own(seq) {
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
                self.log.book().book.forget_own(seq);
                Err(LedgerError::Other(format!(
                    "no decision on a claim within {DECISION_TIMEOUT:?}"
                )))
            }
        }
    }
}
