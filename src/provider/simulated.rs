//! The `simulated` provider: deterministic answers, latency, failures and 429s derived from a
//! hash of the call, so the whole pipeline runs offline and tests can predict its behaviour.
//! Embeddings hash words into buckets (similar texts get similar vectors); classification picks
//! the label whose name shares a stem with the text; answers quote the request.

use std::time::Duration;

use super::{CallKey, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, ProviderError};
use crate::call::stable_hash;
use crate::config::SimulatedSpec;

#[derive(Debug, Clone)]
pub struct Simulated {
    name: String,
    spec: SimulatedSpec,
}

/// A hash mapped to `[0, 1)`.
fn unit(parts: &[&[u8]]) -> f64 {
    (stable_hash(parts) >> 11) as f64 / (1u64 << 53) as f64
}

/// Rough token count (about 4 characters a token), for a provider that reports none.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

impl Simulated {
    pub fn new(name: &str, spec: SimulatedSpec) -> Self {
        Self { name: name.to_owned(), spec }
    }

    /// Sleeps the call's latency, then fails it if the hash says so.
    async fn call(&self, op: &str, key: CallKey<'_>) -> Result<Duration, ProviderError> {
        let attempt = key.attempt.to_le_bytes();
        let parts: [&[u8]; 4] =
            [op.as_bytes(), key.document_id.as_bytes(), key.stage.as_bytes(), &attempt];
        let jitter = self.spec.jitter.mul_f64(unit(&[&parts[..], &[b"jitter"]].concat()));
        let latency = self.spec.latency + jitter;
        tokio::time::sleep(latency).await;
        if unit(&[&parts[..], &[b"429"]].concat()) < self.spec.rate_limit_rate {
            return Err(ProviderError::RateLimited {
                message: format!("{}: simulated 429 Too Many Requests", self.name),
                retry_after: Some(self.spec.retry_after),
            });
        }
        if unit(&[&parts[..], &[b"fail"]].concat()) < self.spec.failure_rate {
            return Err(ProviderError::unavailable(format!(
                "{}: simulated 503 Service Unavailable",
                self.name
            )));
        }
        Ok(latency)
    }

    pub async fn chat(
        &self,
        req: &ChatRequest,
        key: CallKey<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let latency = self.call("chat", key).await?;
        let text = match &req.json_schema {
            Some(schema) => structured_answer(schema, &req.user),
            None => {
                format!("[{}] {}", req.model, summarize(&req.user, req.max_tokens as usize * 3))
            }
        };
        Ok(ChatResponse {
            input_tokens: estimate_tokens(&req.system) + estimate_tokens(&req.user),
            output_tokens: estimate_tokens(&text),
            cached_tokens: 0,
            tokens_estimated: false,
            text,
            model: req.model.clone(),
            finish_reason: "stop".into(),
            latency,
            response_id: None,
        })
    }

    pub async fn embed(
        &self,
        req: &EmbedRequest,
        key: CallKey<'_>,
    ) -> Result<EmbedResponse, ProviderError> {
        self.call("embed", key).await?;
        Ok(EmbedResponse {
            vectors: req.inputs.iter().map(|t| embed_text(t, self.spec.embedding_dim)).collect(),
            model: req.model.clone(),
            input_tokens: req.inputs.iter().map(|t| estimate_tokens(t)).sum(),
            tokens_estimated: false,
            response_id: None,
        })
    }
}

/// Answers a structured-output request whose schema has a `label` enum: the label sharing a
/// stem with the text, else one chosen by hash. A schema with a `score` property gets a judge's
/// answer.
pub fn structured_answer(schema: &serde_json::Value, text: &str) -> String {
    let labels: Vec<&str> = schema
        .pointer("/properties/label/enum")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if labels.is_empty() {
        if schema.pointer("/properties/score").is_some() {
            // A judge: grounded unless the text says otherwise.
            let score = if text.to_lowercase().contains("ungrounded") { 0.2 } else { 0.9 };
            return serde_json::json!({ "score": score, "reason": "simulated judgement" })
                .to_string();
        }
        return "{}".into();
    }
    let lower = text.to_lowercase();
    let (label, confidence) = match labels.iter().find(|l| {
        let stem: String = l.chars().take(4).collect();
        lower.split(|c: char| !c.is_alphanumeric()).any(|w| w.starts_with(&stem))
    }) {
        Some(l) => (*l, 0.9),
        None => (labels[(stable_hash(&[text.as_bytes()]) % labels.len() as u64) as usize], 0.4),
    };
    serde_json::json!({ "label": label, "confidence": confidence }).to_string()
}

/// Feature-hashed bag of words, L2-normalised.
pub fn embed_text(text: &str, dim: usize) -> Vec<f32> {
    let mut v = vec![0f32; dim];
    for word in text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
        let h = stable_hash(&[word.as_bytes()]);
        let sign = if h & 1 == 0 { 1.0 } else { -1.0 };
        v[(h >> 1) as usize % dim] += sign;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The first `max_chars` characters of the text, cut at a word boundary.
pub fn summarize(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if out.chars().count() + word.chars().count() + 1 > max_chars {
            out.push('…');
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_texts_have_similar_embeddings() {
        let a = embed_text("refund for a double charge on my invoice", 64);
        let b = embed_text("how do I get a refund for a charge", 64);
        let c = embed_text("kubernetes pod crashloop after upgrade", 64);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!(dot(&a, &b) > dot(&a, &c));
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
    }
}
