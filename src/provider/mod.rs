//! Model providers behind one closed enum. A provider turns a chat or embedding request into a
//! response or a classified [`ProviderError`]; it knows nothing of Kafka or stages.

mod simulated;

use std::time::{Duration, SystemTime};

pub use simulated::Simulated;

use crate::config::ProviderSpec;
use crate::stage::StageError;

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
    pub finish_reason: String,
    pub latency: Duration,
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
}

/// What went wrong with a call, in terms of what to do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// 429: try again, not before `retry_after` from now.
    #[error("rate limited by provider (retry after {retry_after:?})")]
    RateLimited { retry_after: Duration },
    /// 408, 5xx, timeouts and resets: try again.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The request itself is bad: do not retry.
    #[error("provider rejected the request: {0}")]
    Rejected(String),
}

impl From<ProviderError> for StageError {
    fn from(e: ProviderError) -> Self {
        match &e {
            ProviderError::RateLimited { retry_after } => {
                StageError::retry_after(e.to_string(), SystemTime::now() + *retry_after)
            }
            ProviderError::Unavailable(_) => StageError::retryable(e.to_string()),
            ProviderError::Rejected(_) => StageError::permanent(e.to_string()),
        }
    }
}

/// Identifies one call for providers that derive behaviour from it (the simulated one).
#[derive(Debug, Clone, Copy)]
pub struct CallKey<'a> {
    pub document_id: &'a str,
    pub stage: &'a str,
    pub attempt: u32,
}

/// The closed set of providers.
#[derive(Debug, Clone)]
pub enum Provider {
    Simulated(Simulated),
}

impl Provider {
    pub fn from_spec(name: &str, spec: &ProviderSpec) -> Self {
        match spec {
            ProviderSpec::Simulated(s) => Self::Simulated(Simulated::new(name, s.clone())),
        }
    }

    pub async fn chat(
        &self,
        req: &ChatRequest,
        key: CallKey<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        match self {
            Self::Simulated(p) => p.chat(req, key).await,
        }
    }

    pub async fn embed(
        &self,
        req: &EmbedRequest,
        key: CallKey<'_>,
    ) -> Result<EmbedResponse, ProviderError> {
        match self {
            Self::Simulated(p) => p.embed(req, key).await,
        }
    }
}
