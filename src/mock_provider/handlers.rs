//! Request handlers of the mock server, in each API's own request and response shapes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ledger::CallEntry;
use super::{Hold, LatencyDist, MockState};
use crate::provider::{embed_text, stable_hash, structured_answer, summarize};
use crate::tokens;

type Shared = State<Arc<MockState>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

/// A uniform number in [0, 1) from the call sequence.
fn unit(state: &MockState, salt: &[u8]) -> f64 {
    let n = state.seq.fetch_add(1, Ordering::Relaxed);
    (stable_hash(&[salt, &n.to_le_bytes()]) >> 11) as f64 / (1u64 << 53) as f64
}

fn latency(state: &MockState) -> Duration {
    let c = &state.config;
    let extra = match c.dist {
        LatencyDist::Fixed => 0.0,
        LatencyDist::Uniform => unit(state, b"lat") * c.jitter.as_secs_f64(),
        LatencyDist::Exponential => -(1.0 - unit(state, b"lat")).ln() * c.jitter.as_secs_f64(),
    };
    c.latency + Duration::from_secs_f64(extra)
}

fn error_body(api: Api, status: u16, message: &str) -> Value {
    match api {
        Api::OpenAi => {
            json!({ "error": { "message": message, "type": "server_error", "code": status } })
        }
        Api::Anthropic => {
            json!({ "type": "error", "error": { "type": if status == 429 { "rate_limit_error" } else { "api_error" }, "message": message } })
        }
    }
}

fn reply(status: u16, body: Value, wait: Option<Duration>) -> Response {
    let mut response =
        (StatusCode::from_u16(status).expect("valid status"), Json(body)).into_response();
    if let Some(w) = wait {
        let h = response.headers_mut();
        let secs = w.as_secs_f64().ceil().max(1.0) as u64;
        h.insert("retry-after", HeaderValue::from(secs));
        h.insert("retry-after-ms", HeaderValue::from(w.as_millis() as u64));
        let reset = HeaderValue::from_str(&format!("{}ms", w.as_millis())).expect("ascii");
        h.insert("x-ratelimit-reset-requests", reset);
    }
    response
}

impl MockState {
    fn record(
        &self,
        api: &'static str,
        model: &str,
        status: u16,
        inputs: usize,
        tokens: (u64, u64),
        response_id: Option<String>,
    ) {
        let billed = (200..300).contains(&status);
        let price = self.config.prices.get(model).copied().unwrap_or_default();
        let entry = CallEntry {
            at_us: self.started.elapsed().as_micros() as u64,
            api,
            model: model.to_owned(),
            status,
            inputs,
            input_tokens: tokens.0,
            output_tokens: tokens.1,
            cost_micro_usd: if billed { price.cost(tokens.0, 0, tokens.1) } else { 0 },
            response_id,
        };
        self.ledger.lock().expect("ledger lock").record(entry);
    }

    /// Takes one request from the per-minute bucket, or says how long until one is free.
    fn admit(&self) -> Result<(), Duration> {
        let Some(rpm) = self.config.rpm else { return Ok(()) };
        let rate = f64::from(rpm) / 60.0;
        let capacity = rate.max(1.0);
        let mut b = self.bucket.lock().expect("bucket lock");
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(capacity);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.0) / rate))
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.config.api_key else { return true };
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        get("authorization") == Some(&format!("Bearer {key}"))
            || get("api-key") == Some(key)
            || get("x-api-key") == Some(key)
    }

    /// The checks every call goes through, in a real provider's order: auth, rate limit,
    /// then (after the latency) injected faults. `Err` is the response to send.
    /// Waits while the door is held; `true` when this request waited and must be rejected.
    async fn held(&self) -> bool {
        let mut rx = self.hold.subscribe();
        if *rx.borrow_and_update() != Hold::Holding {
            return false;
        }
        let released = rx.wait_for(|h| *h != Hold::Holding).await.map(|h| *h);
        matches!(released, Ok(Hold::Released { reject: true }))
    }

    async fn gate(
        &self,
        api: Api,
        label: &'static str,
        model: &str,
        headers: &HeaderMap,
    ) -> Result<(), Response> {
        if self.held().await {
            self.record(label, model, 503, 0, (0, 0), None);
            return Err(reply(503, error_body(api, 503, "request dropped while held"), None));
        }
        if !self.authorized(headers) {
            self.record(label, model, 401, 0, (0, 0), None);
            return Err(reply(401, error_body(api, 401, "invalid api key"), None));
        }
        if let Err(wait) = self.admit() {
            self.record(label, model, 429, 0, (0, 0), None);
            return Err(reply(
                429,
                error_body(api, 429, "rate limit: requests per minute"),
                Some(wait),
            ));
        }
        tokio::time::sleep(latency(self)).await;
        let forced = self.faults.lock().expect("faults lock").get(model).copied();
        if let Some(status) = forced {
            self.record(label, model, status, 0, (0, 0), None);
            let wait = (status == 429).then_some(self.config.retry_after);
            return Err(reply(status, error_body(api, status, "injected fault"), wait));
        }
        if unit(self, b"429") < self.config.rate_limit_rate {
            self.record(label, model, 429, 0, (0, 0), None);
            return Err(reply(
                429,
                error_body(api, 429, "injected rate limit"),
                Some(self.config.retry_after),
            ));
        }
        if unit(self, b"err") < self.config.error_rate {
            self.record(label, model, 503, 0, (0, 0), None);
            return Err(reply(503, error_body(api, 503, "injected server error"), None));
        }
        Ok(())
    }
}

