//! The validated policy plane: providers with their limits and breakers, logical models with
//! fallback chains, routing rules, versioned prompt templates and PII patterns.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A provider as declared under `providers:`: what it is, plus the policy around its calls.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub spec: ProviderSpec,
    /// Timeout of one HTTP call (connect to last byte).
    pub timeout: Duration,
    /// Rate limits by model name; `*` applies to each model without its own entry.
    pub limits: BTreeMap<String, RateLimit>,
    pub breaker: BreakerSpec,
}

/// The closed set of model providers.
#[derive(Debug, Clone)]
pub enum ProviderSpec {
    Simulated(SimulatedSpec),
    /// OpenAI-compatible chat completions and embeddings (OpenAI, Azure OpenAI, vLLM, Ollama,
    /// llama.cpp server, TGI/TEI, LiteLLM).
    OpenAi(HttpSpec),
    /// Anthropic's Messages API.
    Anthropic(HttpSpec),
}

impl ProviderSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Simulated(_) => "simulated",
            Self::OpenAi(_) => "openai",
            Self::Anthropic(_) => "anthropic",
        }
    }
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

/// An HTTP provider's endpoint.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// e.g. `https://api.openai.com/v1`, `http://localhost:11434/v1`, `https://api.anthropic.com`.
    pub base_url: String,
    /// Where the API key comes from; `None` for local servers that need none.
    pub api_key: Option<SecretSource>,
    /// Extra headers on every request (never secrets: those come from `api_key`).
    pub headers: BTreeMap<String, String>,
    /// Azure OpenAI: the `api-version` query parameter. Models are then deployment names and the
    /// key travels in the `api-key` header.
    pub azure_api_version: Option<String>,
    /// Anthropic: the `anthropic-version` header.
    pub anthropic_version: String,
    /// The topology's model names → this endpoint's, so a topology moves between endpoints by
    /// changing only its provider block. Names not listed are sent as they are.
    pub model_names: BTreeMap<String, String>,
    /// OpenAI `text-embedding-3-*`: ask for vectors of this size (the `dimensions` parameter).
    pub embedding_dimensions: Option<usize>,
}

/// Where a secret is read from when the worker starts. Secrets are never written inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// Requests and tokens a process may spend on one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second (a per-minute limit is converted).
    pub requests_per_second: Option<f64>,
    /// Requests allowed at once above the steady rate.
    pub burst: u32,
    pub tokens_per_minute: Option<u64>,
}

/// When a provider endpoint's breaker opens and how it probes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSpec {
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// Opens when at least this fraction of the last `window` calls failed.
    pub error_rate: f64,
    pub window: u32,
    /// Open this long before one probe call is let through (half-open).
    pub cool_down: Duration,
}

/// A logical model: a model on a provider and where to go when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub provider: String,
    /// The provider's model (or Azure deployment) name.
    pub name: String,
    /// Logical models tried in order on a retryable failure or an open breaker.
    pub fallbacks: Vec<String>,
    /// Tokens the model reads and writes in one call.
    pub context_window: usize,
}

/// Which logical model serves a stage's record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelChoice {
    /// Used when no route matches.
    pub default: String,
    /// First match wins.
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub when: Condition,
    pub model: String,
}

/// All given parts must hold; an empty list or map places no condition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Condition {
    pub labels: Vec<String>,
    pub tenants: Vec<String>,
    pub min_tokens: Option<usize>,
    pub max_tokens: Option<usize>,
    /// Metadata field → accepted values (`priority: [high]` is `metadata.priority`).
    pub metadata: BTreeMap<String, Vec<String>>,
}

/// A versioned prompt template (`answer@3`). Placeholders: `{{document}}`, `{{label}}`,
/// `{{tenant}}`, `{{passages}}`, `{{labels}}` (classify: the label set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSpec {
    pub system: String,
    pub user: String,
}

pub const PROMPT_PLACEHOLDERS: [&str; 5] = ["document", "label", "tenant", "passages", "labels"];

