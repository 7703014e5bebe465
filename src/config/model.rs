//! Phase two's result: the validated topology. Runtime code sees only these types; every field
//! has been checked and every default applied, so there are no "not validated yet" options.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::policy::{
    AbSplit, BudgetSpec, ModelChoice, ModelSpec, PiiSpec, PriceTable, PromptSpec, ProviderConfig,
    SecretSource, SemanticCacheSpec,
};

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
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Logical models by name; a stage's inline `{ provider, name }` is named `provider/name`.
    pub models: BTreeMap<String, ModelSpec>,
    /// Prompt templates by `name@version`.
    pub prompts: BTreeMap<String, PromptSpec>,
    pub pii: PiiSpec,
    /// What each model costs; every model a stage can reach has a price.
    pub prices: PriceTable,
    /// The response cache; `None` when disabled.
    pub cache: Option<CacheSpec>,
    /// Tenant budgets; `None` when spending is not limited.
    pub budgets: Option<BudgetSpec>,
    /// Topics written by applications outside sluice (documents arrive here).
    pub inputs: Vec<TopicSpec>,
    /// Stages in file order.
    pub stages: Vec<StageSpec>,
    /// Topic receiving one cost event per model call.
    pub metering_topic: String,
    /// Records in flight across all stages of one process.
    pub process_max_in_flight: usize,
    /// The compacted topic of the semantic cache's entries; `None` when no stage has one.
    pub semantic_cache_topic: Option<String>,
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

/// The closed set of stage kinds with their own settings.
#[derive(Debug, Clone)]
pub enum StageKindSpec {
    /// With `rules` (label → regular expressions), labels without a model call.
    Classify {
        labels: Vec<String>,
        rules: Vec<(String, Vec<String>)>,
        fallback_label: String,
        /// Prompt template for model classification; `None` uses the built-in one.
        prompt: Option<String>,
    },
    Embed {
        chunk_tokens: usize,
        chunk_overlap: usize,
        batch_size: usize,
        /// How long a micro-batch waits for more chunks before it is sent.
        linger: Duration,
        dimensions: usize,
    },
    Retrieve {
        store: StoreSpec,
        /// Indexed into the store when the stage starts and the store is empty.
        knowledge_base: Option<PathBuf>,
        top_k: usize,
        dimensions: usize,
    },
    Generate {
        prompt: String,
        ab: Option<AbSplit>,
        max_output_tokens: u32,
    },
    Review {
        blocked_terms: Vec<String>,
        judge: Option<JudgeSpec>,
        needs_human_output: String,
        rejected_output: String,
    },
}

/// A vector store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// In-process exact search, persisted to a directory.
    Embedded { path: PathBuf },
    /// Qdrant over its REST API.
    Qdrant { url: String, collection: String, api_key: Option<SecretSource> },
    /// PostgreSQL with pgvector: passages in `table` (created when missing).
    Pgvector { url: PgUrl, password: Option<SecretSource>, table: String },
}

/// A PostgreSQL connection string: inline only when it holds no password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgUrl {
    Inline(String),
    Secret(SecretSource),
}

/// An LLM judge scoring an answer's groundedness in its passages (0..1).
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSpec {
    pub model: String,
    /// Answers scoring below go to a human.
    pub threshold: f64,
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

    /// The topics of the needs-human and rejected ports, for a kind that has them. Every kind
    /// is named here (no wildcard), so a new kind has to say whether it writes to side ports.
    pub fn side_outputs(&self) -> Option<(&str, &str)> {
        match self {
            Self::Review { needs_human_output, rejected_output, .. } => {
                Some((needs_human_output, rejected_output))
            }
            Self::Classify { .. } | Self::Embed { .. } | Self::Retrieve { .. } => None,
            Self::Generate { .. } => None,
        }
    }

    /// The vector size of a kind that embeds text (its model must be an embedding model, which
    /// cannot be routed); `None` for kinds that do not.
    pub fn vector_dimensions(&self) -> Option<usize> {
        match self {
            Self::Embed { dimensions, .. } | Self::Retrieve { dimensions, .. } => Some(*dimensions),
            Self::Classify { .. } | Self::Generate { .. } | Self::Review { .. } => None,
        }
    }
}

/// Settings of the classic group protocol that KIP-848 groups (`group.protocol: consumer`) define
/// on the broker instead; librdkafka refuses a consumer that sets them.
pub const CLASSIC_ONLY_SETTINGS: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "group.protocol.type",
];

