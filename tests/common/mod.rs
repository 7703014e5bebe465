//! Shared helpers for tests against the embedded broker (librdkafka's mock cluster) and the dev
//! schema registry: unique names per test, record builders, a controllable test stage, readers
//! of output topics and committed offsets, and waiting with a deadline.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod procs;
pub mod qdrant;
pub mod redis;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::avro::{Classification, Codec, Document, Envelope, SchemaKind};
use sluice::config::{compile, Topology};
use sluice::devstack::DevStack;
use sluice::kafka::registry_settings;
use sluice::pipeline::schema_pairs;
use sluice::records_io::reader;
use sluice::stage::{Emit, Stage, StageContext, StageError};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A one-stage topology: `docs` → stage `work` (a classify stage) → `out`, with dead letters.
pub fn one_stage_topology(partitions: i32, concurrency: &str, producer_props: &str) -> String {
    let retry = "{ attempts: 3, initial_backoff: 10ms, max_backoff: 50ms }";
    one_stage_topology_with_retry(partitions, concurrency, producer_props, retry)
}

/// [`one_stage_topology`] with a given retry policy.
pub fn one_stage_topology_with_retry(
    partitions: i32,
    concurrency: &str,
    producer_props: &str,
    retry: &str,
) -> String {
    let p = unique("t");
    format!(
        r#"
pipeline: {p}
kafka:
  partitions: {partitions}
  consumer:
    auto.commit.interval.ms: "200"
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
    partition.assignment.strategy: cooperative-sticky
  producer:
    linger.ms: "1"
    {producer_props}
providers:
  sim: {{ kind: simulated, latency: 1ms }}
inputs:
  {p}.docs: {{ partitions: {partitions} }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [a] }}
    concurrency: {concurrency}
    retry: {retry}
    shutdown_grace: 10s
"#
    )
}

/// The embedded stack with a compiled topology pointed at it.
pub struct Harness {
    pub stack: DevStack,
    pub topology: Topology,
}

impl Harness {
    pub async fn start(yaml: &str) -> Self {
        sluice::telemetry::init_logging(false);
        let mut topology = compile(Path::new("test.yaml"), yaml).expect("test topology compiles");
        let stack = DevStack::start(&mut topology, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("dev stack");
        Self { stack, topology }
    }

    pub fn input(&self) -> String {
        self.topology.inputs[0].name.clone()
    }

    pub fn output(&self) -> String {
        self.topology.stages[0].output.clone()
    }

    pub fn dlq(&self) -> String {
        self.topology.stages[0].dead_letter_topic.clone()
    }

    pub fn group(&self) -> String {
        self.topology.stages[0].group.clone()
    }

    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.stack.kafka.bootstrap_servers())
            .set("linger.ms", "1")
            .create()
            .expect("producer")
    }

    pub async fn codec(&self) -> Codec {
        Codec::connect(&registry_settings(&self.topology), &schema_pairs(&self.topology))
            .await
            .expect("codec")
    }

    /// Produces documents `id-0..id-n` as Avro to the input topic; key = `key_of(i)`, or the id.
    pub async fn produce_docs(
        &self,
        range: std::ops::Range<usize>,
        partition: Option<i32>,
        key_of: impl Fn(usize) -> Option<String>,
    ) {
        let codec = self.codec().await;
        self.produce_docs_with(&codec, range, partition, key_of).await;
    }

    /// [`Harness::produce_docs`] with a codec obtained earlier (the registry may be down now).
    pub async fn produce_docs_with(
        &self,
        codec: &Codec,
        range: std::ops::Range<usize>,
        partition: Option<i32>,
        key_of: impl Fn(usize) -> Option<String>,
    ) {
        let producer = self.producer();
        let topic = self.input();
        for i in range {
            let doc = Document {
                id: format!("id-{i}"),
                tenant: "t".into(),
                content: format!("document {i}"),
                metadata: Default::default(),
            };
            let value = Envelope::new(doc).to_value(SchemaKind::Document).expect("document value");
            let bytes = codec.encode(&topic, &value).expect("encode");
            let key = key_of(i).unwrap_or_else(|| format!("id-{i}"));
            self.send_raw(&producer, &topic, Some(key.as_bytes()), &bytes, partition).await;
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
    }

    pub async fn send_raw(
        &self,
        producer: &FutureProducer,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        partition: Option<i32>,
    ) {
        let mut record = FutureRecord::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        producer
            .send(record, Timeout::After(Duration::from_secs(10)))
            .await
            .expect("produce input");
    }

    /// How many records `topic` holds, without decoding them.
    pub async fn count(&self, topic: &str) -> usize {
        self.count_many(&[topic]).await
    }

    /// How many records the `topics` hold together (one reader for all: much faster).
    pub async fn count_many(&self, topics: &[&str]) -> usize {
        let kafka = self.topology.kafka.clone();
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            let r = reader(&kafka, &topics, true).expect("reader");
            r.drain(None, true, Duration::from_secs(5), || false, |_| true).expect("drain")
        })
        .await
        .expect("reader thread")
    }

    /// Every record of `topic` so far, decoded: (partition, offset, key, decoded value or None).
    pub async fn read_all(
        &self,
        topic: &str,
    ) -> Vec<(i32, i64, Option<String>, Option<apache_avro::types::Value>)> {
        let codec = self.codec().await;
        let raw = each_record(&self.topology.kafka, topic, |m| {
            (
                m.partition(),
                m.offset(),
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                m.payload().map(<[u8]>::to_vec),
            )
        })
        .await;
        let mut decoded = Vec::new();
        for (p, o, k, payload) in raw {
            let value = codec.decode_any(payload.as_deref()).await.ok().map(|(_, v)| v);
            decoded.push((p, o, k, value));
        }
        decoded
    }

    /// Document ids of the records on `topic`, with how often each occurs.
    pub async fn ids_on(&self, topic: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (_, _, key, _) in self.read_all(topic).await {
            *counts.entry(key.unwrap_or_default()).or_insert(0) += 1;
        }
        counts
    }

    /// The group's committed offset for each partition of the input topic (-1: none).
    pub fn committed(&self, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.stack.kafka.bootstrap_servers())
            .set("group.id", self.group())
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&self.input(), p);
        }
        let committed =
            consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            })
            .collect()
    }
}

