//! Model providers behind one closed enum. A provider turns a chat or embedding request into a
//! response or a classified [`ProviderError`]; it knows nothing of Kafka or stages.

mod anthropic;
pub mod http;
mod openai;
mod simulated;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use reqwest::header::{InvalidHeaderName, InvalidHeaderValue};

pub use anthropic::Anthropic;
pub use openai::OpenAi;
pub use simulated::{embed_text, structured_answer, summarize, Simulated};

use crate::call::CallLog;
use crate::config::{ProviderConfig, ProviderSpec};

/// A chat completion request, provider-neutral.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub system: String,
    pub user: String,
    /// When set, the answer must be JSON matching this schema (structured output).
    pub json_schema: Option<serde_json::Value>,
    pub max_tokens: u32,
}

#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub text: String,
    /// The model that actually served the call.
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens the provider served from its prompt cache.
    pub cached_tokens: u64,
    /// The provider reported no usage: the counts come from tiktoken.
    pub tokens_estimated: bool,
    pub finish_reason: String,
    pub latency: Duration,
    /// The provider's id for this response.
    pub response_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EmbedRequest {
    pub model: String,
    pub inputs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct EmbedResponse {
    pub vectors: Vec<Vec<f32>>,
    pub model: String,
    pub input_tokens: u64,
    pub tokens_estimated: bool,
    pub response_id: Option<String>,
}

/// What went wrong with a call, in terms of what to do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// 429: try again, not before `retry_after` from now when the provider said.
    #[error("rate limited: {message}")]
    RateLimited { message: String, retry_after: Option<Duration> },
    /// 408, 5xx, timeouts, resets, an open breaker: try again (elsewhere first, if a fallback
    /// exists).
    #[error("unavailable: {message}")]
    Unavailable { message: String, retry_after: Option<Duration> },
    /// The request itself is bad: do not retry.
    #[error("rejected: {0}")]
    Rejected(String),
    /// 401/403: the credentials are wrong; nothing will work until an operator acts.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Not a provider failure: the tenant's budget for this window is spent. No call was made.
    #[error("tenant '{tenant}' is over budget until the next window")]
    OverBudget { tenant: String, until: SystemTime },
    /// Not a provider failure: the budget ledger could not decide in time. No call was made;
    /// try again shortly (no fallback: every model draws on the same budget).
    #[error("budget ledger unavailable: {message}")]
    BudgetUnavailable { message: String, retry_after: Duration },
}

impl ProviderError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable { message: message.into(), retry_after: None }
    }

    /// Worth another try, here or on a fallback.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            Self::BudgetUnavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Closed label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::Rejected(_) => "rejected",
            Self::Unauthorized(_) => "unauthorized",
            Self::OverBudget { .. } => "over_budget",
            Self::BudgetUnavailable { .. } => "budget_unavailable",
        }
    }
}

/// Why a provider cannot be built from its configuration (read when the worker starts). No
/// variant carries a secret's value: only where it was looked for.
#[derive(Debug, thiserror::Error)]
pub enum ProviderBuildError {
    #[error("environment variable {var} (named by api_key_env) is not set")]
    KeyEnvUnset { var: String },
    #[error("environment variable {var} is empty")]
    KeyEnvEmpty { var: String },
    #[error("cannot read api key file {}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("api key file {} is empty", path.display())]
    KeyFileEmpty { path: PathBuf },
    #[error("the api key contains characters not allowed in a header")]
    KeyNotHeaderSafe,
    #[error("header name '{name}'")]
    HeaderName {
        name: String,
        #[source]
        source: InvalidHeaderName,
    },
    #[error("header '{name}'")]
    HeaderValue {
        name: String,
        #[source]
        source: InvalidHeaderValue,
    },
}

/// Identifies one call: for providers that derive behaviour from it (the simulated one), for
/// the cost event it produces, and for the response cache.
#[derive(Debug, Clone, Copy)]
pub struct CallKey<'a> {
    pub document_id: &'a str,
    pub tenant: &'a str,
    pub stage: &'a str,
    pub attempt: u32,
    /// Template version of the prompt, part of the cache key and the cost event.
    pub prompt_version: Option<&'a str>,
    /// Where the call's cost events go; `None` for unmetered calls (indexing a knowledge base).
    pub log: Option<&'a CallLog>,
    /// Why the call is made when not for the stage's own answer (see `CostEvent::purpose`).
    pub purpose: Option<&'static str>,
}

impl<'a> CallKey<'a> {
    /// An unmetered call.
    pub fn new(document_id: &'a str, stage: &'a str, attempt: u32) -> Self {
        Self {
            document_id,
            tenant: "",
            stage,
            attempt,
            prompt_version: None,
            log: None,
            purpose: None,
        }
    }

    pub fn with_prompt(self, version: &'a str) -> Self {
        Self { prompt_version: Some(version), ..self }
    }
}

/// The closed set of providers.
#[derive(Debug, Clone)]
pub enum Provider {
    Simulated(Simulated),
    OpenAi(OpenAi),
    Anthropic(Anthropic),
}

impl Provider {
    /// Builds a provider, reading its API key; the error says what is missing.
    pub fn from_config(name: &str, config: &ProviderConfig) -> Result<Self, ProviderBuildError> {
        Ok(match &config.spec {
            ProviderSpec::Simulated(s) => Self::Simulated(Simulated::new(name, s.clone())),
            ProviderSpec::OpenAi(h) => Self::OpenAi(OpenAi::new(name, h, config.timeout)?),
            ProviderSpec::Anthropic(h) => Self::Anthropic(Anthropic::new(name, h, config.timeout)?),
        })
    }

    pub async fn chat(
        &self,
        req: &ChatRequest,
        key: CallKey<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        match self {
            Self::Simulated(p) => p.chat(req, key).await,
            Self::OpenAi(p) => p.chat(req).await,
            Self::Anthropic(p) => p.chat(req).await,
        }
    }

    pub async fn embed(
        &self,
        req: &EmbedRequest,
        key: CallKey<'_>,
    ) -> Result<EmbedResponse, ProviderError> {
        match self {
            Self::Simulated(p) => p.embed(req, key).await,
            Self::OpenAi(p) => p.embed(req).await,
            Self::Anthropic(_) => {
                Err(ProviderError::Rejected("Anthropic's API has no embeddings endpoint".into()))
            }
        }
    }
}
