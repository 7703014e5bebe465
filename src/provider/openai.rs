//! `openai`: the OpenAI-compatible chat-completions and embeddings API. One implementation
//! serves OpenAI, Azure OpenAI (deployments and `api-version`), vLLM, Ollama, llama.cpp server,
//! TGI/TEI and LiteLLM: the base URL, headers and model names are configuration.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::http;
use super::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, ProviderBuildError, ProviderError,
};
use crate::config::HttpSpec;
use crate::tokens;

#[derive(Debug, Clone)]
pub struct OpenAi {
    name: String,
    base_url: String,
    azure_api_version: Option<String>,
    headers: reqwest::header::HeaderMap,
    client: reqwest::Client,
    model_names: std::collections::BTreeMap<String, String>,
    embedding_dimensions: Option<usize>,
}

impl OpenAi {
    pub fn new(name: &str, spec: &HttpSpec, timeout: Duration) -> Result<Self, ProviderBuildError> {
        let key = spec.api_key.as_ref().map(http::load_secret).transpose()?;
        let mut headers = http::base_headers(spec)?;
        if let Some(key) = key {
            match spec.azure_api_version {
                Some(_) => http::insert_secret(&mut headers, "api-key", key.expose())?,
                None => http::insert_secret(
                    &mut headers,
                    "authorization",
                    &format!("Bearer {}", key.expose()),
                )?,
            }
        }
        Ok(Self {
            name: name.to_owned(),
            base_url: spec.base_url.clone(),
            azure_api_version: spec.azure_api_version.clone(),
            headers,
            client: http::client(timeout),
            model_names: spec.model_names.clone(),
            embedding_dimensions: spec.embedding_dimensions,
        })
    }

    /// Azure addresses the deployment in the path; everyone else names the model in the body.
    fn url(&self, model: &str, op: &str) -> String {
        match &self.azure_api_version {
            Some(v) => format!("{}/openai/deployments/{model}/{op}?api-version={v}", self.base_url),
            None => format!("{}/{op}", self.base_url),
        }
    }

    async fn post(&self, url: String, body: &Value) -> Result<Value, ProviderError> {
        http::post_json(&self.client, &self.name, url, &self.headers, body).await
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let model = self.model_names.get(&req.model).unwrap_or(&req.model);
        let mut body = json!({
            "model": model,
            "messages": [
                { "role": "system", "content": req.system },
                { "role": "user", "content": req.user },
            ],
            "max_tokens": req.max_tokens,
        });
        if let Some(schema) = &req.json_schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": { "name": "answer", "schema": schema, "strict": true },
            });
        }
        let started = Instant::now();
        let value = self.post(self.url(model, "chat/completions"), &body).await?;
        let latency = started.elapsed();
        let parsed: ChatCompletion = serde_json::from_value(value).map_err(|e| {
            ProviderError::unavailable(format!("{}: unexpected chat response: {e}", self.name))
        })?;
        let choice = parsed.choices.into_iter().next().ok_or_else(|| {
            ProviderError::unavailable(format!("{}: chat response has no choices", self.name))
        })?;
        let text = choice.message.content.unwrap_or_default();
        let (input_tokens, output_tokens, cached_tokens, estimated) = match parsed.usage {
            Some(u) => (
                u.prompt_tokens,
                u.completion_tokens,
                u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
                false,
            ),
            None => (
                (tokens::count(model, &req.system) + tokens::count(model, &req.user)) as u64,
                tokens::count(model, &text) as u64,
                0,
                true,
            ),
        };
        Ok(ChatResponse {
            text,
            model: parsed.model.unwrap_or_else(|| model.clone()),
            input_tokens,
            output_tokens,
            cached_tokens,
            tokens_estimated: estimated,
            finish_reason: choice.finish_reason.unwrap_or_else(|| "unknown".into()),
            latency,
            response_id: parsed.id,
        })
    }

    pub async fn embed(&self, req: &EmbedRequest) -> Result<EmbedResponse, ProviderError> {
        let model = self.model_names.get(&req.model).unwrap_or(&req.model);
        let mut body = json!({ "model": model, "input": req.inputs });
        if let Some(d) = self.embedding_dimensions {
            body["dimensions"] = json!(d);
        }
        let value = self.post(self.url(model, "embeddings"), &body).await?;
        let parsed: Embeddings = serde_json::from_value(value).map_err(|e| {
            ProviderError::unavailable(format!(
                "{}: unexpected embeddings response: {e}",
                self.name
            ))
        })?;
        let mut data = parsed.data;
        data.sort_by_key(|d| d.index);
        let (input_tokens, estimated) = match parsed.usage {
            Some(u) => (u.prompt_tokens, false),
            None => (req.inputs.iter().map(|t| tokens::count(model, t) as u64).sum(), true),
        };
        Ok(EmbedResponse {
            vectors: data.into_iter().map(|d| d.embedding).collect(),
            model: parsed.model.unwrap_or_else(|| model.clone()),
            input_tokens,
            tokens_estimated: estimated,
            response_id: parsed.id,
        })
    }
}

#[derive(Deserialize)]
struct ChatCompletion {
    id: Option<String>,
    model: Option<String>,
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct Embeddings {
    id: Option<String>,
    model: Option<String>,
    data: Vec<EmbeddingItem>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}
