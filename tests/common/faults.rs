//! The fault matrix's kit: an embedded cluster of several brokers, a feed that keeps producing
//! while a fault is on, partition leadership as a controller would move it, counters read from
//! the metrics, a sampler of a gauge, and the one line each fault test prints.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use sluice::avro::{Codec, SchemaKind};
use sluice::config::compile;
use sluice::devstack::{registry, DevBroker, DevStack, MockKafka};
use sluice::pipeline::schema_pairs;
use tokio::task::{JoinHandle, JoinSet};

use super::oracle::{Oracle, ReplayBound};
use super::topology::document;
use super::Harness;

/// Fault tests run one at a time: each takes a minute of wall time on purpose, the runner's
/// metrics they read are per process, and two at once on a 2-core machine would measure each
/// other's load instead of the fault.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub type Cluster = MockCluster<'static, DefaultProducerContext>;

impl Harness {
    /// [`Harness::start`] on an embedded cluster of `brokers` brokers (ids `1..=brokers`), every
    /// topic replicated on all of them so its leadership can move.
    pub async fn start_cluster(yaml: &str, brokers: i32) -> Self {
        sluice::telemetry::init_logging(false);
        let mut topology = compile(Path::new("test.yaml"), yaml).expect("test topology compiles");
        let kafka = MockKafka::start(brokers).expect("mock cluster");
        let registry =
            registry::serve("127.0.0.1:0".parse().expect("addr")).await.expect("dev registry");
        topology.kafka.bootstrap_servers = kafka.bootstrap_servers().to_owned();
        topology.schema_registry.url = registry.url();
        for t in topology.topics() {
            kafka.cluster().create_topic(&t.name, t.partitions, brokers).expect("topic");
        }
        sluice::avro::register_all(&SrSettings::new(registry.url()), &schema_pairs(&topology))
            .await
            .expect("schemas register");
        Self { stack: DevStack { kafka: DevBroker::Embedded(kafka), registry }, topology }
    }

    /// The embedded cluster, for fault injection.
    pub fn cluster(&self) -> &Cluster {
        self.stack.kafka.cluster().expect("embedded broker")
    }

    /// Makes `leader(topic, partition)` the leader of every partition of every topology topic
    /// (`None`: leaderless, as during an election).
    pub fn place_leaders(&self, leader: impl Fn(&str, i32) -> Option<i32>) {
        for t in self.topology.topics() {
            for p in 0..t.partitions {
                self.cluster().partition_leader(&t.name, p, leader(&t.name, p)).expect("leader");
            }
        }
    }

    /// Sum of the high watermarks of `partitions` of `topic`: how many records were written
    /// there, asked with ListOffsets only (no fetch, no reader that gives up on an error event).
    pub fn high_watermarks(&self, topic: &str, partitions: &[i32]) -> i64 {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.stack.kafka.bootstrap_servers())
            .create()
            .expect("consumer");
        let high = |p: i32| {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1
        };
        partitions.iter().map(|p| high(*p)).sum()
    }

    /// A feed of documents `id-0`, `id-1`, … to the input topic at `per_second`, encoded as the
    /// producers of the harness do.
    pub async fn feed(&self, per_second: u32) -> Feed {
        let codec = Arc::new(self.codec().await);
        let topic = self.input();
        let encode_topic = topic.clone();
        Feed::start(self.stack.kafka.bootstrap_servers(), &topic, per_second, move |i| {
            let envelope = document(&format!("id-{i}"), "t", &format!("document {i}"));
            let value = envelope.to_value(SchemaKind::Document).expect("document value");
            codec.encode(&encode_topic, &value).expect("encode")
        })
    }
}

/// Documents produced in the background at a steady rate until stopped, whatever the broker is
/// going through: sends do not wait for earlier acknowledgements, and the producer is idempotent
/// so its own retries never duplicate an input.
pub struct Feed {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Feed {
    /// Produces `encode(i)` keyed `id-<i>` to `topic` for i = 0, 1, …
    pub fn start(
        bootstrap: &str,
        topic: &str,
        per_second: u32,
        encode: impl Fn(usize) -> Vec<u8> + Send + 'static,
    ) -> Self {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .create()
            .expect("feed producer");
        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (s, n, topic) = (stop.clone(), sent.clone(), topic.to_owned());
        let task = tokio::spawn(async move {
            let mut deliveries = JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
            let mut i = 0;
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                let (key, payload) = (format!("id-{i}"), encode(i));
                let mut record = FutureRecord::to(&topic).key(&key).payload(&payload);
                let delivery = loop {
                    match producer.send_result(record) {
                        Ok(delivery) => break delivery,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err((e, _)) => panic!("feed: cannot enqueue {key}: {e}"),
                    }
                };
                deliveries.spawn(async move {
                    let acked = delivery.await.expect("feed delivery not cancelled");
                    acked.map(|_| ()).unwrap_or_else(|(e, _)| panic!("feed: {key} not acked: {e}"));
                });
                i += 1;
                n.store(i, Ordering::SeqCst);
            }
            while let Some(acked) = deliveries.join_next().await {
                acked.expect("feed delivery task");
            }
        });
        Self { stop, sent, task }
    }

