//! The embedded stack (librdkafka's mock cluster and the dev schema registry over HTTP) with a
//! compiled topology pointed at it, and producing records to it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use apache_avro::types::Value;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use sluice::avro::{Codec, Envelope, SchemaKind};
use sluice::config::{compile, Topology};
use sluice::devstack::DevStack;
use sluice::kafka::registry_settings;
use sluice::pipeline::schema_pairs;

use super::oracle::Oracle;
use super::read::{committed, each_record, keys_on, Until};
use super::topology::document;

/// The mock model provider (OpenAI and Anthropic shapes, billing ledger) on a free loopback port.
pub async fn mock_provider(
    config: sluice::mock_provider::MockConfig,
) -> sluice::mock_provider::MockProvider {
    sluice::mock_provider::serve("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("mock provider")
}

pub struct Harness {
    pub stack: DevStack,
    pub topology: Topology,
}

impl Harness {
    pub async fn start(yaml: &str) -> Self {
        Self::start_on(yaml, None).await
    }

    /// [`Harness::start`] on the real broker at `external` when given (topics created through its
    /// admin API), else on the embedded one.
    pub async fn start_on(yaml: &str, external: Option<String>) -> Self {
        sluice::telemetry::init_logging(false);
        let mut topology = compile(Path::new("test.yaml"), yaml).expect("test topology compiles");
        let registry = "127.0.0.1:0".parse().expect("addr");
        let stack = DevStack::start_on(&mut topology, registry, external).await.expect("dev stack");
        Self { stack, topology }
    }

    /// The first input topic.
    pub fn input(&self) -> String {
        self.topology.inputs[0].name.clone()
    }

    /// The first stage's main output topic.
    pub fn output(&self) -> String {
        self.topology.stages[0].output.clone()
    }

    /// The first stage's dead-letter topic.
    pub fn dlq(&self) -> String {
        self.topology.stages[0].dead_letter_topic.clone()
    }

    /// The first stage's consumer group.
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

    /// Produces documents `id-<i>` for `i` in `range` as Avro to the input topic, in order, each
    /// acknowledged before the next; key = `key_of(i)`, or the id.
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
            let id = format!("id-{i}");
            let envelope = document(&id, "t", &format!("document {i}"));
            let bytes = self.encode(codec, &topic, &envelope);
            let key = key_of(i).unwrap_or(id);
            self.send_raw(&producer, &topic, Some(key.as_bytes()), &bytes, partition).await;
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
    }

    /// `envelope`'s document in the Confluent wire format for `topic`.
    pub fn encode(&self, codec: &Codec, topic: &str, envelope: &Envelope) -> Vec<u8> {
        let value = envelope.to_value(SchemaKind::Document).expect("document value");
        codec.encode(topic, &value).expect("encode")
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
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        keys_on(&self.topology.kafka, &topics, Until::End).await.len()
    }

    /// Every record of `topic` so far, decoded: (partition, offset, key, decoded value or None).
    pub async fn read_all(&self, topic: &str) -> Vec<(i32, i64, Option<String>, Option<Value>)> {
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

    /// Keys of the records on `topic` (document ids, as produced here), with how often each occurs.
    pub async fn ids_on(&self, topic: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for key in keys_on(&self.topology.kafka, &[topic.to_owned()], Until::End).await {
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }

    /// Where each of `inputs` ended on the first stage's output and dead-letter topics.
    pub async fn oracle(&self, inputs: impl IntoIterator<Item = String>) -> Oracle {
        let kafka = &self.topology.kafka;
        let outputs = keys_on(kafka, &[self.output()], Until::End).await;
        let dead_letters = keys_on(kafka, &[self.dlq()], Until::End).await;
        Oracle::new(inputs, outputs, dead_letters)
    }

    /// The first stage group's committed position on each input partition (see [`committed`]).
    pub fn committed(&self, partitions: i32) -> Vec<i64> {
        committed(self.stack.kafka.bootstrap_servers(), &self.group(), &self.input(), partitions)
    }
}
