//! Every default of the topology format, in one place.

use std::time::Duration;

pub const PARTITIONS: i32 = 6;
pub const REPLICATION_FACTOR: i32 = 1;
pub const BOOTSTRAP_SERVERS: &str = "localhost:9092";
pub const SCHEMA_REGISTRY_URL: &str = "http://localhost:8081";
pub const PROCESS_MAX_IN_FLIGHT: usize = 4096;

pub const MAX_IN_FLIGHT: usize = 256;
pub const PER_PARTITION: usize = 64;
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Classic consumer groups (where KIP-848 is not used): a crashed worker's partitions wait one
/// session timeout, so 10 s rather than librdkafka's 45 s; three heartbeats and more per session,
/// so one late heartbeat does not evict a healthy worker; cooperative rebalancing, so a scale
/// event moves only the partitions that change owner. See docs/TOPOLOGY.md, "Consumer groups".
pub const CLASSIC_SESSION_TIMEOUT_MS: u64 = 10_000;
pub const CLASSIC_HEARTBEAT_INTERVAL_MS: u64 = 1_000;
pub const CLASSIC_ASSIGNMENT_STRATEGY: &str = "cooperative-sticky";

pub const RETRY_ATTEMPTS: u32 = 3;
pub const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(5);

pub const SIM_LATENCY: Duration = Duration::from_millis(10);
pub const SIM_RETRY_AFTER: Duration = Duration::from_millis(500);
pub const SIM_EMBEDDING_DIM: usize = 64;

pub const CHUNK_OVERLAP: usize = 20;
pub const EMBED_BATCH_SIZE: usize = 16;
pub const TOP_K: usize = 3;
pub const MAX_OUTPUT_TOKENS: u32 = 512;

/// Records a partition may hold beyond its in-flight limit before it is paused: enough to hide a
/// fetch round trip after a resume.
pub fn buffer_per_partition(per_partition: usize) -> usize {
    (per_partition * 4).max(64)
}

pub fn group(pipeline: &str, stage: &str) -> String {
    format!("sluice.{pipeline}.{stage}")
}

pub fn dead_letter_topic(pipeline: &str, stage: &str) -> String {
    format!("{pipeline}.{stage}.dlq")
}

pub fn retry_topic_prefix(pipeline: &str, stage: &str) -> String {
    format!("{pipeline}.{stage}.retry")
}

pub fn metering_topic(pipeline: &str) -> String {
    format!("{pipeline}.metering")
}

pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
pub const BREAKER_CONSECUTIVE: usize = 5;
pub const BREAKER_ERROR_RATE: f64 = 0.5;
pub const BREAKER_WINDOW: usize = 20;
pub const BREAKER_COOL_DOWN: Duration = Duration::from_secs(30);
pub const CONTEXT_WINDOW: usize = 8192;

pub const STAGE_DEADLINE: Duration = Duration::from_secs(120);
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);
pub const CHUNK_TOKENS: usize = 256;
pub const EMBED_LINGER: Duration = Duration::from_millis(5);
pub const JUDGE_THRESHOLD: f64 = 0.5;
pub const CLASSIFY_FALLBACK_LABEL: &str = "other";
/// How long Redis keeps a cached answer: long enough to replay a week-old incident.
pub const CACHE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn budget_ledger_topic(pipeline: &str) -> String {
    format!("{pipeline}.budgets")
}

/// The similarity at which a semantic cache entry answers: the lowest that answered no near miss
/// of the labelled set with all-MiniLM-L6-v2 and the literal guard (0.93), plus a margin of 0.01
/// over the closest near miss the guard cannot see (docs/BENCHMARKS.md, "Semantic cache").
pub const SEMANTIC_CACHE_THRESHOLD: f32 = 0.94;

/// How long a semantic cache entry answers: a week, as answers age faster than a replay window.
pub const SEMANTIC_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn semantic_cache_topic(pipeline: &str) -> String {
    format!("{pipeline}.semantic-cache")
}

pub fn deferred_topic(pipeline: &str, stage: &str) -> String {
    format!("{pipeline}.{stage}.deferred")
}

/// Exactly-once delivery (docs/TOPOLOGY.md, "Delivery: exactly once"): a stage commits its open
/// transaction every `transaction_interval` or once `transaction_max_records` input records are
/// in it. 100 ms keeps the results' latency low (readers that read committed see a record only
/// once its transaction commits) at ten commits a second per worker.
pub const TRANSACTION_INTERVAL: Duration = Duration::from_millis(100);
pub const TRANSACTION_MAX_RECORDS: usize = 1000;
/// The producers' `transaction.timeout.ms` in exactly-once stages: a crashed worker's open
/// transaction holds back read-committed readers of its output partitions until the broker
/// aborts it after this long (unless a worker with the same instance id restarts first), so
/// 10 s like the classic session rather than librdkafka's 60 s.
pub const TRANSACTION_TIMEOUT_MS: u64 = 10_000;
