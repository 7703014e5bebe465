//! What both benchmarks share: producing documents fast, and watching an output topic fill.

use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use sluice::avro::{Codec, Document, Envelope, SchemaKind};
use sluice::config::Topology;

/// Produces documents `r{i}` for `range` with `content(i)`, keyed by id, 4,096 in flight.
pub async fn produce(
    t: &Topology,
    codec: &Codec,
    topic: &str,
    range: std::ops::Range<usize>,
    content: impl Fn(usize) -> String,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &t.kafka.bootstrap_servers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let records: Vec<(String, Vec<u8>)> = range
        .map(|i| {
            let doc = Document {
                id: format!("r{i}"),
                tenant: "t".into(),
                content: content(i),
                metadata: Default::default(),
            };
            let value = Envelope::new(doc).to_value(SchemaKind::Document).expect("value");
            (format!("r{i}"), codec.encode(topic, &value).expect("encode"))
        })
        .collect();
    let sends = records
        .iter()
        .map(|(k, v)| producer.send(FutureRecord::to(topic).key(k).payload(v), Timeout::Never));
    let mut stream = futures::stream::iter(sends).buffer_unordered(4096);
    while let Some(r) = stream.next().await {
        r.expect("produce");
    }
}

/// Records on `topic` (sum of high watermarks over `partitions`).
pub fn output_count(t: &Topology, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &t.kafka.bootstrap_servers)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).map_or(0, |(_, h)| h))
        .sum()
}

/// Waits (up to ten minutes) until `topic` holds `n` records.
pub async fn wait_for(t: &Topology, topic: &str, partitions: i32, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while output_count(t, topic, partitions) < n {
        assert!(Instant::now() < deadline, "timed out waiting for {n} outputs on {topic}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
