//! The gateway's metered entry points: the response cache in front of the fallback walk (its
//! lookups counted by stage, model and result), then a stage's semantic cache for chat calls
//! ([`super::semantic_call`]), and the events of cache hits (a provider call's own event is kept
//! by [`super::record`]).

use super::cache::{self, Entry};
use super::semantic_call::Looked;
use super::{Answer, Gateway, Op, Provenance, SemanticAsk, Served};
use crate::call::{now_ms, CostEvent};
use crate::provider::{
    CallKey, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, ProviderError,
};
use crate::telemetry::{CacheLookups, ModelCall, ModelUsage};

impl Gateway {
    /// A chat call: from the cache when the same prompt version, model, parameters and input
    /// were answered before; otherwise through the fallback chain, and cached on success.
    pub async fn chat(
        &self,
        alias: &str,
        req: &ChatRequest,
        key: CallKey<'_>,
    ) -> Result<Served<ChatResponse>, ProviderError> {
        self.chat_with(alias, req, key, None).await
    }

    /// [`Gateway::chat`] with the stage's semantic cache behind the exact one: on an exact miss,
    /// an earlier answer to a question that means the same (see [`SemanticAsk`]); on a miss
    /// there too, the model's answer is kept for later records.
    pub async fn chat_with(
        &self,
        alias: &str,
        req: &ChatRequest,
        key: CallKey<'_>,
        semantic: Option<SemanticAsk<'_>>,
    ) -> Result<Served<ChatResponse>, ProviderError> {
        let cache_key = cache::chat_key(key.prompt_version, alias, req);
        let hit = match &self.cache {
            Some(c) => {
                let hit = c.get(&cache_key).await;
                let (hits, misses) = if hit.is_some() { (1, 0) } else { (0, 1) };
                CacheLookups { stage: key.stage, model: self.model_name(alias), hits, misses }
                    .emit();
                hit
            }
            None => None,
        };
        if let Some(entry) = hit {
            if let Some(value) = entry.chat_response() {
                entry.reemit_own(key);
                self.cache_hit(key, alias, "chat", &entry);
                return Ok(served(alias, &entry, value));
            }
        }
        let pending = match semantic {
            Some(ask) => match self.semantic_lookup(alias, key, ask).await? {
                Looked::Hit(served) => return Ok(served),
                Looked::Miss(pending) => pending,
            },
            None => None,
        };
        let (served, answer, event) = self.call(alias, &Op::Chat(req), key).await?;
        let Answer::Chat(value) = answer else { unreachable!("a chat call answers with chat") };
        // Kept only where a cache will hold it: no copy of the answer on the record path else.
        let kept = self.cache.is_some() || pending.is_some();
        if let Some(event) = event.filter(|_| kept) {
            let answer = cache::Answer::Chat {
                text: value.text.clone(),
                model: value.model.clone(),
                input_tokens: value.input_tokens,
                output_tokens: value.output_tokens,
                cached_tokens: value.cached_tokens,
                estimated: value.tokens_estimated,
                finish_reason: value.finish_reason.clone(),
            };
            let entry = entry_of(&served, answer, event);
            if let Some(cache) = &self.cache {
                cache.put(&cache_key, &entry).await;
            }
            if let Some(pending) = pending {
                self.semantic_put(key.stage, pending, entry).await;
            }
        }
        Ok(served.with(value))
    }

