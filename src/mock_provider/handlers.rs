//! Request handlers of the mock server, in each API's own request and response shapes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::gate::{error_body, reply, Api};
use super::MockState;
use crate::provider::{embed_text, structured_answer, summarize};
use crate::tokens;

type Shared = State<Arc<MockState>>;

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
    let _in_flight = match state.gate(Api::OpenAi, "chat", &model, &headers).await {
        Ok(guard) => guard,
        Err(r) => return r,
    };
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
    let _in_flight = match state.gate(Api::OpenAi, "embeddings", &model, &headers).await {
        Ok(guard) => guard,
        Err(r) => return r,
    };
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
    let _in_flight = match state.gate(Api::Anthropic, "messages", &model, &headers).await {
        Ok(guard) => guard,
        Err(r) => return r,
    };
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
