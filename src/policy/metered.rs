//! The gateway's metered entry points: the response cache in front of the fallback walk (its
//! lookups counted by stage, model and result), and the events of cache hits (a provider call's
//! own event is kept by [`super::record`]).

use std::time::Duration;

use super::cache::{self, Entry};
use super::{Answer, Gateway, Op, Served};
use crate::call::{now_ms, CostEvent};
use crate::provider::{
    CallKey, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, ProviderError,
};
use crate::telemetry::{CacheLookups, ModelCall, ModelUsage};

/// On a cache hit, the event of the call that filled the entry again — only when that call was
/// made for this same document and tenant at this stage (a record redone after a crash that lost
/// the event: a duplicate by id if it was delivered, its only copy if not). An entry another
/// record filled is that record's to meter; this record meters its own zero-cost hit.
fn reemit_own(key: CallKey<'_>, entry: &Entry) {
    let Some(log) = key.log else { return };
    let e = &entry.event;
    if e.document_id == key.document_id && e.tenant == key.tenant && e.stage == log.stage {
        log.push(e.clone());
    }
}

impl Gateway {
    /// A chat call: from the cache when the same prompt version, model, parameters and input
    /// were answered before; otherwise through the fallback chain, and cached on success.
    pub async fn chat(
        &self,
        alias: &str,
        req: &ChatRequest,
        key: CallKey<'_>,
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
            if let cache::Answer::Chat {
                text,
                model,
                input_tokens,
                output_tokens,
                cached_tokens,
                estimated,
                finish_reason,
            } = entry.answer.clone()
            {
                reemit_own(key, &entry);
                self.cache_hit(key, alias, "chat", &entry);
                let value = ChatResponse {
                    text,
                    model,
                    input_tokens,
                    output_tokens,
                    cached_tokens,
                    tokens_estimated: estimated,
                    finish_reason,
                    latency: Duration::ZERO,
                    response_id: entry.event.response_id.clone(),
                };
                return Ok(served(alias, &entry, value));
            }
        }
        let (served, answer, event) = self.call(alias, &Op::Chat(req), key).await?;
        let Answer::Chat(value) = answer else { unreachable!("a chat call answers with chat") };
        if let (Some(cache), Some(event)) = (&self.cache, event) {
            let answer = cache::Answer::Chat {
                text: value.text.clone(),
                model: value.model.clone(),
                input_tokens: value.input_tokens,
                output_tokens: value.output_tokens,
                cached_tokens: value.cached_tokens,
                estimated: value.tokens_estimated,
                finish_reason: value.finish_reason.clone(),
            };
            cache.put(&cache_key, &entry_of(&served, answer, event)).await;
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
                    reemit_own(key, &entry);
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
    fn cache_hit(&self, key: CallKey<'_>, alias: &str, operation: &str, entry: &Entry) {
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
        });
    }
}

fn entry_of(served: &Served<()>, answer: cache::Answer, event: CostEvent) -> Entry {
    Entry {
        answer,
        served: served.served.clone(),
        provider: served.provider.clone(),
        model_name: served.model_name.clone(),
        event,
    }
}

fn served<T>(requested: &str, entry: &Entry, value: T) -> Served<T> {
    Served {
        value,
        requested: requested.to_owned(),
        served: entry.served.clone(),
        provider: entry.provider.clone(),
        model_name: entry.model_name.clone(),
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
