//! Stages: what happens to one record, knowing nothing of Kafka. A stage takes an [`Envelope`]
//! and returns the records it emits, each on a [`Port`], or a [`StageError`] that says what to do.
//! The runner (see [`crate::runner`]) owns consuming, producing, retries and offsets.
//!
//! The five kinds live one per file behind the closed [`StageKind`] enum; [`AnyStage`] is a built
//! stage: its kind plus the redaction applied before any model call.

mod batcher;
mod classify;
mod embed;
mod generate;
mod models;
mod retrieve;
mod review;

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

pub use classify::{Classify, BUILTIN_PROMPT as CLASSIFY_BUILTIN_PROMPT};
pub use embed::Embed;
pub use generate::Generate;
pub use retrieve::Retrieve;
pub use review::{Review, JUDGE_PROMPT};

pub use models::Models;
pub use retrieve::{index_knowledge_base, RetrieveError};

use crate::avro::{Document, Envelope};
use crate::call::CallLog;
use crate::config::{ModelChoice, StageKindSpec, StageSpec, Topology};
use crate::pii::Redactor;
use crate::policy::Gateway;
use crate::provider::{CallKey, ProviderError};
use crate::retry::Hint;

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
    /// Not a failure: the record must wait until `until` (its tenant's budget renews).
    #[error("deferred: {reason}")]
    Deferred { reason: String, until: SystemTime },
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

    /// What the error says about trying again, for [`crate::retry::Attempts::after`].
    pub fn hint(&self) -> Hint {
        match self {
            Self::Retryable { not_before, .. } => Hint::Retry { not_before: *not_before },
            Self::Permanent { .. } => Hint::GiveUp,
            Self::Fatal { .. } => Hint::Stop,
            Self::Deferred { until, .. } => Hint::WaitUntil(*until),
        }
    }

    /// Short, closed label for metrics and the attempt history.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Retryable { .. } => "retryable",
            Self::Permanent { .. } => "permanent",
            Self::Fatal { .. } => "fatal",
            Self::Deferred { .. } => "deferred",
        }
    }
}

/// A provider's classification carried over: retry (after its Retry-After), dead-letter, stop,
/// or wait for the next budget window.
impl From<ProviderError> for StageError {
    fn from(e: ProviderError) -> Self {
        match &e {
            ProviderError::RateLimited { retry_after, .. }
            | ProviderError::Unavailable { retry_after, .. } => match retry_after {
                Some(wait) => StageError::retry_after(e.to_string(), SystemTime::now() + *wait),
                None => StageError::retryable(e.to_string()),
            },
            ProviderError::BudgetUnavailable { retry_after, .. } => {
                StageError::retry_after(e.to_string(), SystemTime::now() + *retry_after)
            }
            ProviderError::Rejected(_) => StageError::permanent(e.to_string()),
            ProviderError::Unauthorized(_) => StageError::Fatal { reason: e.to_string() },
            ProviderError::OverBudget { until, .. } => {
                StageError::Deferred { reason: e.to_string(), until: *until }
            }
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
    /// Where model calls record their cost events (the runner produces them to the metering
    /// topic with the record's outputs).
    pub log: Option<&'a CallLog>,
}

impl<'a> StageContext<'a> {
    /// A context without metering, for running a stage outside the runner.
    pub fn unmetered(stage: &'a str, attempt: u32) -> Self {
        Self { stage, attempt, log: None }
    }

    pub fn call_key(&self, document: &'a Document) -> CallKey<'a> {
        CallKey {
            document_id: &document.id,
            tenant: &document.tenant,
            stage: self.stage,
            attempt: self.attempt,
            prompt_version: None,
            log: self.log,
            purpose: None,
        }
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
pub enum StageKind {
    Classify(Classify),
    Embed(Embed),
    Retrieve(Retrieve),
    Generate(Generate),
    Review(Review),
}

/// A built stage: its kind, and the redaction applied to documents before any model call.
pub struct AnyStage {
    pub kind: StageKind,
    redact_input: Option<Redactor>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("stage '{stage}': {message}")]
    Invalid { stage: String, message: String },
    #[error("stage '{stage}'")]
    Retrieve {
        stage: String,
        #[source]
        source: RetrieveError,
    },
}

impl AnyStage {
    /// Builds the stage `spec` describes; model calls go through the process's `gateway`.
    pub async fn build(
        spec: &StageSpec,
        topology: &Topology,
        gateway: Arc<Gateway>,
    ) -> Result<Self, BuildError> {
        let invalid = |message: String| BuildError::Invalid { stage: spec.name.clone(), message };
        let models = spec.model.clone().map(|choice| Models { gateway: gateway.clone(), choice });
        let need = |what: &str| {
            models.clone().ok_or_else(|| invalid(format!("{what} stages need a model")))
        };
        let redactor = Redactor::new(&topology.pii.patterns);
        let kind = match &spec.kind {
            StageKindSpec::Classify { labels, rules, fallback_label, prompt } => {
                let models = if rules.is_empty() { Some(need("classify")?) } else { None };
                let prompt = prompt.as_ref().map(|p| (p.clone(), topology.prompts[p].clone()));
                StageKind::Classify(Classify::new(
                    models,
                    labels.clone(),
                    rules,
                    fallback_label,
                    prompt,
                ))
            }
            StageKindSpec::Embed {
                chunk_tokens,
                chunk_overlap,
                batch_size,
                linger,
                dimensions,
            } => StageKind::Embed(Embed::new(
                need("embed")?,
                *chunk_tokens,
                *chunk_overlap,
                *batch_size,
                *linger,
                *dimensions,
            )),
            StageKindSpec::Retrieve { store, knowledge_base, top_k, dimensions } => {
                StageKind::Retrieve(
                    Retrieve::open(
                        need("retrieve")?,
                        store,
                        knowledge_base.as_deref(),
                        *top_k,
                        *dimensions,
                    )
                    .await
                    .map_err(|source| BuildError::Retrieve { stage: spec.name.clone(), source })?,
                )
            }
            StageKindSpec::Generate { prompt, ab, max_output_tokens } => StageKind::Generate(
                Generate::new(need("generate")?, topology, prompt, ab.clone(), *max_output_tokens)
                    .with_semantic_cache(spec.semantic_cache.clone()),
            ),
            StageKindSpec::Review { blocked_terms, judge, .. } => {
                let judge = judge.as_ref().map(|j| {
                    let choice = ModelChoice { default: j.model.clone(), routes: Vec::new() };
                    (Models { gateway: gateway.clone(), choice }, j.threshold)
                });
                StageKind::Review(Review::new(blocked_terms.clone(), redactor.clone(), judge))
            }
        };
        Ok(Self { kind, redact_input: spec.redact_input.then_some(redactor) })
    }
}

impl Stage for AnyStage {
    async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        if let Some(r) = &self.redact_input {
            input.document.content = r.clean(&input.document.content);
        }
        match &self.kind {
            StageKind::Classify(s) => s.process(input, cx).await,
            StageKind::Embed(s) => s.process(input, cx).await,
            StageKind::Retrieve(s) => s.process(input, cx).await,
            StageKind::Generate(s) => s.process(input, cx).await,
            StageKind::Review(s) => s.process(input, cx).await,
        }
    }
}
