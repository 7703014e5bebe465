//! The generic at-least-once runner: the only code that touches offsets.
//!
//! consume → decode → process → produce every output → await acknowledgements → mark done.
//! Offsets are stored only for the contiguous prefix of done records of each partition
//! ([`window`]); many records per partition are in flight at once, bounded per partition (each
//! partition has its own librdkafka queue, read only while its window has room; the poll loop never
//! blocks), per stage and per process (semaphores).
//! Records with the same key can be kept in order. Offsets are committed in the background, on
//! revoke and on shutdown.

mod attempt;
mod committer;
mod completed;
mod consumer;
mod cost_events;
mod dead_letter;
mod delivery;
mod detours;
mod disposition;
mod inbound;
mod partition;
mod partitions;
mod txn;
mod txn_producer;
mod window;
mod worker;
mod worker_txn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use consumer::RunnerContext;
pub use dead_letter::ORIGINAL_OMITTED;
pub use delivery::{classify as classify_produce_error, ProduceFailure};
pub use disposition::OutRecord;
pub use window::Window;

use crate::avro::Codec;
use crate::call::now_ms;
use crate::config::{StageSpec, Topology};
use crate::kafka::{consumer_config, producer_config};
use crate::pii::Redactor;
use crate::shutdown::{Phase, Shutdown};
use crate::stage::{Port, Stage};
use crate::telemetry::{StageRunning, StageStopped};
use partitions::{Dispatch, Partitions};
use txn_producer::TxnProducer;
use worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("stage '{stage}' stopped on a fatal error: {reason}")]
    Fatal { stage: String, reason: String },
}

/// How long the workers' tasks have to end once the run is stopped, before they are aborted.
const STOPPING: Duration = Duration::from_secs(5);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Records still in flight when the grace period ended; their offsets were not stored.
    pub abandoned: usize,
}

/// The topics a stage writes on each of its ports.
pub fn ports(spec: &StageSpec) -> HashMap<Port, String> {
    let mut ports = HashMap::from([(Port::Main, spec.output.clone())]);
    if let Some((needs_human, rejected)) = spec.kind.side_outputs() {
        ports.insert(Port::NeedsHuman, needs_human.to_owned());
        ports.insert(Port::Rejected, rejected.to_owned());
    }
    ports
}

