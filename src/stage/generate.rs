//! generate: fills the prompt template (or its A/B variant) with the document, its
//! classification and as many passages as fit the routed model's context window, calls the
//! model — or, with a semantic cache, reuses the answer to an earlier record that means the
//! same — and records the answer with its provenance: model, template version, usage, finish
//! reason, latency, and which cache answered (with the similarity and the reused document).

use std::collections::BTreeMap;

use super::models::{served_name, Models};
use super::{Emit, StageContext, StageError};
use crate::avro::{Answer, Envelope, Passage};
use crate::config::{AbSplit, PromptSpec, SemanticCacheSpec, Topology};
use crate::policy::prompts::{messages, Fill};
use crate::policy::router::in_variant;
use crate::policy::SemanticAsk;
use crate::provider::ChatRequest;
use crate::tokens;

pub struct Generate {
    models: Models,
    prompts: BTreeMap<String, PromptSpec>,
    prompt: String,
    ab: Option<AbSplit>,
    max_output_tokens: u32,
    semantic: Option<SemanticCacheSpec>,
}

/// Tokens kept free for message framing the count does not see.
const FRAMING_TOKENS: usize = 16;

impl Generate {
    pub fn new(
        models: Models,
        topology: &Topology,
        prompt: &str,
        ab: Option<AbSplit>,
        max_output_tokens: u32,
    ) -> Self {
        Self {
            models,
            prompts: topology.prompts.clone(),
            prompt: prompt.to_owned(),
            ab,
            max_output_tokens,
            semantic: None,
        }
    }

    /// Answers records whose variable text means the same as an earlier one's from the
    /// semantic cache (see [`SemanticAsk`]).
    pub fn with_semantic_cache(mut self, spec: Option<SemanticCacheSpec>) -> Self {
        self.semantic = spec;
        self
    }

    /// The template version this document gets: the A/B variant for its share of ids.
    pub fn version_for(&self, document_id: &str) -> &str {
        match &self.ab {
            Some(ab) if in_variant(document_id, &ab.prompt, ab.weight) => &ab.prompt,
            _ => &self.prompt,
        }
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let version = self.version_for(&input.document.id).to_owned();
        let template = &self.prompts[&version];
        let alias = self.models.pick(&input).to_owned();
        let spec = self.models.gateway.model(&alias).ok_or_else(|| StageError::Fatal {
            reason: format!("model '{alias}' is not in the topology"),
        })?;
        let label = input.classification.as_ref().map_or("", |c| c.label.as_str()).to_owned();
        let mut fill = Fill {
            document: &input.document.content,
            label: &label,
            tenant: &input.document.tenant,
            passages: "",
            labels: "",
        };
        let (system, bare) = messages(template, &fill);
        let fixed = tokens::count(&spec.name, &system) + tokens::count(&spec.name, &bare);
        let budget = spec
            .context_window
            .checked_sub(fixed + self.max_output_tokens as usize + FRAMING_TOKENS)
            .ok_or_else(|| {
                StageError::permanent(format!(
                    "the document and template take {fixed} tokens: with {} for the answer they \
                     exceed the {}-token context window of '{alias}'",
                    self.max_output_tokens, spec.context_window
                ))
            })?;
        let passages = fit_passages(&spec.name, &input.passages, budget);
        fill.passages = &passages;
        let (system, user) = messages(template, &fill);
        let request = ChatRequest {
            model: String::new(),
            system,
            user,
            json_schema: None,
            max_tokens: self.max_output_tokens,
        };
        let key = cx.call_key(&input.document).with_prompt(&version);
        let ask = self.semantic.as_ref().and_then(|s| SemanticAsk::of(s, cx.stage, &input));
        let served = self.models.gateway.chat_with(&alias, &request, key, ask).await?;
        let r = served.value;
        let how = &served.provenance;
        input.answer = Some(Answer {
            text: r.text,
            // The model the endpoint reports (e.g. a dated snapshot), on the provider that served.
            model: served_name(&served.provider, &r.model),
            prompt_version: version,
            input_tokens: r.input_tokens as i64,
            output_tokens: r.output_tokens as i64,
            finish_reason: r.finish_reason,
            latency_ms: r.latency.as_millis() as i64,
            cache: how.cache().to_owned(),
            similarity: how.similarity(),
            reused_from: how.source_document().map(str::to_owned),
        });
        Ok(vec![Emit::main(input)])
    }
}

/// Passages, best first, as `[id] text` lines within `budget` tokens; the first passage that
/// does not fit is cut to the room left, and the rest are dropped.
pub fn fit_passages(model: &str, passages: &[Passage], budget: usize) -> String {
    let mut out = String::new();
    let mut left = budget;
    for p in passages {
        let line = format!("[{}] {}\n", p.id, p.text);
        let n = tokens::count(model, &line);
        if n <= left {
            out.push_str(&line);
            left -= n;
            continue;
        }
        if left > 8 {
            out.push_str(&tokens::truncate(model, &line, left));
            out.push('\n');
        }
        break;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passages_are_cut_to_the_budget() {
        let p = |id: &str, words: usize| Passage {
            id: id.into(),
            text: vec!["refund"; words].join(" "),
            score: 1.0,
            source: "kb".into(),
        };
        let all = [p("a", 20), p("b", 200), p("c", 5)];
        let text = fit_passages("gpt-4o", &all, 60);
        assert!(text.starts_with("[a] "));
        assert!(text.contains("[b] "), "the second passage is cut, not dropped: {text}");
        assert!(!text.contains("[c]"));
        assert!(tokens::count("gpt-4o", &text) <= 61);
        assert_eq!(fit_passages("gpt-4o", &all, 1000).lines().count(), 3);
    }
}