    /// Records sent so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    /// Stops producing, waits until every record sent is acknowledged; returns how many.
    pub async fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the feed's records are acknowledged within a minute")
            .expect("feed task");
        self.sent.load(Ordering::SeqCst)
    }
}

/// The value of counter `name` in the process's metrics, summed over the series whose labels
/// include every pair of `labels` (e.g. `sluice_rebalances_total`, `[("stage", "work")]`).
pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    sluice::telemetry::render()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Group events that replay records for stage `stage`: revocations and lost assignments.
pub fn replay_events(stage: &str) -> u64 {
    ["revoked", "lost"]
        .iter()
        .map(|kind| counter("sluice_rebalances_total", &[("stage", stage), ("kind", kind)]))
        .sum()
}

/// Handovers of stage `stage` whose last commit failed (a revocation's or shutdown's,
/// `sluice_commit_failures_total{when="handover"}`): each replays all since the last commit.
pub fn failed_handovers(stage: &str) -> u64 {
    counter("sluice_commit_failures_total", &[("stage", stage), ("when", "handover")])
}

/// The distinct successive values a gauge took, sampled every 10 ms in the background.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<i64>>>,
    task: JoinHandle<()>,
}

impl Sampler {
    pub fn start(read: impl Fn() -> i64 + Send + 'static) -> Self {
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (s, v) = (stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let now = read();
                {
                    let mut seen = v.lock().expect("samples");
                    if seen.last() != Some(&now) {
                        seen.push(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Self { stop, seen, task }
    }

    /// The values seen so far, each change once.
    pub fn seen(&self) -> Vec<i64> {
        self.seen.lock().expect("samples").clone()
    }

    pub async fn stop(self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("sampler");
        let seen = self.seen.lock().expect("samples").clone();
        seen
    }
}

/// What one fault test measured, printed as one line for docs/RELIABILITY.md.
#[derive(Debug)]
pub struct Measured {
    pub case: &'static str,
    pub records: usize,
    pub lost: usize,
    pub dead_lettered: usize,
    pub duplicates: usize,
    /// The most duplicates the group events seen could replay.
    pub bound: usize,
    /// Revocations and lost assignments during the run.
    pub events: u64,
    /// From the fault's end until every record had ended.
    pub recovery: Duration,
}

impl Measured {
    /// Measures `oracle` (taken once all `records` ended) against the replay bound: `events` group
    /// events, each replaying at most `per_event` records.
    pub fn new(
        case: &'static str,
        records: usize,
        oracle: &Oracle,
        events: u64,
        per_event: &ReplayBound,
        recovery: Duration,
    ) -> Self {
        Self {
            case,
            records,
            lost: oracle.missing().len(),
            dead_lettered: oracle.dead_lettered().len(),
            duplicates: oracle.duplicates(),
            bound: events as usize * per_event.per_event(),
            events,
            recovery,
        }
    }

    /// Prints the line, then asserts the oracle: every id ended exactly once modulo duplicates,
    /// duplicates within the bound, and no id replayed more often than there were events.
    pub fn check(&self, oracle: &Oracle) {
        println!(
            "fault matrix | {} | records {} | lost {} | dead-lettered {} | duplicates {} \
             (bound {}, {} group events) | recovery {:.1} s",
            self.case,
            self.records,
            self.lost,
            self.dead_lettered,
            self.duplicates,
            self.bound,
            self.events,
            self.recovery.as_secs_f64()
        );
        oracle.check();
        assert!(
            self.duplicates <= self.bound,
            "{}: {} duplicates over a bound of {} ({} group events): {:?}",
            self.case,
            self.duplicates,
            self.bound,
            self.events,
            oracle.duplicated()
        );
        assert!(
            oracle.max_copies() as u64 <= self.events + 1,
            "{}: an id was replayed more often than there were group events: {:?}",
            self.case,
            oracle.duplicated()
        );
    }
}
