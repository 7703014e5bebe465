//! The semantic cache in the gateway's chat path, behind the exact cache: a record's variable
//! text ([`SemanticAsk`]) is embedded through the gateway's ordinary embeddings path — limits,
//! breaker, budget, and a cost event of its own purpose ([`SEMANTIC_LOOKUP`]), so the savings
//! shown are net — and looked up under the key of (stage, prompt version, model, embedding model,
//! scope); the [`guard`](super::semantic::guard) refuses a similar entry whose literals differ.
//! A hit answers without a model call and says so ([`Provenance::Semantic`]); a miss calls the
//! model and keeps its answer on the entries topic for every replica.
//!
//! The cache costs money when it fails, never correctness: a lookup whose embedding call fails
//! (other than for a budget, which the model call would meet too, or bad credentials) is
//! answered by the model, and an entry that cannot be written is not kept.

use std::sync::Arc;
use std::time::Duration;

use super::cache::Entry;
use super::semantic::{entry::MAX_TEXT_BYTES, Scope, SemanticEntry, SemanticKey, SemanticStore};
use super::{Gateway, Served};
use crate::avro::Envelope;
use crate::call::now_ms;
use crate::config::{SemanticCacheSpec, SemanticScope, TextPart};
use crate::provider::{CallKey, ChatResponse, EmbedRequest, ProviderError};
use crate::telemetry::{SemanticCacheFailed, SemanticLookup, SemanticResult};

/// The purpose of a lookup's embedding call, on its cost event.
pub const SEMANTIC_LOOKUP: &str = "semantic_lookup";
/// The purpose on the (zero-cost, `cached`) event of an answer reused from the semantic cache.
pub const SEMANTIC_HIT: &str = "semantic_hit";

/// How an answer was produced, as the stage's output record says.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Provenance {
    /// A model call made for this record.
    #[default]
    Model,
    /// The exact response cache: the same prompt was answered before.
    Exact,
    /// The semantic cache: the answer to `document_id`, whose variable text embedded within
    /// `similarity` (cosine) of this record's.
    Semantic { similarity: f32, document_id: String },
}

impl Provenance {
    /// `none`, `exact` or `semantic`.
    pub fn cache(&self) -> &'static str {
        match self {
            Self::Model => "none",
            Self::Exact => "exact",
            Self::Semantic { .. } => "semantic",
        }
    }

    pub fn similarity(&self) -> Option<f64> {
        match self {
            Self::Semantic { similarity, .. } => Some(f64::from(*similarity)),
            Self::Model | Self::Exact => None,
        }
    }

    /// The document whose answer was reused.
    pub fn source_document(&self) -> Option<&str> {
        match self {
            Self::Semantic { document_id, .. } => Some(document_id),
            Self::Model | Self::Exact => None,
        }
    }
}

/// One record's semantic lookup: its stage's settings and its variable text.
pub struct SemanticAsk<'a> {
    pub spec: &'a SemanticCacheSpec,
    pub text: String,
}

impl<'a> SemanticAsk<'a> {
    /// The lookup for `record` at `stage`; `None` when the stage excludes the record (counted)
    /// or the record has no variable text to compare (or too much to keep).
    pub fn of(spec: &'a SemanticCacheSpec, stage: &str, record: &Envelope) -> Option<Self> {
        let label = record.classification.as_ref().map(|c| c.label.as_str());
        if spec.exclude.excludes(label, &record.document.metadata) {
            SemanticLookup { stage, result: SemanticResult::Excluded, best: None }.emit();
            return None;
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in &spec.text {
            match part {
                TextPart::Document => parts.push(&record.document.content),
                TextPart::Passages => parts.extend(record.passages.iter().map(|p| &*p.text)),
                TextPart::Label => parts.extend(label),
            }
        }
        parts.retain(|p| !p.trim().is_empty());
        let text = parts.join("\n");
        (!text.is_empty() && text.len() <= MAX_TEXT_BYTES).then_some(Self { spec, text })
    }
}

/// What a lookup that found nothing leaves for the answer to be kept under.
pub(super) struct Pending {
    key: SemanticKey,
    text: String,
    vector: Vec<f32>,
    ttl: Duration,
}

pub(super) enum Looked {
    /// An earlier answer, reused.
    Hit(Served<ChatResponse>),
    /// The model answers; keep its answer with `Pending` when given.
    Miss(Option<Pending>),
}

impl Gateway {
    /// Serves semantic lookups from `store` (the process's one, see [`SemanticStore::open`]).
    pub fn with_semantic(mut self, store: Option<Arc<SemanticStore>>) -> Self {
        self.semantic = store;
        self
    }

