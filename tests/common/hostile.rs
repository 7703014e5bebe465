//! Hostile records for runner tests: bytes that are not a Confluent-framed Avro document
//! (random, truncated, wrong magic byte, unknown or wrong schema id, over the producer's usual
//! size limit, tombstones) and valid documents under forged retry headers; any of them, and
//! valid records too, with keys and headers that are not UTF-8. Produced in bulk, each record's
//! key and bytes remembered so a test can compare its dead letter with what was sent.

use std::time::Duration;

use futures::future::join_all;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use sluice::avro::Codec;

use super::raw_headers::headers_of;
use super::Harness;

/// A value over librdkafka's and Kafka's default `message.max.bytes` (1,000,000).
pub const OVERSIZE: usize = 1_200_000;

/// A small deterministic generator (xorshift64*): the same records on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// What is wrong with a hostile record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    RandomBytes,
    TruncatedAvro,
    WrongMagic,
    UnknownSchemaId,
    /// A registered id of another schema (the output's) framing a document body.
    WrongSchemaId,
    /// A truncated document of [`OVERSIZE`] bytes (compressible: librdkafka's mock cluster
    /// keeps only 5 MB per partition).
    Oversize,
    Tombstone,
    /// A valid document under retry headers (on the input, where they mean nothing).
    ForgedRetryHeaders,
}

impl Kind {
    /// Whether the record cannot be processed (every kind but a document under forged headers).
    pub fn undecodable(self) -> bool {
        self != Kind::ForgedRetryHeaders
    }

    pub const ALL: [Kind; 8] = [
        Kind::RandomBytes,
        Kind::TruncatedAvro,
        Kind::WrongMagic,
        Kind::UnknownSchemaId,
        Kind::WrongSchemaId,
        Kind::Oversize,
        Kind::Tombstone,
        Kind::ForgedRetryHeaders,
    ];
}

/// Retry headers a producer can forge; each would be refused by `RetryState::parse` on a rung.
const FORGED: [&[(&str, &[u8])]; 6] = [
    &[("sluice-retry-rung", b"18446744073709551616")],
    &[("sluice-retry-rung", b"1")],
    &[("sluice-retry-rung", b"\xff\xfe")],
    &[("sluice-retry-rung", b"0"), ("sluice-retry-due-ms", b"9223372036854775807")],
    &[("sluice-retry-rung", b"0"), ("sluice-retry-attempts", b"4294967295")],
    &[("sluice-retry-rung", b"0"), ("sluice-retry-history", b"[[1,\xff")],
];

/// One record to send: its key (unique; not always UTF-8), value, headers and partition.
#[derive(Debug, Clone)]
pub struct Sent {
    pub key: Vec<u8>,
    /// The key as the oracle reads keys (lossy UTF-8); unique, as the keys' UTF-8 prefixes are.
    pub id: String,
    pub value: Option<Vec<u8>>,
    /// `None` for a valid record.
    pub kind: Option<Kind>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub partition: i32,
}

/// Builds records for one input topic: valid documents encoded with `codec`, and hostile ones.
pub struct Builder<'c> {
    pub rng: Rng,
    codec: &'c Codec,
    topic: String,
    /// The schema id of the stage's output (a registered id that is not a document's).
    other_id: [u8; 4],
}

impl<'c> Builder<'c> {
    pub fn new(h: &Harness, codec: &'c Codec, seed: u64) -> Self {
        let doc_id = h.encode(codec, &h.input(), &super::document("x", "t", "x"));
        let classified = {
            let mut envelope = super::document("x", "t", "x");
            envelope.classification = Some(sluice::avro::Classification {
                label: "a".into(),
                confidence: 1.0,
                model: "m".into(),
                prompt_version: None,
            });
            let v = envelope.to_value(sluice::avro::SchemaKind::Classified).expect("value");
            codec.encode(&h.output(), &v).expect("encode an output")
        };
        assert_ne!(doc_id[1..5], classified[1..5], "two schemas, two ids");
        let other_id = classified[1..5].try_into().expect("4 bytes");
        Self { rng: Rng::new(seed), codec, topic: h.input(), other_id }
    }

    fn document(&mut self, id: &str) -> Vec<u8> {
        let len = self.rng.below(200);
        let content: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let value = super::document(id, "t", &content)
            .to_value(sluice::avro::SchemaKind::Document)
            .expect("document value");
        self.codec.encode(&self.topic, &value).expect("encode")
    }

    /// A key unique to `n`, with bytes that are not UTF-8 about one time in four.
    fn key(&mut self, prefix: &str, n: usize) -> Vec<u8> {
        let mut key = format!("{prefix}-{n}").into_bytes();
        if self.rng.below(4) == 0 {
            key.extend_from_slice(b"\xff\xc3\x28");
        }
        key
    }

