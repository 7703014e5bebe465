//! Phase two's result: the validated topology. Runtime code sees only these types; every field
//! has been checked and every default applied, so there are no "not validated yet" options.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A compiled topology file.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The file it was compiled from.
    pub file: PathBuf,
    /// Pipeline name; prefixes default group and topic names.
    pub pipeline: String,
    pub kafka: KafkaSettings,
    pub schema_registry: RegistrySettings,
    /// Model providers by name.
    pub providers: BTreeMap<String, ProviderSpec>,
    /// Topics written by applications outside sluice (documents arrive here).
    pub inputs: Vec<TopicSpec>,
    /// Stages in file order.
    pub stages: Vec<StageSpec>,
    /// Topic receiving one cost event per model call.
    pub metering_topic: String,
    /// Records in flight across all stages of one process.
    pub process_max_in_flight: usize,
}

/// Kafka connection; librdkafka properties pass through untouched.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// Properties for every client (security, client.id, ...).
    pub properties: BTreeMap<String, String>,
    /// Extra properties for consumers only.
    pub consumer: BTreeMap<String, String>,
    /// Extra properties for producers only.
    pub producer: BTreeMap<String, String>,
    /// Partitions for topics sluice creates, unless a topic says otherwise.
    pub partitions: i32,
    pub replication_factor: i32,
}

#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
}

/// The closed set of model providers.
#[derive(Debug, Clone)]
pub enum ProviderSpec {
    Simulated(SimulatedSpec),
}

/// A deterministic offline provider: answers derive from a hash of the request.
#[derive(Debug, Clone)]
pub struct SimulatedSpec {
    /// Base latency of every call.
    pub latency: Duration,
    /// Up to this much extra latency, chosen deterministically per request.
    pub jitter: Duration,
    /// Fraction of calls failing with a retryable server error (per request and attempt).
    pub failure_rate: f64,
    /// Fraction of calls answered 429 with `retry_after`.
    pub rate_limit_rate: f64,
    pub retry_after: Duration,
    /// Dimension of the embedding vectors it returns.
    pub embedding_dim: usize,
}

/// A model on a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub provider: String,
    pub model: String,
}

/// The closed set of stage kinds with their own settings.
#[derive(Debug, Clone)]
pub enum StageKindSpec {
    Classify { labels: Vec<String> },
    Embed { chunk_words: usize, chunk_overlap: usize, batch_size: usize, dimensions: usize },
    Retrieve { knowledge_base: PathBuf, top_k: usize },
    Generate { prompt_version: String, max_output_tokens: u32 },
    Review { blocked_terms: Vec<String>, needs_human_output: String, rejected_output: String },
}

impl StageKindSpec {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Classify { .. } => "classify",
            Self::Embed { .. } => "embed",
            Self::Retrieve { .. } => "retrieve",
            Self::Generate { .. } => "generate",
            Self::Review { .. } => "review",
        }
    }
}

/// One stage: its own consumer group reading one topic.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    pub kind: StageKindSpec,
    pub input: String,
    /// Main output topic (for review: approved answers).
    pub output: String,
    pub group: String,
    pub model: ModelRef,
    pub concurrency: Concurrency,
    pub retry: RetryPolicy,
    pub dead_letter_topic: String,
    /// How long shutdown and partition revocation wait for in-flight records.
    pub shutdown_grace: Duration,
}

impl StageSpec {
    /// Every topic this stage writes records to on success.
    pub fn output_topics(&self) -> Vec<&str> {
        let mut out = vec![self.output.as_str()];
        if let StageKindSpec::Review { needs_human_output, rejected_output, .. } = &self.kind {
            out.push(needs_human_output);
            out.push(rejected_output);
        }
        out
    }
}

/// Limits on records in flight. A partition's window (received, offset not yet stored) holds at
/// most `per_partition + buffer_per_partition` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    /// Across all partitions of the stage in one process.
    pub max_in_flight: usize,
    /// Records being processed at once per partition.
    pub per_partition: usize,
    /// Records a partition may hold, admitted and waiting, beyond `per_partition`; when that
    /// fills the partition is not read until a record finishes (polling never stops).
    pub buffer_per_partition: usize,
    /// Records with the same key are processed in order, one at a time.
    pub key_ordering: bool,
}

/// What happens to a record whose processing fails with a retryable error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in process (the first call included) before the record leaves for a retry topic.
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Delays of the retry-topic ladder; empty means straight to the dead-letter topic.
    pub ladder: Vec<Duration>,
    /// Retry topic for rung `i` is `{topic_prefix}.{i+1}`.
    pub topic_prefix: String,
}

impl RetryPolicy {
    pub fn retry_topics(&self) -> Vec<(String, Duration)> {
        self.ladder
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("{}.{}", self.topic_prefix, i + 1), *d))
            .collect()
    }
}
