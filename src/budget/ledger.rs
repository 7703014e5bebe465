//! The budget ledger: a single-partition topic of claims. Every replica reads it from the start
//! and decides each claim the same way, in log order: granted if it fits under its limit after
//! the claims granted before it. A replica writes a claim, then waits to read its own decision —
//! so no two replicas can be granted the same money, without any coordinator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::avro::{Codec, SchemaKind};
use crate::config::KafkaSettings;
use crate::kafka::{producer_config, reader_config};
use crate::metering::now_ms;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claim {
    budget_key: String,
    tenant: String,
    replica: String,
    seq: i64,
    amount_micro_usd: i64,
    limit_micro_usd: i64,
    at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("budget ledger: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("budget ledger: {0}")]
    Other(String),
}

#[derive(Default)]
struct State {
    /// Micro-dollars granted per budget key, across all replicas.
    granted: HashMap<String, u64>,
    /// Decisions on this replica's claims, by sequence number.
    own: HashMap<i64, bool>,
    /// Records applied so far (the ledger's offset + 1).
    applied: i64,
}

pub struct Ledger {
    topic: String,
    replica: String,
    seq: AtomicU64,
    producer: FutureProducer,
    codec: Arc<Codec>,
    state: Arc<Mutex<State>>,
    changed: tokio::sync::watch::Sender<i64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Ledger {
    /// Starts reading the ledger and returns once everything written before now is applied.
    pub async fn open(
        kafka: &KafkaSettings,
        topic: &str,
        codec: Arc<Codec>,
        replica: String,
    ) -> Result<Self, LedgerError> {
        let consumer: BaseConsumer = reader_config(kafka).create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
        let state = Arc::new(Mutex::new(State::default()));
        let (changed, mut watch) = tokio::sync::watch::channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (state, changed, stop, codec) =
                (state.clone(), changed.clone(), stop.clone(), codec.clone());
            let (replica, handle) = (replica.clone(), tokio::runtime::Handle::current());
            std::thread::Builder::new()
                .name("budget-ledger".into())
                .spawn(move || read(consumer, &state, &changed, &stop, &codec, &replica, &handle))
                .map_err(|e| LedgerError::Other(e.to_string()))?;
        }
        watch
            .wait_for(|applied| *applied >= high)
            .await
            .map_err(|_| LedgerError::Other("reader stopped while catching up".into()))?;
        let producer = producer_config(kafka).create()?;
        Ok(Self {
            topic: topic.to_owned(),
            replica,
            seq: AtomicU64::new(0),
            producer,
            codec,
            state,
            changed,
            stop,
        })
    }

    /// Micro-dollars granted under `key` so far, by every replica.
    pub fn granted(&self, key: &str) -> u64 {
        self.state.lock().expect("ledger lock").granted.get(key).copied().unwrap_or(0)
    }

    /// Claims `amount` under `key`; `true` once the ledger granted it.
    pub async fn claim(
        &self,
        key: &str,
        tenant: &str,
        amount: u64,
        limit: u64,
    ) -> Result<bool, LedgerError> {
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
        let record = FutureRecord::to(&self.topic).key(key).payload(&payload).partition(0);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| LedgerError::Kafka(e))?;
        let mut watch = self.changed.subscribe();
        let decided = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(d) = self.state.lock().expect("ledger lock").own.remove(&seq) {
                    return d;
                }
                if watch.changed().await.is_err() {
                    return false;
                }
            }
        });
        decided.await.map_err(|_| LedgerError::Other("no decision on a claim within 30 s".into()))
    }
}

/// The reader thread: applies every claim in order.
fn read(
    consumer: BaseConsumer,
    state: &Mutex<State>,
    changed: &tokio::sync::watch::Sender<i64>,
    stop: &AtomicBool,
    codec: &Codec,
    replica: &str,
    handle: &tokio::runtime::Handle,
) {
    while !stop.load(Ordering::SeqCst) {
        let Some(result) = consumer.poll(Duration::from_millis(50)) else { continue };
        let m = match result {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "budget ledger read failed");
                continue;
            }
        };
        let claim = handle
            .block_on(codec.decode(m.payload()))
            .map_err(|e| e.to_string())
            .and_then(|d| apache_avro::from_value::<Claim>(&d.value).map_err(|e| e.to_string()));
        let mut s = state.lock().expect("ledger lock");
        match claim {
            Ok(c) => {
                let total = s.granted.get(&c.budget_key).copied().unwrap_or(0);
                let amount = c.amount_micro_usd.max(0) as u64;
                let granted = total + amount <= c.limit_micro_usd.max(0) as u64;
                if granted {
                    s.granted.insert(c.budget_key.clone(), total + amount);
                }
                if c.replica == replica {
                    s.own.insert(c.seq, granted);
                }
            }
            Err(e) => {
                tracing::error!(offset = m.offset(), error = %e, "unreadable budget claim skipped")
            }
        }
        s.applied = m.offset() + 1;
        let applied = s.applied;
        drop(s);
        changed.send_replace(applied);
    }
}