/// The answer text for a chat: structured output when a schema is given, else a summary.
fn answer(model: &str, schema: Option<&Value>, user: &str, max_tokens: u64) -> String {
    match schema {
        Some(s) => structured_answer(s, user),
        None => format!("[{model}] {}", summarize(user, (max_tokens as usize).saturating_mul(3))),
    }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()
        }
        _ => String::new(),
    }
}

async fn chat(state: Arc<MockState>, headers: HeaderMap, body: Value, model: String) -> Response {
    if let Err(r) = state.gate(Api::OpenAi, "chat", &model, &headers).await {
        return r;
    }
    let messages = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let prompt: String =
        messages.iter().map(|m| text_of(&m["content"])).collect::<Vec<_>>().join("\n");
    let user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let max_tokens = body
        .get("max_tokens")
        .or(body.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(256);
    let schema = body.pointer("/response_format/json_schema/schema");
    let text = answer(&model, schema, &user, max_tokens);
    let (input, output) =
        (tokens::count(&model, &prompt) as u64, tokens::count(&model, &text) as u64);
    let id = state.seq.fetch_add(1, Ordering::Relaxed);
    state.record("chat", &model, 200, 1, (input, output), Some(format!("chatcmpl-mock-{id}")));
    Json(json!({
        "id": format!("chatcmpl-mock-{id}"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": "stop",
        }],
        "usage": { "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output },
    }))
    .into_response()
}

async fn embeddings(
    state: Arc<MockState>,
    headers: HeaderMap,
    body: Value,
    model: String,
) -> Response {
    if let Err(r) = state.gate(Api::OpenAi, "embeddings", &model, &headers).await {
        return r;
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let dim = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(state.config.embedding_dim, |d| d as usize);
    let input: u64 = inputs.iter().map(|t| tokens::count(&model, t) as u64).sum();
    state.record("embeddings", &model, 200, inputs.len(), (input, 0), None);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({ "object": "embedding", "index": i, "embedding": embed_text(t, dim) }))
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": input, "total_tokens": input },
    }))
    .into_response()
}

fn model_of(body: &Value) -> String {
    body.get("model").and_then(Value::as_str).unwrap_or("unknown").to_owned()
}

pub async fn openai_chat(
    State(s): Shared,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let model = model_of(&body);
    chat(s, headers, body, model).await
}

pub async fn openai_embeddings(
    State(s): Shared,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let model = model_of(&body);
    embeddings(s, headers, body, model).await
}

pub async fn azure_chat(
    State(s): Shared,
    Path(deployment): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    chat(s, headers, body, deployment).await
}

pub async fn azure_embeddings(
    State(s): Shared,
    Path(deployment): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    embeddings(s, headers, body, deployment).await
}

pub async fn anthropic_messages(
    State(state): Shared,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let model = model_of(&body);
    if headers.get("anthropic-version").is_none() {
        return reply(
            400,
            error_body(Api::Anthropic, 400, "anthropic-version header is required"),
            None,
        );
    }
    if let Err(r) = state.gate(Api::Anthropic, "messages", &model, &headers).await {
        return r;
    }
    let system = text_of(body.get("system").unwrap_or(&Value::Null));
    let messages = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let schema = system
        .split_once("JSON schema: ")
        .and_then(|(_, s)| serde_json::from_str::<Value>(s.trim()).ok());
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(256);
    let text = answer(&model, schema.as_ref(), &user, max_tokens);
    let (input, output) = (
        tokens::count(&model, &format!("{system}\n{user}")) as u64,
        tokens::count(&model, &text) as u64,
    );
    let id = state.seq.fetch_add(1, Ordering::Relaxed);
    state.record("messages", &model, 200, 1, (input, output), Some(format!("msg_mock_{id}")));
    Json(json!({
        "id": format!("msg_mock_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{ "type": "text", "text": text }],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": { "input_tokens": input, "output_tokens": output },
    }))
    .into_response()
}

pub async fn ledger(State(state): Shared) -> Json<Value> {
    let l = state.ledger.lock().expect("ledger lock").clone();
    Json(serde_json::to_value(l).expect("ledger serializes"))
}

pub async fn reset(State(state): Shared) -> StatusCode {
    *state.ledger.lock().expect("ledger lock") = Default::default();
    state.faults.lock().expect("faults lock").clear();
    StatusCode::NO_CONTENT
}

pub async fn set_fault(
    State(state): Shared,
    Path(model): Path<String>,
    Json(body): Json<Value>,
) -> StatusCode {
    match body.get("status").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok()) {
        Some(status) if (400..=599).contains(&status) => {
            state.faults.lock().expect("faults lock").insert(model, status);
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

pub async fn clear_faults(State(state): Shared) -> StatusCode {
    state.faults.lock().expect("faults lock").clear();
    StatusCode::NO_CONTENT
}
