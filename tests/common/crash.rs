//! Multi-process scenarios: `sluice run` worker processes against a broker outside them — the
//! embedded one hosted by the test, or a real one given by `KAFKA_BOOTSTRAP_SERVERS` (with
//! `scripts/with-kafka`, also its state directory, so a test can SIGKILL and restart it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use sluice::avro::{Codec, Document, Envelope, SchemaKind};
use sluice::config::{compile, Topology};
use sluice::devstack::{registry, DevRegistry, MockKafka};
use sluice::kafka::registry_settings;
use sluice::pipeline::schema_pairs;

use super::procs::{start_worker, start_worker_with, Worker};
use super::read::{each_record_of, keys_on, try_committed, Until};
use super::watch::CommitWatch;
use super::Oracle;

/// A real broker's bootstrap address, when the test runs under `scripts/with-kafka` (or any
/// broker named by `KAFKA_BOOTSTRAP_SERVERS`).
pub fn external_broker() -> Option<String> {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok().filter(|s| !s.is_empty())
}

/// The state directory of the Apache Kafka broker `scripts/with-kafka` started, and the script
/// that kills and restarts it.
pub fn restartable_broker() -> Option<(PathBuf, PathBuf)> {
    let state = std::env::var_os("SLUICE_KAFKA_STATE")?;
    let script = std::env::var_os("SLUICE_KAFKA_BROKER_SCRIPT")?;
    Some((state.into(), script.into()))
}

/// Whether the broker is the Apache Kafka that `scripts/with-kafka` started (it exports the
/// broker's state directory; `scripts/with-tansu` exports none).
pub fn apache_kafka() -> bool {
    restartable_broker().is_some()
}

/// Runs `scripts/kafka-broker ACTION STATE`, asserting it succeeds.
pub fn broker(action: &str) {
    let (state, script) = restartable_broker().expect("a broker started by scripts/with-kafka");
    let status = std::process::Command::new(script)
        .arg(action)
        .arg(state)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("kafka-broker");
    assert!(status.success(), "kafka-broker {action} failed");
}

/// Whether document `i` is empty (the classify stage dead-letters those).
pub fn is_empty(i: usize) -> bool {
    i % 20 == 7
}

/// A one-stage pipeline with its documents produced, on the embedded or an external broker.
pub struct Scenario {
    pub t: Topology,
    pub path: PathBuf,
    pub bootstrap: String,
    pub docs: usize,
    pub partitions: i32,
    /// Where each document landed: id → (partition, offset).
    pub placed: HashMap<String, (i32, i64)>,
    registry: DevRegistry,
    _mock: Option<MockKafka>,
    _dir: tempfile::TempDir,
}

impl Scenario {
    /// Sets up the topology `yaml(pipeline)` (one stage named `work`, `partitions` per topic),
    /// creates its topics, registers its schemas and produces `docs` documents `d0..`.
    pub async fn start(docs: usize, partitions: i32, yaml: impl Fn(&str) -> String) -> Self {
        let external = external_broker();
        let mock = external.is_none().then(|| MockKafka::start(1).expect("mock broker"));
        let bootstrap =
            external.unwrap_or_else(|| mock.as_ref().expect("mock").bootstrap_servers().to_owned());
        let registry =
            registry::serve("127.0.0.1:0".parse().expect("addr")).await.expect("registry");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("scenario.yaml");
        std::fs::write(&path, yaml(&super::unique("mp"))).expect("write topology");
        let text = std::fs::read_to_string(&path).expect("read");
        let mut t = compile(&path, &text).expect("compiles");
        t.kafka.bootstrap_servers = bootstrap.clone();
        t.schema_registry.url = registry.url();
        match &mock {
            Some(m) => {
                for p in t.topics() {
                    m.create_topic(&p.name, p.partitions).expect("create topic");
                }
            }
            None => {
                sluice::kafka::create_planned_topics(&t.kafka, &t.topics())
                    .await
                    .expect("create topics");
            }
        }
        let settings = registry_settings(&t);
        sluice::avro::register_all(&settings, &schema_pairs(&t)).await.expect("register");
        let codec = Codec::connect(&settings, &schema_pairs(&t)).await.expect("codec");
        let placed = produce(&t, &codec, docs).await;
        Self { t, path, bootstrap, docs, partitions, placed, registry, _mock: mock, _dir: dir }
    }

    pub fn on_external_broker(&self) -> bool {
        self._mock.is_none()
    }

    /// A `sluice run --stage work` worker process.
    pub fn worker(&self) -> Worker {
        start_worker(&self.path, &self.bootstrap, &self.registry.url())
    }

    /// [`Scenario::worker`] with more arguments for `sluice run`.
    pub fn worker_with(&self, args: &[&str]) -> Worker {
        start_worker_with(&self.path, &self.bootstrap, &self.registry.url(), args)
    }