    /// An embeddings call: inputs already embedded by this model come from the cache, the rest
    /// go in one call (through the fallback chain) and are cached on success.
    pub async fn embed(
        &self,
        alias: &str,
        req: &EmbedRequest,
        key: CallKey<'_>,
    ) -> Result<Served<EmbedResponse>, ProviderError> {
        let Some(cache) = &self.cache else {
            let (served, answer, _) = self.call(alias, &Op::Embed(req), key).await?;
            let Answer::Embed(value) = answer else { unreachable!("embeddings answer") };
            return Ok(served.with(value));
        };
        let keys: Vec<String> = req.inputs.iter().map(|t| cache::embedding_key(alias, t)).collect();
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; req.inputs.len()];
        let mut hit: Option<Entry> = None;
        for (i, k) in keys.iter().enumerate() {
            if let Some(entry) = cache.get(k).await {
                if let cache::Answer::Embedding { vector } = &entry.answer {
                    vectors[i] = Some(vector.clone());
                    entry.reemit_own(key);
                    hit.get_or_insert(entry);
                }
            }
        }
        if let Some(entry) = &hit {
            self.cache_hit(key, alias, "embeddings", entry);
        }
        let missing: Vec<usize> = (0..vectors.len()).filter(|i| vectors[*i].is_none()).collect();
        let misses = missing.len() as u64;
        let hits = vectors.len() as u64 - misses;
        CacheLookups { stage: key.stage, model: self.model_name(alias), hits, misses }.emit();
        if missing.is_empty() {
            let entry = hit.expect("no input missing means every input was a hit");
            let value = EmbedResponse {
                vectors: vectors.into_iter().flatten().collect(),
                model: entry.model_name.clone(),
                input_tokens: 0,
                tokens_estimated: false,
                response_id: None,
            };
            return Ok(served(alias, &entry, value));
        }
        let inputs = missing.iter().map(|i| req.inputs[*i].clone()).collect();
        let partial = EmbedRequest { model: req.model.clone(), inputs };
        let (served, answer, event) = self.call(alias, &Op::Embed(&partial), key).await?;
        let Answer::Embed(mut value) = answer else { unreachable!("embeddings answer") };
        if value.vectors.len() != missing.len() {
            // Not an answer to cache; the caller reports the count mismatch.
            return Ok(served.with(value));
        }
        for (i, v) in missing.iter().zip(&value.vectors) {
            if let Some(event) = &event {
                let answer = cache::Answer::Embedding { vector: v.clone() };
                cache.put(&keys[*i], &entry_of(&served, answer, event.clone())).await;
            }
            vectors[*i] = Some(v.clone());
        }
        value.vectors = vectors.into_iter().flatten().collect();
        Ok(served.with(value))
    }

    /// The provider's model name of a logical model (the label model metrics carry).
    fn model_name<'a>(&'a self, alias: &'a str) -> &'a str {
        self.models.get(alias).map_or(alias, |m| m.name.as_str())
    }

    /// A cache hit's own event: no provider call, zero cost, `cached = true`.
    pub(super) fn cache_hit(&self, key: CallKey<'_>, alias: &str, operation: &str, entry: &Entry) {
        let endpoint = self.endpoints.get(&entry.provider);
        let call = ModelCall {
            operation,
            provider: endpoint.map_or("", |e| e.kind),
            endpoint: &entry.provider,
            model: endpoint.map_or(&entry.model_name, |e| e.wire_model(&entry.model_name)),
            tenant: key.tenant,
            prompt_version: key.prompt_version,
            attempt: key.attempt,
        };
        call.cache_hit(&ModelUsage {
            response_model: &entry.event.model_served,
            response_id: entry.event.response_id.as_deref(),
            input_tokens: entry.event.input_tokens.max(0) as u64,
            output_tokens: entry.event.output_tokens.max(0) as u64,
            cost_micro_usd: 0,
            outcome: "ok",
        });
        let Some(log) = key.log else { return };
        let call_index = log.next_call();
        log.push(CostEvent {
            event_id: log.event_id(key.attempt, call_index, "cached"),
            timestamp_ms: now_ms(),
            tenant: key.tenant.to_owned(),
            pipeline: log.pipeline.clone(),
            stage: log.stage.clone(),
            document_id: key.document_id.to_owned(),
            provider: entry.provider.clone(),
            model_requested: alias.to_owned(),
            model_served: entry.event.model_served.clone(),
            prompt_version: key.prompt_version.map(str::to_owned),
            input_tokens: entry.event.input_tokens,
            output_tokens: entry.event.output_tokens,
            cached_tokens: 0,
            estimated: entry.event.estimated,
            cost_micro_usd: 0,
            latency_ms: 0,
            outcome: "ok".into(),
            trace_id: log.trace_id.clone(),
            operation: operation.to_owned(),
            cached: true,
            attempt: key.attempt as i32,
            call_index: call_index as i32,
            response_id: None,
            price_set_on: entry.event.price_set_on.clone(),
            budget: None,
            purpose: key.purpose.map(str::to_owned),
        });
    }
}

pub(super) fn entry_of(served: &Served<()>, answer: cache::Answer, event: CostEvent) -> Entry {
    Entry {
        answer,
        served: served.served.clone(),
        provider: served.provider.clone(),
        model_name: served.model_name.clone(),
        event,
    }
}

/// An exact cache hit's answer.
fn served<T>(requested: &str, entry: &Entry, value: T) -> Served<T> {
    Served {
        value,
        requested: requested.to_owned(),
        served: entry.served.clone(),
        provider: entry.provider.clone(),
        model_name: entry.model_name.clone(),
        provenance: Provenance::Exact,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Gateway;
    use crate::call::{CallLog, Origin};
    use crate::provider::{CallKey, ChatRequest, EmbedRequest};

    /// `sluice_cache_lookups_total` of model `sim-small` as the metrics page shows it.
    fn lookups(stage: &str, result: &str) -> u64 {
        let series = format!(
            "sluice_cache_lookups_total{{model=\"sim-small\",result=\"{result}\",stage=\"{stage}\"}} "
        );
        let text = crate::telemetry::render();
        text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |v| v.parse().expect("count"))
    }

    #[tokio::test]
    async fn cache_lookups_are_counted_by_stage_model_and_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            r#"
pipeline: p
providers:
  sim: {{ kind: simulated, latency: 1ms, jitter: 1ms, failure_rate: 0 }}
models:
  small: {{ provider: sim, name: sim-small }}
cache: {{ path: {} }}
inputs: {{ docs: {{}} }}
stages:
  c: {{ kind: classify, input: docs, output: out, model: small, classify: {{ labels: [a, other] }} }}
"#,
            dir.path().display()
        );
        let t = crate::config::compile(Path::new("t.yaml"), &yaml).expect("compiles");
        let g = Gateway::new(&t).expect("gateway");
        let log = CallLog::new(
            "p",
            "lookups",
            Origin { topic: "in".into(), partition: 0, offset: 1, timestamp_ms: None },
        );
        let key = CallKey { tenant: "acme", log: Some(&log), ..CallKey::new("d", "lookups", 1) };
        let chat = ChatRequest {
            model: String::new(),
            system: "Be brief.".into(),
            user: "same question".into(),
            json_schema: None,
            max_tokens: 16,
        };
        g.chat("small", &chat, key).await.expect("paid call");
        g.chat("small", &chat, key).await.expect("cache hit");
        assert_eq!((lookups("lookups", "hit"), lookups("lookups", "miss")), (1, 1));
        let embed = |inputs: &[&str]| EmbedRequest {
            model: String::new(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        };
        g.embed("small", &embed(&["alpha"]), key).await.expect("paid call");
        g.embed("small", &embed(&["alpha", "beta", "gamma"]), key).await.expect("one hit");
        assert_eq!((lookups("lookups", "hit"), lookups("lookups", "miss")), (2, 4));
    }
}
