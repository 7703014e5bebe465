//! How a redrive's republished records and its position reach Kafka together.
//!
//! On Apache Kafka (and any broker with transactions) the producer is transactional with
//! `transactional.id = <stage group>.redrive`: each batch of republished records and the redrive
//! group's new position (with its done-set metadata) commit in one transaction
//! (`send_offsets_to_transaction`), so a crash or a failed delivery aborts the whole batch and
//! the stages, which read committed (librdkafka's default `isolation.level`), never see it; the
//! next run starts from the last committed batch. `init_transactions` fences any older producer
//! of the same id, so of two redrives of one stage the older stops at its next step with
//! [`DlqError::TakenOver`], and its open batch is aborted.
//!
//! librdkafka's mock cluster (the embedded broker of `sluice dev` and the tests) accepts the
//! transactional requests but neither stores offsets committed in a transaction nor hides aborted
//! records, so there the records are produced plainly and the position committed after they are
//! acknowledged (checked first against a concurrent commit): at least once, a crash between
//! acknowledgement and commit republishes that batch. The report says which applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerGroupMetadata, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::position::Position;
use super::route::Republished;
use crate::config::KafkaSettings;
use crate::kafka::presence::present;
use crate::kafka::{producer_config, BrokerKind};
use crate::ops::dlq::read::DlqError;

/// How long a transactional call (init, offsets, commit, abort) may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening keeps retrying `init_transactions` while it fails with a retriable error.
const INIT_DEADLINE: Duration = Duration::from_secs(120);

pub struct Sink {
    producer: FutureProducer,
    /// Set on a broker with transactions.
    txn: Option<Txn>,
}

struct Txn {
    metadata: Arc<ConsumerGroupMetadata>,
    stage: String,
    open: bool,
    /// Where the lease lives, to tell a fencing by another run from an abort by the broker.
    kafka: KafkaSettings,
    group: String,
}

impl Sink {
    /// A producer for `stage`'s redrive: transactional (fencing any older run) unless the broker
    /// (of `kind`) is the embedded one. `consumer` is the assign-only consumer of the redrive
    /// `group`.
    pub async fn open(
        kafka: &KafkaSettings,
        kind: BrokerKind,
        stage: &str,
        group: &str,
        consumer: &StreamConsumer,
    ) -> Result<Self, DlqError> {
        let mut config = producer_config(kafka);
        if kind == BrokerKind::Embedded {
            return Ok(Self { producer: config.create()?, txn: None });
        }
        config.set("transactional.id", group);
        let producer: FutureProducer = config.create()?;
        let p = producer.clone();
        tokio::task::spawn_blocking(move || {
            // The first transaction on a cluster waits for its transaction log to be created.
            let started = Instant::now();
            let mut waits = crate::retry::infrastructure_backoff();
            loop {
                match p.init_transactions(TXN_TIMEOUT) {
                    Err(KafkaError::Transaction(e))
                        if e.is_retriable() && started.elapsed() < INIT_DEADLINE =>
                    {
                        std::thread::sleep(waits.next().unwrap_or(Duration::from_secs(1)));
                    }
                    done => return done,
                }
            }
        })
        .await
        .expect("the transaction thread does not panic")
        .map_err(|e| taken_over(&producer, stage, e))?;
        let metadata =
            Arc::new(consumer.group_metadata().expect("the redrive consumer has a group"));
        let txn = Txn {
            metadata,
            stage: stage.to_owned(),
            open: false,
            kafka: kafka.clone(),
            group: group.to_owned(),
        };
        Ok(Self { producer, txn: Some(txn) })
    }

    /// Whether batches commit atomically with the position.
    pub fn transactional(&self) -> bool {
        self.txn.is_some()
    }

