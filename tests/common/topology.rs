//! Unique names per test, record builders, the one-stage topology of the runner tests, and the
//! priced classify stage of the replay tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice::avro::{Document, Envelope};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process and call: topic prefixes and consumer groups never collide
/// between tests sharing a broker.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The ids `id-<i>` of `range`, as [`super::Harness::produce_docs`] names its documents.
pub fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("id-{i}")).collect()
}

/// A document envelope with no stage sections yet.
pub fn document(id: &str, tenant: &str, content: &str) -> Envelope {
    Envelope::new(Document {
        id: id.into(),
        tenant: tenant.into(),
        content: content.into(),
        metadata: BTreeMap::new(),
    })
}

/// A one-stage topology: `<p>.docs` → stage `work` (a classify stage) → `<p>.out`, with dead
/// letters on `<p>.work.dlq`; `<p>` is unique per call.
#[derive(Debug, Clone)]
pub struct OneStage {
    partitions: i32,
    concurrency: String,
    producer: String,
    retry: String,
    shutdown_grace: String,
    commit_interval_ms: u32,
}

impl OneStage {
    /// `concurrency` is the stage's `concurrency:` value, e.g. `{ max_in_flight: 8, per_partition: 8 }`.
    pub fn new(partitions: i32, concurrency: &str) -> Self {
        Self {
            partitions,
            concurrency: concurrency.to_owned(),
            producer: String::new(),
            retry: "{ attempts: 3, initial_backoff: 10ms, max_backoff: 50ms }".to_owned(),
            shutdown_grace: "10s".to_owned(),
            commit_interval_ms: 200,
        }
    }

    /// An extra producer property line, e.g. `message.timeout.ms: "1000"`.
    pub fn producer(mut self, property: &str) -> Self {
        self.producer = property.to_owned();
        self
    }

    /// The stage's `retry:` value.
    pub fn retry(mut self, retry: &str) -> Self {
        self.retry = retry.to_owned();
        self
    }

    /// The stage's `shutdown_grace:` value.
    pub fn shutdown_grace(mut self, grace: &str) -> Self {
        self.shutdown_grace = grace.to_owned();
        self
    }

    /// The consumer's background commit interval (`auto.commit.interval.ms`); 200 ms by default.
    pub fn commit_interval_ms(mut self, ms: u32) -> Self {
        self.commit_interval_ms = ms;
        self
    }

    pub fn yaml(&self) -> String {
        let p = unique("t");
        let Self { partitions, concurrency, producer, retry, shutdown_grace, commit_interval_ms } =
            self;
        format!(
            r#"
pipeline: {p}
kafka:
  partitions: {partitions}
  consumer:
    auto.commit.interval.ms: "{commit_interval_ms}"
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
    partition.assignment.strategy: cooperative-sticky
  producer:
    linger.ms: "1"
    {producer}
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
    shutdown_grace: {shutdown_grace}
"#
        )
    }
}

/// One classify stage `work` on a priced model (so calls cost something) — simulated, or the
/// mock provider at `provider_url` (whose ledger says what was paid) — a one-rung retry ladder,
/// and optionally a response cache in `cache_dir`.
pub fn priced_classify(
    p: &str,
    partitions: i32,
    cache_dir: Option<&std::path::Path>,
    provider_url: Option<&str>,
) -> String {
    let cache = cache_dir.map_or(String::new(), |d| format!("cache: {{ path: {} }}", d.display()));
    let provider = provider_url.map_or("{ kind: simulated, latency: 1ms }".to_owned(), |url| {
        format!("{{ kind: openai, base_url: {url}, timeout: 5s }}")
    });
    format!(
        r#"
pipeline: {p}
kafka:
  partitions: {partitions}
  consumer:
    auto.commit.interval.ms: "200"
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
providers:
  sim: {provider}
prices:
  set_on: 2026-11-01
  models:
    sim/m: {{ input: 0.15, output: 0.6 }}
{cache}
inputs:
  {p}.docs: {{ partitions: {partitions} }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, technical, other] }}
    concurrency: {{ max_in_flight: 32, per_partition: 8 }}
    retry: {{ attempts: 3, initial_backoff: 5ms, max_backoff: 20ms, ladder: [1m] }}
    shutdown_grace: 5s
"#
    )
}