/// Runs `stage` as a member of its consumer group until `shutdown`, then drains and commits.
/// `process_permits` bounds records in flight across every stage of this process.
pub async fn run<S: Stage>(
    stage: S,
    spec: &StageSpec,
    topology: &Topology,
    codec: Arc<Codec>,
    process_permits: Arc<Semaphore>,
    shutdown: Shutdown,
) -> Result<RunReport, RunError> {
    let producer: FutureProducer = producer_config(&topology.kafka).create()?;
    let (jobs_tx, mut jobs_rx) = tokio::sync::mpsc::unbounded_channel();
    let partitions = Arc::new(Partitions::new(
        spec.concurrency.per_partition,
        spec.concurrency.buffer_per_partition,
        spec.concurrency.key_ordering,
        // Exactly once needs the maps: the next owner must skip what committed out of order.
        spec.concurrency.commit_completed || spec.delivery.transactions().is_some(),
        jobs_tx,
    ));
    let own = inbound::Topics::of(spec, topology.budgets.is_some());
    let mut context =
        RunnerContext::new(spec.name.clone(), partitions.clone(), spec.shutdown_grace, own);
    let mut config = consumer_config(&topology.kafka, &spec.group);
    context.classic_dynamic = config.get("group.protocol").is_none_or(|p| p == "classic")
        && config.get("group.instance.id").is_none();
    if spec.delivery.transactions().is_some() {
        // Offsets are committed in the transactions only.
        config.set("enable.auto.commit", "false");
    }
    crate::telemetry::enable_statistics(&mut config); // lag and queue gauges, off the record path
    let consumer: Arc<BaseConsumer<RunnerContext>> = Arc::new(config.create_with_context(context)?);
    // The stage reads its input and every rung of its retry ladder.
    let retry_topics: Vec<String> = spec.retry.retry_topics().into_iter().map(|(t, _)| t).collect();
    let mut topics = vec![spec.input.as_str()];
    topics.extend(retry_topics.iter().map(String::as_str));
    if topology.budgets.is_some() {
        topics.push(&spec.deferred_topic);
    }
    consumer.context().consumer.set(Arc::downgrade(&consumer)).expect("set once");
    let _ = consumer.context().producer.set(producer.clone()); // set once, here
    let txn = match spec.delivery.transactions() {
        None => None,
        Some(settings) => {
            let (kafka, group) = (topology.kafka.clone(), spec.group.clone());
            let started = tokio::task::spawn_blocking(move || TxnProducer::start(&kafka, &group));
            let producer = started.await.expect("the transaction thread does not panic")?;
            let weak = Arc::downgrade(&consumer);
            let group: txn::GroupMetadata = Box::new(move || weak.upgrade()?.group_metadata());
            let (stage, shutdown, partitions) =
                (spec.name.clone(), shutdown.clone(), partitions.clone());
            let txn =
                txn::Transactions::start(producer, group, partitions, settings, stage, shutdown);
            let _ = consumer.context().txn.set(txn.clone());
            Some(txn)
        }
    };
    consumer.subscribe(&topics)?;

    let worker = Arc::new(Worker {
        stage,
        spec: spec.clone(),
        pipeline: topology.pipeline.clone(),
        codec: codec.clone(),
        producer: producer.clone(),
        partitions: partitions.clone(),
        consumer: consumer.clone(),
        ports: ports(spec),
        shutdown: shutdown.clone(),
        fatal: Mutex::new(None),
        metering_topic: topology.metering_topic.clone(),
        txn: txn.clone(),
        letters: dead_letter::DeadLetters::new(
            spec,
            &topology.pipeline,
            codec.clone(),
            (spec.redact_input && topology.pii.redact_side_outputs)
                .then(|| Redactor::new(&topology.pii.patterns)),
        ),
    });

    let stage_permits = Arc::new(Semaphore::new(spec.concurrency.max_in_flight));
    let dispatcher = {
        let worker = worker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Workers, parked records' timers and moves to the end of a topic; unfinished ones
            // leave their offsets unstored, so the records are redelivered.
            let mut tasks = JoinSet::new();
            loop {
                let dispatch = tokio::select! {
                    d = jobs_rx.recv() => match d { Some(d) => d, None => break },
                    _ = shutdown.reached(Phase::Stopped) => break,
                };
                // Finished tasks are reaped here, without a wake-up of their own: the
                // dispatcher is on every record's path.
                while tasks.try_join_next().is_some() {}
                match dispatch {
                    Dispatch::Park { tp, epoch, offset, due_ms, mut revoked } => {
                        let partitions = worker.partitions.clone();
                        let wait =
                            Duration::from_millis(due_ms.saturating_sub(now_ms()).max(0) as u64);
                        let shutdown = shutdown.clone();
                        tasks.spawn(async move {
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => partitions.unpark(&tp, epoch, offset),
                                _ = revoked.changed() => {}
                                _ = shutdown.reached(Phase::Stopped) => {}
                            }
                        });
                    }
                    Dispatch::Requeue { job, due_ms } => {
                        tasks.spawn(worker.clone().requeue(job, due_ms));
                    }
                    Dispatch::Run(job) => {
                        let (Ok(a), Ok(b)) = (
                            stage_permits.clone().acquire_owned().await,
                            process_permits.clone().acquire_owned().await,
                        ) else {
                            break;
                        };
                        tasks.spawn(worker.clone().handle(job, (a, b)));
                    }
                }
            }
            // Every task ends at `Stopped` on its own, metering what its record's calls cost;
            // one stuck elsewhere is aborted after a bound.
            let ended = async { while tasks.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(STOPPING, ended).await;
            tasks.shutdown().await;
        })
    };

    StageRunning { stage: &spec.name, group: &spec.group, input: &spec.input }.emit();
    let abandoned = {
        let (consumer, partitions, shutdown, grace, name) = (
            consumer.clone(),
            partitions.clone(),
            shutdown.clone(),
            spec.shutdown_grace,
            spec.name.clone(),
        );
        tokio::task::spawn_blocking(move || {
            consumer::poll_loop(&consumer, &partitions, &shutdown, grace, &name)
        })
        .await
        .expect("poll loop does not panic")
    };
    shutdown.stop();
    let _ = dispatcher.await;
    StageStopped { stage: &spec.name, abandoned }.emit();
    if let Some(txn) = txn.clone() {
        // Commits what is still open (nothing, after the poll loop's last commit) and ends.
        let _ = tokio::task::spawn_blocking(move || txn.stop()).await;
    }
    let fatal = worker.fatal.lock().expect("fatal lock").take();
    let fatal = fatal.or_else(|| txn.as_ref().and_then(|t| t.fatal()));
    // Flushing and closing the clients block: off the async threads. Every task holding the
    // worker has ended, so the consumer is closed here, not wherever its last handle drops.
    let _ = tokio::task::spawn_blocking(move || {
        let _ = producer.flush(Duration::from_secs(10));
        drop(worker);
        drop(consumer);
    })
    .await;
    if let Some(reason) = fatal {
        return Err(RunError::Fatal { stage: spec.name.clone(), reason });
    }
    Ok(RunReport { abandoned })
}