    /// The group's committed positions, read on a blocking thread; asked again while the
    /// coordinator is not ready (a new group, a broker that restarted).
    pub async fn positions(&self) -> Vec<i64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (bootstrap, group) = (self.bootstrap.clone(), self.t.stages[0].group.clone());
            let (topic, partitions) = (self.t.inputs[0].name.clone(), self.partitions);
            let read = tokio::task::spawn_blocking(move || {
                try_committed(&bootstrap, &group, &topic, partitions)
            })
            .await
            .expect("committed");
            match read {
                Ok(positions) => return positions,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("committed offsets not readable yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("committed offsets: {e}"),
            }
        }
    }

    /// Starts reading the group's committed positions in the background (see [`CommitWatch`]).
    pub fn watch(&self) -> CommitWatch {
        let (group, topic) = (&self.t.stages[0].group, &self.t.inputs[0].name);
        CommitWatch::start(
            &self.bootstrap,
            group,
            topic,
            self.partitions,
            Duration::from_millis(20),
        )
    }

    /// Every record on the output and dead-letter topics: its key and its timestamp (ms since the
    /// epoch, stamped by the producing worker's client when it sent the record). Read as
    /// [`Scenario::oracle`] reads them.
    pub async fn ended_at(&self) -> Vec<(String, i64)> {
        let stage = &self.t.stages[0];
        let topics = [stage.output.clone(), stage.dead_letter_topic.clone()];
        each_record_of(&self.t.kafka, &topics, Until::Idle(Duration::from_secs(3)), |m| {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            (key, m.timestamp().to_millis().expect("records carry a timestamp"))
        })
        .await
    }

    /// Waits until the group has committed at least `fraction` of the documents.
    pub async fn progress(&self, fraction: f64, deadline: Instant) {
        let target = (self.docs as f64 * fraction) as i64;
        while self.positions().await.iter().sum::<i64>() < target {
            assert!(Instant::now() < deadline, "workers made no progress to {fraction}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the broker serves the stage's topics again (after a restart, leadership takes
    /// a moment to settle and readers are refused meanwhile).
    pub async fn wait_for_topics(&self, deadline: Instant) {
        let stage = &self.t.stages[0];
        let topics = vec![stage.output.clone(), stage.dead_letter_topic.clone()];
        let kafka = self.t.kafka.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let ready = super::wait_until(left, || {
            let (kafka, topics) = (kafka.clone(), topics.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                    sluice::records_io::reader(&kafka, &names, true).is_ok()
                })
                .await
                .unwrap_or(false)
            }
        })
        .await;
        assert!(ready, "the broker did not serve the topics again");
    }

    /// Where each document ended. Read until 3 s pass without a record rather than up to the end
    /// offsets (some brokers answer ListOffsets(latest) wrongly).
    pub async fn oracle(&self) -> Oracle {
        let stage = &self.t.stages[0];
        let idle = Until::Idle(Duration::from_secs(3));
        let outputs = keys_on(&self.t.kafka, std::slice::from_ref(&stage.output), idle).await;
        let dead =
            keys_on(&self.t.kafka, std::slice::from_ref(&stage.dead_letter_topic), idle).await;
        Oracle::new((0..self.docs).map(|i| format!("d{i}")), outputs, dead)
    }

    /// Waits until every document ended somewhere, then checks the oracle: nothing lost,
    /// exactly the empty documents dead-lettered. Returns it for the duplicate counts.
    pub async fn settle(&self, deadline: Instant) -> Oracle {
        let left = deadline.saturating_duration_since(Instant::now());
        let ended = super::wait_until(left, || async { self.oracle().await.all_ended() }).await;
        assert!(ended, "{} ids ended nowhere", self.oracle().await.missing().len());
        let oracle = self.oracle().await;
        oracle.check();
        let empty: std::collections::BTreeSet<String> =
            (0..self.docs).filter(|i| is_empty(*i)).map(|i| format!("d{i}")).collect();
        assert_eq!(
            oracle.dead_lettered(),
            empty.iter().map(String::as_str).collect(),
            "exactly the empty documents are dead-lettered; simulated failures are retried"
        );
        assert_eq!(oracle.delivered().len(), self.docs - empty.len());
        oracle
    }
}

/// Produces the documents (every 20th one empty) and returns where each landed.
async fn produce(t: &Topology, codec: &Codec, docs: usize) -> HashMap<String, (i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &t.kafka.bootstrap_servers)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let topic = &t.inputs[0].name;
    let sends = (0..docs).map(|i| {
        let content =
            if is_empty(i) { String::new() } else { format!("invoice {i} was billed twice") };
        let doc = Document {
            id: format!("d{i}"),
            tenant: "t".into(),
            content,
            metadata: Default::default(),
        };
        let value = Envelope::new(doc).to_value(SchemaKind::Document).expect("value");
        (format!("d{i}"), codec.encode(topic, &value).expect("encode"))
    });
    // Every record is queued before any delivery is awaited: one at a time, tens of thousands
    // of documents would take minutes of linger.
    let mut pending = Vec::new();
    for (id, bytes) in sends.collect::<Vec<_>>() {
        let record = FutureRecord::to(topic).key(&id).payload(&bytes);
        let delivery = producer.send_result(record).map_err(|(e, _)| e).expect("queued");
        pending.push((id, delivery));
    }
    let mut placed = HashMap::new();
    for (id, delivery) in pending {
        let delivery = delivery.await.expect("delivered").expect("produce");
        placed.insert(id, (delivery.partition, delivery.offset));
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    placed
}
