//! `anthropic`: the Messages API. Structured output is asked for in the system prompt with the
//! JSON schema; the stage validates what comes back, as it does for every provider.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use super::http;
use super::{ChatRequest, ChatResponse, ProviderBuildError, ProviderError};
use crate::config::HttpSpec;

#[derive(Debug, Clone)]
pub struct Anthropic {
    name: String,
    url: String,
    headers: reqwest::header::HeaderMap,
    client: reqwest::Client,
    model_names: std::collections::BTreeMap<String, String>,
}

impl Anthropic {
    pub fn new(name: &str, spec: &HttpSpec, timeout: Duration) -> Result<Self, ProviderBuildError> {
        let key = spec.api_key.as_ref().map(http::load_secret).transpose()?;
        let mut headers = http::base_headers(spec)?;
        if let Some(key) = key {
            http::insert_secret(&mut headers, "x-api-key", key.expose())?;
        }
        let version =
            reqwest::header::HeaderValue::from_str(&spec.anthropic_version).map_err(|source| {
                ProviderBuildError::HeaderValue { name: "anthropic_version".into(), source }
            })?;
        headers.insert("anthropic-version", version);
        Ok(Self {
            name: name.to_owned(),
            url: format!("{}/v1/messages", spec.base_url),
            headers,
            client: http::client(timeout),
            model_names: spec.model_names.clone(),
        })
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let model = self.model_names.get(&req.model).unwrap_or(&req.model);
        let system = match &req.json_schema {
            Some(schema) => format!(
                "{}\n\nReply with one JSON object and nothing else. It must match this JSON \
                 schema: {schema}",
                req.system
            ),
            None => req.system.clone(),
        };
        let body = json!({
            "model": model,
            "max_tokens": req.max_tokens,
            "system": system,
            "messages": [{ "role": "user", "content": req.user }],
        });
        let started = Instant::now();
        let value =
            http::post_json(&self.client, &self.name, self.url.clone(), &self.headers, &body)
                .await?;
        let latency = started.elapsed();
        let parsed: Message = serde_json::from_value(value).map_err(|e| {
            ProviderError::unavailable(format!("{}: unexpected messages response: {e}", self.name))
        })?;
        let text: String = parsed
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .collect();
        Ok(ChatResponse {
            text,
            model: parsed.model.unwrap_or_else(|| model.clone()),
            input_tokens: parsed.usage.input_tokens + parsed.usage.cache_read_input_tokens,
            output_tokens: parsed.usage.output_tokens,
            cached_tokens: parsed.usage.cache_read_input_tokens,
            tokens_estimated: false,
            finish_reason: parsed.stop_reason.unwrap_or_else(|| "unknown".into()),
            latency,
            response_id: parsed.id,
        })
    }
}

#[derive(Deserialize)]
struct Message {
    id: Option<String>,
    model: Option<String>,
    content: Vec<Block>,
    stop_reason: Option<String>,
    usage: Usage,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
}