/// An A/B split: `weight` of documents (by a hash of their id) use `prompt` instead.
#[derive(Debug, Clone, PartialEq)]
pub struct AbSplit {
    pub prompt: String,
    pub weight: f64,
}

/// PII redaction settings shared by all stages.
#[derive(Debug, Clone, Default)]
pub struct PiiSpec {
    /// Extra patterns by name (the name becomes the redaction marker, `[NAME]`).
    pub patterns: BTreeMap<String, String>,
    /// Redact what goes to dead-letter and metering topics.
    pub redact_side_outputs: bool,
}

/// What one model costs, in exact integers: micro-dollars per million tokens, and per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    /// Input tokens served from the provider's prompt cache.
    pub cached_input: u64,
    /// Micro-dollars per request, on top of tokens.
    pub per_request: u64,
}

impl Price {
    /// Micro-dollars for a call, rounded up to a whole micro-dollar.
    pub fn cost(&self, input_tokens: u64, cached_tokens: u64, output_tokens: u64) -> u64 {
        let cached = cached_tokens.min(input_tokens);
        let per_million = u128::from(input_tokens - cached) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input)
            + u128::from(output_tokens) * u128::from(self.output);
        let tokens = per_million.div_ceil(1_000_000);
        u64::try_from(tokens).unwrap_or(u64::MAX).saturating_add(self.per_request)
    }
}

/// The topology's price table (`prices:`), by logical model name.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// When the prices were last set (as written, e.g. `2026-11-01`).
    pub set_on: String,
    pub models: BTreeMap<String, Price>,
}

/// Spending limits per tenant, shared by every replica through the budget ledger topic.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpec {
    /// Single-partition topic of budget claims (decided in log order).
    pub ledger_topic: String,
    /// By tenant; `*` applies to every tenant without its own entry.
    pub tenants: BTreeMap<String, BudgetRule>,
    /// Micro-dollars a replica claims at a time (default: 1/20 of the limit).
    pub lease_micro_usd: Option<u64>,
    /// When a tenant is over budget: try this (cheaper) logical model first, then defer.
    pub route_to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetRule {
    pub limit_micro_usd: u64,
    pub window: BudgetWindow,
    /// One budget per stage instead of one for the whole pipeline.
    pub per_stage: bool,
}

/// The period a budget renews over, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetWindow {
    Day,
    Month,
    /// Fixed periods since the Unix epoch (short ones are for development and tests).
    Every(std::time::Duration),
}

/// A stage's semantic cache: an earlier answer reused for a record whose variable text means
/// the same (see `policy::semantic`).
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticCacheSpec {
    /// The cosine similarity at or above which an earlier answer is reused.
    pub threshold: f32,
    /// The logical model that embeds the variable text.
    pub embedding: String,
    pub scope: SemanticScope,
    /// How long an entry answers after it was stored.
    pub ttl: Duration,
    /// The parts of the record that are embedded and compared, in this order.
    pub text: Vec<TextPart>,
    /// Records that never get (nor leave) a semantic answer.
    pub exclude: Exclusion,
}

/// Who shares answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemanticScope {
    /// Only records of the same tenant (the default).
    Tenant,
    /// Every tenant of the stage.
    Global,
}

/// A part of the record that makes up the variable text: never the prompt's fixed
/// instructions, which would make every prompt look alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPart {
    /// The document's content.
    Document,
    /// The retrieved passages' texts.
    Passages,
    /// The label an earlier classify stage gave.
    Label,
}

impl TextPart {
    pub const NAMES: &'static str = "document, passages, label";
}

/// Records excluded from the semantic cache: any one listed label or metadata value excludes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exclusion {
    pub labels: Vec<String>,
    /// Metadata field → values that exclude.
    pub metadata: BTreeMap<String, Vec<String>>,
}

impl Exclusion {
    /// Whether a record with this label and metadata is excluded.
    pub fn excludes(&self, label: Option<&str>, metadata: &BTreeMap<String, String>) -> bool {
        label.is_some_and(|l| self.labels.iter().any(|x| x == l))
            || self
                .metadata
                .iter()
                .any(|(k, values)| metadata.get(k).is_some_and(|v| values.contains(v)))
    }
}
