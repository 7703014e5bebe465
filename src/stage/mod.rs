//! Stages: what happens to one record, knowing nothing of Kafka. A stage takes an [`Envelope`]
//! and returns the records it emits, each on a [`Port`], or a [`StageError`] that says what to do.
//! The runner (see [`crate::runner`]) owns consuming, producing, retries and offsets.
//!
//! The five kinds live one per file behind the closed [`AnyStage`] enum.

mod classify;
mod embed;
mod generate;
mod retrieve;
mod review;

use std::future::Future;
use std::time::SystemTime;

pub use classify::Classify;
pub use embed::Embed;
pub use generate::Generate;
pub use retrieve::Retrieve;
pub use review::Review;

use crate::avro::Envelope;
use crate::config::{StageKindSpec, StageSpec, Topology};
use crate::provider::{CallKey, Provider};

/// Where an emitted record goes; the runner maps ports to topics from the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// The stage's `output` topic (for review: approved answers).
    Main,
    /// Review only: answers a human must look at.
    NeedsHuman,
    /// Review only: rejected answers.
    Rejected,
}

/// One record a stage emits.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub port: Port,
    pub record: Envelope,
}

impl Emit {
    pub fn main(record: Envelope) -> Self {
        Self { port: Port::Main, record }
    }
}

/// A failure, classified by what the runner must do with the record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StageError {
    /// Try again later, not before `not_before` when given (e.g. from Retry-After).
    #[error("retryable: {reason}")]
    Retryable { reason: String, not_before: Option<SystemTime> },
    /// Trying again cannot help: dead-letter the record.
    #[error("permanent: {reason}")]
    Permanent { reason: String },
    /// Nothing can proceed (bad credentials, fenced producer): stop the worker.
    #[error("fatal: {reason}")]
    Fatal { reason: String },
}

impl StageError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable { reason: reason.into(), not_before: None }
    }

    pub fn retry_after(reason: impl Into<String>, not_before: SystemTime) -> Self {
        Self::Retryable { reason: reason.into(), not_before: Some(not_before) }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent { reason: reason.into() }
    }

    /// Short, closed label for metrics and the attempt history.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Retryable { .. } => "retryable",
            Self::Permanent { .. } => "permanent",
            Self::Fatal { .. } => "fatal",
        }
    }
}

/// What a stage knows about the record it is processing besides its content.
#[derive(Debug, Clone, Copy)]
pub struct StageContext<'a> {
    /// Stage name, as in the topology.
    pub stage: &'a str,
    /// 1 for the first attempt at this record.
    pub attempt: u32,
}

impl<'a> StageContext<'a> {
    pub fn call_key(&self, document_id: &'a str) -> CallKey<'a> {
        CallKey { document_id, stage: self.stage, attempt: self.attempt }
    }
}

/// The one thing a stage does.
pub trait Stage: Send + Sync + 'static {
    fn process(
        &self,
        input: Envelope,
        cx: StageContext<'_>,
    ) -> impl Future<Output = Result<Vec<Emit>, StageError>> + Send;
}

/// The closed set of stage kinds.
pub enum AnyStage {
    Classify(Classify),
    Embed(Embed),
    Retrieve(Retrieve),
    Generate(Generate),
    Review(Review),
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("stage '{stage}': {message}")]
    Invalid { stage: String, message: String },
}

impl AnyStage {
    /// Builds the stage `spec` describes, with its provider.
    pub async fn build(spec: &StageSpec, topology: &Topology) -> Result<Self, BuildError> {
        let provider_spec =
            topology.providers.get(&spec.model.provider).ok_or_else(|| BuildError::Invalid {
                stage: spec.name.clone(),
                message: format!("unknown provider '{}'", spec.model.provider),
            })?;
        let provider = Provider::from_spec(&spec.model.provider, provider_spec);
        let model = spec.model.model.clone();
        Ok(match &spec.kind {
            StageKindSpec::Classify { labels } => {
                Self::Classify(Classify::new(provider, model, labels.clone()))
            }
            StageKindSpec::Embed { chunk_words, chunk_overlap, batch_size, dimensions } => {
                Self::Embed(Embed::new(
                    provider,
                    model,
                    *chunk_words,
                    *chunk_overlap,
                    *batch_size,
                    *dimensions,
                ))
            }
            StageKindSpec::Retrieve { knowledge_base, top_k } => Self::Retrieve(
                Retrieve::load(provider, model, knowledge_base, *top_k)
                    .await
                    .map_err(|message| BuildError::Invalid { stage: spec.name.clone(), message })?,
            ),
            StageKindSpec::Generate { prompt_version, max_output_tokens } => Self::Generate(
                Generate::new(provider, model, prompt_version.clone(), *max_output_tokens),
            ),
            StageKindSpec::Review { blocked_terms, .. } => {
                Self::Review(Review::new(blocked_terms.clone()))
            }
        })
    }
}

impl Stage for AnyStage {
    async fn process(
        &self,
        input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        match self {
            Self::Classify(s) => s.process(input, cx).await,
            Self::Embed(s) => s.process(input, cx).await,
            Self::Retrieve(s) => s.process(input, cx).await,
            Self::Generate(s) => s.process(input, cx).await,
            Self::Review(s) => s.process(input, cx).await,
        }
    }
}