impl KafkaSettings {
    /// One broker's settings with nothing set beyond the address: librdkafka's defaults, topics
    /// of `partitions` partitions and one replica (tests, tools aimed at a single broker).
    pub fn single_broker(bootstrap_servers: impl Into<String>, partitions: i32) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: Default::default(),
            consumer: Default::default(),
            producer: Default::default(),
            partitions,
            replication_factor: 1,
        }
    }

    /// Whether the topology's consumers join KIP-848 groups (`kafka.consumer.group.protocol:
    /// consumer`, Apache Kafka 4.0 and later) rather than classic ones.
    pub fn uses_consumer_group_protocol(&self) -> bool {
        let protocol =
            self.consumer.get("group.protocol").or(self.properties.get("group.protocol"));
        protocol.is_some_and(|p| p == "consumer")
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
    /// Which model serves each record; `None` for stages that call none (rule-based classify,
    /// review without a judge).
    pub model: Option<ModelChoice>,
    /// Redact PII from the document before any model call.
    pub redact_input: bool,
    /// Longest one attempt at a record may take, every model call and fallback included.
    pub deadline: Duration,
    /// A document older than this (since it was written to the input topic) is not worth a
    /// model call any more: it is dead-lettered as expired. `None`: documents never expire.
    pub document_deadline: Option<Duration>,
    pub concurrency: Concurrency,
    pub retry: RetryPolicy,
    pub dead_letter_topic: String,
    /// How long shutdown and partition revocation wait for in-flight records.
    pub shutdown_grace: Duration,
    /// Where records of over-budget tenants wait for the next budget window.
    pub deferred_topic: String,
    /// At least once (the default) or exactly once (Kafka transactions).
    pub delivery: Delivery,
    /// The stage's semantic cache; `None` when it has none.
    pub semantic_cache: Option<SemanticCacheSpec>,
}

/// How a stage's writes and its input offsets reach Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Outputs are acknowledged, then the input offset is stored and committed in the
    /// background: a crash or rebalance reprocesses what was not committed yet.
    #[default]
    AtLeastOnce,
    /// Outputs, retry-rung records, dead letters, deferred records and the input offsets (with
    /// the completed-offset map) are committed in one Kafka transaction; readers that read
    /// committed see each record's results once.
    ExactlyOnce(Transactions),
}

/// When an exactly-once stage commits its open transaction: every `interval`, or as soon as
/// `max_records` input records are in it, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transactions {
    pub interval: Duration,
    pub max_records: usize,
}

impl Delivery {
    pub fn transactions(&self) -> Option<Transactions> {
        match self {
            Delivery::AtLeastOnce => None,
            Delivery::ExactlyOnce(t) => Some(*t),
        }
    }
}

impl StageSpec {
    /// Every topic this stage writes records to on success.
    pub fn output_topics(&self) -> Vec<&str> {
        let mut out = vec![self.output.as_str()];
        if let Some((needs_human, rejected)) = self.kind.side_outputs() {
            out.extend([needs_human, rejected]);
        }
        out
    }

    /// A review stage's review-queue topics: (needs-human, approved, rejected); `None` for
    /// other kinds.
    pub fn review_queue(&self) -> Option<(&str, &str, &str)> {
        let (needs_human, rejected) = self.kind.side_outputs()?;
        Some((needs_human, &self.output, rejected))
    }

    /// Where the review queue of a review stage keeps its claims and decisions:
    /// `<needs-human topic>.claims`.
    pub fn review_claims_topic(&self) -> Option<String> {
        self.review_queue().map(|(needs_human, ..)| format!("{needs_human}.claims"))
    }

    /// The consumer group whose committed offsets on the needs-human topic mark what the review
    /// queue has decided: `<stage group>.console`.
    pub fn review_queue_group(&self) -> Option<String> {
        self.review_queue().map(|_| format!("{}.console", self.group))
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
    /// Commit metadata carries the offsets completed beyond the committed position, and a
    /// member that takes the partition over skips them: after a rebalance or a crash only what
    /// was truly in flight is processed again (default on).
    pub commit_completed: bool,
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
    /// A provider's Retry-After longer than this sends the record to the retry topic (with that
    /// due time) instead of holding an in-flight slot while it waits.
    pub max_inline_wait: Duration,
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

/// The exact response cache: keyed by template version, model, parameters and a hash of the
/// input; replays after an incident are served from it instead of paying twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSpec {
    /// A directory on local disk.
    Embedded { path: PathBuf },
    /// Redis (`redis://host:port[/db]`), shared by replicas; entries expire after `ttl`.
    Redis { url: String, ttl: Duration },
}
