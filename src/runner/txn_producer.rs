//! An exactly-once stage's transactional producer, and its renewal. `transactional.id` is
//! `<group>.<instance>`: the worker's static instance id (`sluice run --instance-id`) when it has
//! one — a restarted worker then fences its predecessor and aborts its open transaction at once
//! — else an id of this process (a crashed worker's open transaction then holds back readers of
//! its outputs until the broker aborts it, `transaction.timeout.ms`, 10 s by default).
//!
//! A producer whose epoch ended is renewed rather than the worker stopped when its id is its
//! process's own: nobody else can hold that id, so the end can only be the broker aborting a
//! transaction that outlived `transaction.timeout.ms` (a broker outage, a paused process). With
//! a static id another worker may have taken the id over (two workers given one instance id):
//! that one stops.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};

use crate::config::KafkaSettings;

/// How long one transactional call (init, offsets, commit, abort) may take.
pub const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `init_transactions` is retried while it fails with a retriable error (the first
/// transaction on a cluster waits for its transaction log to be created; a broker restarts).
const INIT_DEADLINE: Duration = Duration::from_secs(120);

pub struct TxnProducer {
    pub producer: FutureProducer,
    kafka: KafkaSettings,
    id: String,
    /// The id is the worker's static instance id, which another worker may hold.
    pub static_id: bool,
}

impl TxnProducer {
    /// Creates the producer and initialises its transactions (fencing any older producer of its
    /// id and aborting that one's open transaction). Blocking.
    pub fn start(kafka: &KafkaSettings, group: &str) -> Result<Self, KafkaError> {
        let static_id = kafka.consumer.get("group.instance.id").cloned();
        let instance = static_id.clone().unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{}-{nanos:x}", std::process::id())
        });
        let id = format!("{group}.{instance}");
        let producer = Self::init(kafka, &id)?;
        Ok(Self { producer, kafka: kafka.clone(), id, static_id: static_id.is_some() })
    }

    fn init(kafka: &KafkaSettings, id: &str) -> Result<FutureProducer, KafkaError> {
        let producer: FutureProducer =
            crate::kafka::transactional_producer_config(kafka, id).create()?;
        let started = Instant::now();
        let mut waits = crate::retry::infrastructure_backoff();
        loop {
            match producer.init_transactions(TXN_TIMEOUT) {
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && started.elapsed() < INIT_DEADLINE =>
                {
                    std::thread::sleep(waits.next().unwrap_or(Duration::from_secs(1)));
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(producer),
            }
        }
    }

    /// Replaces a producer whose epoch ended with a new one of the same id, if the id is this
    /// process's own. `Err` says why the worker must stop instead.
    pub fn renew(&mut self, why: &KafkaError) -> Result<(), String> {
        if self.static_id {
            return Err(format!(
                "the transactional producer '{}' was fenced ({why}): another worker may hold \
                 the same --instance-id",
                self.id
            ));
        }
        self.producer = Self::init(&self.kafka, &self.id)
            .map_err(|e| format!("the transactional producer could not be renewed: {e}"))?;
        Ok(())
    }
}

/// Whether `error` ended the producer for good (librdkafka's fatal errors: fenced, an epoch
/// ended by a transaction timeout).
pub fn is_fatal(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(e) if e.is_fatal())
}