    /// Hands `r` to the producer (opening the batch's transaction first).
    pub fn send(&mut self, r: &Republished) -> Result<DeliveryFuture, KafkaError> {
        if let Some(txn) = self.txn.as_mut().filter(|t| !t.open) {
            self.producer.begin_transaction()?;
            txn.open = true;
        }
        let headers = r.headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header { key, value: value.as_deref() })
        });
        let mut record = FutureRecord::to(&r.topic).payload(&r.value).headers(headers);
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        if let Some(key) = &r.key {
            record = record.key(key);
        }
        self.producer.send_result(record).map_err(|(e, _)| e)
    }

    /// Commits the batch: the position's changes with the records sent since the last commit.
    pub async fn commit(&mut self, position: &mut Position) -> Result<(), DlqError> {
        let changes = position.changed();
        let Some(txn) = self.txn.as_mut() else { return position.commit().await };
        if changes.is_empty() && !txn.open {
            return Ok(());
        }
        if let Err(e) = position.check_unmoved(&changes).await {
            self.abort().await;
            return Err(e);
        }
        let offsets = position.offsets(&changes)?;
        let (p, was_open) = (self.producer.clone(), txn.open);
        let metadata = txn.metadata.clone();
        let result = tokio::task::spawn_blocking(move || {
            if !was_open {
                p.begin_transaction()?;
            }
            if offsets.count() > 0 {
                p.send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)?;
            }
            p.commit_transaction(TXN_TIMEOUT)
        })
        .await
        .expect("the transaction thread does not panic");
        txn.open = false;
        match result {
            Ok(()) => {
                position.committed(changes);
                Ok(())
            }
            Err(e) => {
                let (stage, kafka, group) =
                    (txn.stage.clone(), txn.kafka.clone(), txn.group.clone());
                self.abort().await;
                if !is_fenced(&self.producer, &e) {
                    return Err(DlqError::Kafka(e));
                }
                // An ended epoch: a transaction timeout, or a newer run. Our own run is one
                // holder of the lease; a run that took over would be another (none at all: the
                // lease is not ours to judge by).
                let others = tokio::task::spawn_blocking(move || present(&kafka, &group))
                    .await
                    .expect("the presence thread does not panic")
                    .ok()
                    .map(|holders| holders.len() != 1);
                Err(verdict(stage, e, others))
            }
        }
    }

    /// `error`, or [`DlqError::TakenOver`] when this producer was fenced by a newer run.
    pub fn explain(&self, error: DlqError) -> DlqError {
        match &self.txn {
            Some(txn) if fenced(&self.producer) => DlqError::TakenOver { stage: txn.stage.clone() },
            _ => error,
        }
    }

    /// Aborts the open transaction, if any: nothing sent since the last commit becomes visible.
    pub async fn abort(&mut self) {
        let Some(txn) = self.txn.as_mut() else { return };
        let p = self.producer.clone();
        txn.open = false;
        // A fenced or failed producer cannot abort; the broker aborts its transaction when the
        // next run initialises (or when `transaction.timeout.ms` passes).
        let _ = tokio::task::spawn_blocking(move || p.abort_transaction(TXN_TIMEOUT)).await;
    }
}

/// Whether `code` says a newer producer of the same transactional id fenced this one.
fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// Whether the producer's fatal error is a fencing.
fn fenced(producer: &FutureProducer) -> bool {
    producer.client().fatal_error().is_some_and(|(code, _)| is_fencing(code))
}

/// Whether `error` (or the producer's fatal error) says this producer's epoch is over.
fn is_fenced(producer: &FutureProducer, error: &KafkaError) -> bool {
    error.rdkafka_error_code().is_some_and(is_fencing) || fenced(producer)
}

/// `error`, or [`DlqError::TakenOver`] when it (or the producer's fatal error) says that a newer
/// producer of the same transactional id fenced this one.
fn taken_over(producer: &FutureProducer, stage: &str, error: KafkaError) -> DlqError {
    if is_fenced(producer, &error) {
        return DlqError::TakenOver { stage: stage.to_owned() };
    }
    DlqError::Kafka(error)
}

/// What a commit that failed with an ended epoch means: a transaction timeout and a newer run
/// both end the producer's epoch, and librdkafka reports both as `_FENCED` (seen on Apache
/// Kafka), so only when `others` (another holder of the lease is present, or none at all; None:
/// unknown) is it said that another run took over.
fn verdict(stage: String, error: KafkaError, others: Option<bool>) -> DlqError {
    match others {
        Some(false) => DlqError::TransactionAborted { stage, error: error.to_string() },
        _ => DlqError::TakenOver { stage },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review #2: an epoch ended by the broker (transaction timeout) while no other run holds
    /// the lease is not reported as a take-over.
    #[test]
    fn an_aborted_transaction_is_a_take_over_only_when_another_run_is_there() {
        let fenced = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidProducerEpoch);
        let alone = verdict("s".into(), fenced.clone(), Some(false));
        assert!(matches!(alone, DlqError::TransactionAborted { .. }), "{alone}");
        assert!(alone.to_string().contains("transaction.timeout.ms"), "{alone}");
        let other = verdict("s".into(), fenced.clone(), Some(true));
        assert!(matches!(other, DlqError::TakenOver { .. }), "{other}");
        let unknown = verdict("s".into(), fenced, None);
        assert!(matches!(unknown, DlqError::TakenOver { .. }), "{unknown}");
    }
}