    /// Headers that are not UTF-8 (key, value, or both) about one time in four.
    fn odd_headers(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        match self.rng.below(8) {
            0 => vec![(b"k\xff\xfe".to_vec(), Some(b"v".to_vec()))],
            1 => vec![(b"x-bin".to_vec(), Some(b"\xff\x00\xc3\x28".to_vec()))],
            _ => Vec::new(),
        }
    }

    /// The `n`-th valid record.
    pub fn valid(&mut self, n: usize, partition: i32) -> Sent {
        let key = self.key("valid", n);
        let id = String::from_utf8_lossy(&key).into_owned();
        let value = Some(self.document(&id));
        Sent { key, id, value, kind: None, headers: self.odd_headers(), partition }
    }

    /// The `n`-th hostile record, of `kind`.
    pub fn hostile(&mut self, n: usize, kind: Kind, partition: i32) -> Sent {
        let key = self.key("hostile", n);
        let mut headers = self.odd_headers();
        let doc = self.document(&format!("hostile-{n}"));
        let value = match kind {
            Kind::RandomBytes => {
                // A first byte of 0 could frame a known schema id and decode: never send that.
                let len = 1 + self.rng.below(64);
                let mut b = self.rng.bytes(len);
                b[0] = b[0].max(1);
                Some(b)
            }
            Kind::TruncatedAvro => Some(doc[..self.rng.below(doc.len())].to_vec()),
            Kind::WrongMagic => {
                let mut b = doc;
                b[0] = 1 + self.rng.below(255) as u8;
                Some(b)
            }
            Kind::UnknownSchemaId => {
                let mut b = doc;
                let id = 1_000_000 + self.rng.below(64) as u32;
                b[1..5].copy_from_slice(&id.to_be_bytes());
                Some(b)
            }
            Kind::WrongSchemaId => {
                let mut b = doc;
                b[1..5].copy_from_slice(&self.other_id);
                Some(b)
            }
            Kind::Oversize => {
                let big = self.document_of(OVERSIZE + 16);
                Some(big[..OVERSIZE].to_vec())
            }
            Kind::Tombstone => None,
            Kind::ForgedRetryHeaders => {
                // One in seven: a plausible rung-0 record parked for 30 days.
                let far = (sluice::call::now_ms() + 30 * 86_400_000).to_string();
                let parked: &[(&str, &[u8])] =
                    &[("sluice-retry-rung", b"0"), ("sluice-retry-due-ms", far.as_bytes())];
                let pick = self.rng.below(FORGED.len() + 1);
                let forged = FORGED.get(pick).copied().unwrap_or(parked);
                headers
                    .extend(forged.iter().map(|(k, v)| (k.as_bytes().to_vec(), Some(v.to_vec()))));
                Some(doc)
            }
        };
        let id = String::from_utf8_lossy(&key).into_owned();
        Sent { key, id, value, kind: Some(kind), headers, partition }
    }

    fn document_of(&mut self, len: usize) -> Vec<u8> {
        let value = super::document("big", "t", &"x".repeat(len))
            .to_value(sluice::avro::SchemaKind::Document)
            .expect("document value");
        self.codec.encode(&self.topic, &value).expect("encode")
    }
}

/// A producer that accepts values up to 4 MB and queues a million records.
pub fn bulk_producer(h: &Harness) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", h.stack.kafka.bootstrap_servers())
        .set("message.max.bytes", "4000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "2000000")
        .set("batch.num.messages", "10000")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()
        .expect("bulk producer")
}

/// The first offset each partition `0..partitions` of `topic` still holds. librdkafka's mock
/// cluster keeps at most 5 MB per partition and silently drops the oldest batches beyond it, so
/// a test that reads a topic back must check these are all 0.
pub fn low_watermarks(h: &Harness, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", h.stack.kafka.bootstrap_servers())
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            use rdkafka::consumer::Consumer;
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").0
        })
        .collect()
}

/// Sends `records` to `topic` in order, awaiting their acknowledgements in bulk.
pub async fn send_all(producer: &FutureProducer, topic: &str, records: &[Sent]) {
    for chunk in records.chunks(20_000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for r in chunk {
            let mut record = FutureRecord::to(topic)
                .key(&r.key)
                .partition(r.partition)
                .headers(headers_of(&r.headers));
            if let Some(v) = &r.value {
                record = record.payload(v);
            }
            acks.push(producer.send_result(record).map_err(|(e, _)| e).expect("queued"));
        }
        for ack in join_all(acks).await {
            ack.expect("delivery report").map_err(|(e, _)| e).expect("acknowledged");
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}