/// Stops a runner when a test ends, even by panic, so a failing test fails instead of hanging
/// on the runner's poll thread.
pub struct StopOnDrop(pub sluice::shutdown::Shutdown);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// What the test stage should do with a document, by id.
#[derive(Clone, Default)]
pub struct Script {
    /// Sleep this long before answering.
    pub delay: HashMap<String, Duration>,
    /// Wait for this gate to open before answering.
    pub gate: HashMap<String, Arc<tokio::sync::Semaphore>>,
    /// Fail with this error (every attempt).
    pub fail: HashMap<String, StageError>,
    /// Fail the first N calls for a document with this error, then succeed.
    pub fail_first: HashMap<String, (usize, StageError)>,
    /// Default delay for every document.
    pub default_delay: Duration,
}

/// A stage driven by a [`Script`]; records every call (document id, attempt) in order.
#[derive(Clone)]
pub struct TestStage {
    pub script: Arc<Script>,
    pub calls: Arc<Mutex<Vec<(String, u32, SystemTime)>>>,
}

impl TestStage {
    pub fn new(script: Script) -> Self {
        Self { script: Arc::new(script), calls: Arc::new(Mutex::new(Vec::new())) }
    }

    pub fn calls_for(&self, id: &str) -> usize {
        self.calls.lock().expect("calls").iter().filter(|(i, _, _)| i == id).count()
    }

    /// When each call for `id` happened, in order, with its attempt number.
    pub fn call_times(&self, id: &str) -> Vec<(u32, SystemTime)> {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|(i, _, _)| i == id)
            .map(|(_, a, t)| (*a, *t))
            .collect()
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().expect("calls").len()
    }
}

impl Stage for TestStage {
    async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let id = input.document.id.clone();
        let nth = {
            let mut calls = self.calls.lock().expect("calls");
            calls.push((id.clone(), cx.attempt, SystemTime::now()));
            calls.iter().filter(|(i, _, _)| *i == id).count()
        };
        if let Some(gate) = self.script.gate.get(&id) {
            let _permit = gate.acquire().await.expect("gate");
        }
        let delay = self.script.delay.get(&id).copied().unwrap_or(self.script.default_delay);
        tokio::time::sleep(delay).await;
        if let Some(e) = self.script.fail.get(&id) {
            return Err(e.clone());
        }
        if let Some((n, e)) = self.script.fail_first.get(&id) {
            if nth <= *n {
                return Err(e.clone());
            }
        }
        input.classification = Some(Classification {
            label: "a".into(),
            confidence: 1.0,
            model: "test".into(),
            prompt_version: None,
        });
        Ok(vec![Emit::main(input)])
    }
}

/// `f` of every record of `topic` so far, read on a blocking thread.
pub async fn each_record<T: Send + 'static>(
    kafka: &sluice::config::KafkaSettings,
    topic: &str,
    f: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> T + Send + 'static,
) -> Vec<T> {
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let r = reader(&kafka, &[topic.as_str()], true).expect("reader");
        let mut out = Vec::new();
        r.drain(
            None,
            true,
            Duration::from_secs(5),
            || false,
            |m| {
                out.push(f(m));
                true
            },
        )
        .expect("drain");
        out
    })
    .await
    .expect("reader thread")
}

/// The headers of every record on `topic`, as text.
#[allow(dead_code, reason = "used by some test crates only")]
pub async fn raw_headers(h: &Harness, topic: &str) -> Vec<HashMap<String, String>> {
    use rdkafka::message::Headers;
    each_record(&h.topology.kafka, topic, |m| {
        let mut map = HashMap::new();
        if let Some(hs) = m.headers() {
            for hd in hs.iter() {
                let v = hd.value.map(|v| String::from_utf8_lossy(v).into_owned());
                map.insert(hd.key.to_owned(), v.unwrap_or_default());
            }
        }
        map
    })
    .await
}