    pub(super) async fn semantic_lookup(
        &self,
        alias: &str,
        key: CallKey<'_>,
        ask: SemanticAsk<'_>,
    ) -> Result<Looked, ProviderError> {
        let Some(store) = &self.semantic else { return Ok(Looked::Miss(None)) };
        let request = EmbedRequest { model: String::new(), inputs: vec![ask.text.clone()] };
        let lookup_key = CallKey { purpose: Some(SEMANTIC_LOOKUP), prompt_version: None, ..key };
        let failed = |error: &dyn std::fmt::Display| {
            SemanticLookup { stage: key.stage, result: SemanticResult::Failed, best: None }.emit();
            SemanticCacheFailed { stage: key.stage, operation: "embed", error }.emit();
            Ok(Looked::Miss(None))
        };
        let embedded = match self.embed(&ask.spec.embedding, &request, lookup_key).await {
            Ok(e) => e,
            Err(
                e @ (ProviderError::OverBudget { .. }
                | ProviderError::BudgetUnavailable { .. }
                | ProviderError::Unauthorized(_)),
            ) => return Err(e),
            Err(e) => return failed(&e),
        };
        let Some(vector) = embedded.value.vectors.into_iter().next() else {
            return failed(&"the embeddings call returned no vector");
        };
        let semantic_key = SemanticKey {
            stage: key.stage.to_owned(),
            prompt_version: key.prompt_version.map(str::to_owned),
            model: alias.to_owned(),
            // The model that embedded: a fallback's vectors are not comparable with the first's.
            embedding: embedded.served,
            scope: match ask.spec.scope {
                SemanticScope::Tenant => Scope::Tenant(key.tenant.to_owned()),
                SemanticScope::Global => Scope::Global,
            },
        };
        let found = store.lookup(&semantic_key, &vector, &ask.text, ask.spec.threshold);
        let hit = found.hit.and_then(|h| h.entry.cached.chat_response().map(|v| (h, v)));
        let result = match (&hit, found.guarded.is_empty()) {
            (Some(_), _) => SemanticResult::Hit,
            (None, true) => SemanticResult::Miss,
            (None, false) => SemanticResult::Refused,
        };
        SemanticLookup { stage: key.stage, result, best: found.best }.emit();
        let Some((hit, value)) = hit else {
            let ttl = ask.spec.ttl;
            let pending = Pending { key: semantic_key, text: ask.text, vector, ttl };
            return Ok(Looked::Miss(Some(pending)));
        };
        let cached = &hit.entry.cached;
        cached.reemit_own(key);
        self.cache_hit(CallKey { purpose: Some(SEMANTIC_HIT), ..key }, alias, "chat", cached);
        Ok(Looked::Hit(Served {
            value,
            requested: alias.to_owned(),
            served: cached.served.clone(),
            provider: cached.provider.clone(),
            model_name: cached.model_name.clone(),
            provenance: Provenance::Semantic {
                similarity: hit.similarity,
                document_id: hit.entry.document_id.clone(),
            },
        }))
    }

    /// Keeps the model's answer to a lookup that missed, for every replica.
    pub(super) async fn semantic_put(&self, stage: &str, pending: Pending, cached: Entry) {
        let Some(store) = &self.semantic else { return };
        let created_ms = now_ms();
        let ttl_ms = i64::try_from(pending.ttl.as_millis()).unwrap_or(i64::MAX);
        let entry = SemanticEntry {
            key: pending.key,
            text: pending.text,
            vector: pending.vector,
            document_id: cached.event.document_id.clone(),
            created_ms,
            expires_ms: created_ms.saturating_add(ttl_ms),
            cached,
        };
        if let Err(error) = store.put(entry).await {
            SemanticCacheFailed { stage, operation: "put", error: &error }.emit();
        }
    }
}

#[cfg(test)]
#[path = "semantic_call_tests.rs"]
mod tests;
