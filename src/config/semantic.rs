//! A stage's semantic cache (`cache.semantic`): phase one reads the block, phase two checks
//! that the stage has a model answer to reuse and that the embedding model can embed.
//!
//! ```yaml
//! cache:
//!   semantic:
//!     threshold: 0.94          # cosine similarity, in (0, 1] (default 0.94)
//!     embedding: minilm        # a logical model with an embeddings API
//!     scope: tenant            # or global (answers shared between tenants)
//!     ttl: 7d
//!     text: [document, passages]   # what is embedded: document, passages, label
//!     exclude: { labels: [legal], metadata: { confidential: ["yes"] } }
//! ```

use std::collections::BTreeMap;

use super::crossref::{chain, unknown_model};
use super::defaults as d;
use super::errors::Errors;
use super::model::{StageKindSpec, StageSpec, Topology};
use super::policy::{Exclusion, ProviderSpec, SemanticCacheSpec, SemanticScope, TextPart};
use super::section::Section;
use super::values::duration;

/// Phase one: a stage's `cache:` block (only `semantic` so far; the exact cache is topology-wide).
pub fn cache(s: &mut Section<'_>) -> Option<SemanticCacheSpec> {
    s.peek("semantic").is_some().then(|| s.nested("semantic", semantic)).flatten()
}

fn semantic(s: &mut Section<'_>) -> Option<SemanticCacheSpec> {
    let threshold = Some(s.or("threshold", f64::from(d::SEMANTIC_CACHE_THRESHOLD))).and_then(|t| {
        let ok = t > 0.0 && t <= 1.0;
        if !ok {
            s.error("threshold", format!("a cosine similarity in (0, 1], got {t}"));
        }
        ok.then_some(t as f32)
    });
    let embedding: Option<String> = s.req("embedding");
    let scope = match s.or("scope", "tenant".to_owned()).as_str() {
        "tenant" => SemanticScope::Tenant,
        "global" => SemanticScope::Global,
        other => {
            s.error("scope", format!("unknown scope '{other}' (expected tenant, global)"));
            SemanticScope::Tenant
        }
    };
    let ttl = duration(s, "ttl", d::SEMANTIC_CACHE_TTL);
    let names: Vec<String> = s.or("text", vec!["document".to_owned(), "passages".to_owned()]);
    let mut text = Vec::new();
    for name in &names {
        match text_part(name) {
            Some(p) if text.contains(&p) => s.error("text", format!("'{name}' is listed twice")),
            Some(p) => text.push(p),
            None => s.error(
                "text",
                format!("unknown part '{name}' (expected some of: {})", TextPart::NAMES),
            ),
        }
    }
    if names.is_empty() {
        s.error("text", format!("name what is embedded, some of: {}", TextPart::NAMES));
    }
    let exclude = s.nested("exclude", |e| Exclusion {
        labels: e.or("labels", Vec::new()),
        metadata: e.or("metadata", BTreeMap::new()),
    });
    Some(SemanticCacheSpec {
        threshold: threshold?,
        embedding: embedding?,
        scope,
        ttl,
        text,
        exclude,
    })
}

fn text_part(name: &str) -> Option<TextPart> {
    match name {
        "document" => Some(TextPart::Document),
        "passages" => Some(TextPart::Passages),
        "label" => Some(TextPart::Label),
        _ => None,
    }
}

/// Phase two: the stage is a generate stage, and the embedding model
/// exists, can embed (no provider on its fallback chain lacks an embeddings API) and has a price.
pub fn check(t: &Topology, s: &StageSpec, errors: &mut Errors) {
    let Some(spec) = &s.semantic_cache else { return };
    let stage = Some(s.name.as_str());
    if !matches!(s.kind, StageKindSpec::Generate { .. }) {
        errors.push(
            stage,
            "cache.semantic",
            format!(
                "only generate stages have a semantic cache (their answer records say which \
                 cache answered), not {} stages",
                s.kind.name()
            ),
        );
    }
    let field = "cache.semantic.embedding";
    if !t.models.contains_key(&spec.embedding) {
        errors.push(stage, field, unknown_model(t, &spec.embedding));
        return;
    }
    for alias in chain(t, &spec.embedding) {
        let Some(m) = t.models.get(&alias) else { continue };
        let Some(provider) = t.providers.get(&m.provider) else { continue };
        match provider.spec {
            ProviderSpec::Anthropic(_) => errors.push(
                stage,
                field,
                format!(
                    "model '{alias}' is on an anthropic provider, which has no embeddings API: \
                     name an embedding model"
                ),
            ),
            ProviderSpec::OpenAi(_) if !t.prices.models.contains_key(&alias) => errors.push(
                stage,
                field,
                format!(
                    "model '{alias}' has no price: add it under prices.models (the lookup's \
                     embedding call is metered)"
                ),
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "semantic_tests.rs"]
mod tests;
