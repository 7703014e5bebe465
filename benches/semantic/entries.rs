//! Semantic cache entries as the gateway will store them: a chat answer with the cost event of
//! the call that paid for it, under a key of stage `answer`, prompt `v1`, model `small`.

use sluice::call::CostEvent;
use sluice::policy::cache::{Answer, Entry};
use sluice::policy::semantic::{Scope, SemanticEntry, SemanticKey};

pub const EMBEDDING: &str = "all-MiniLM-L6-v2";

pub fn key(scope: Scope) -> SemanticKey {
    SemanticKey {
        stage: "answer".into(),
        prompt_version: Some("v1".into()),
        model: "small".into(),
        embedding: EMBEDDING.into(),
        scope,
    }
}

pub fn tenant(t: &str) -> SemanticKey {
    key(Scope::Tenant(t.to_owned()))
}

/// An entry for `text` answered with `answer`, created at `created_ms`, never expiring.
pub fn entry(
    key: SemanticKey,
    text: String,
    vector: Vec<f32>,
    document_id: String,
    answer: String,
    created_ms: i64,
) -> SemanticEntry {
    let tenant = match &key.scope {
        Scope::Tenant(t) => t.clone(),
        Scope::Global => "global".into(),
    };
    let event = CostEvent {
        event_id: format!("{document_id}-call"),
        timestamp_ms: created_ms,
        tenant,
        pipeline: "support".into(),
        stage: key.stage.clone(),
        document_id: document_id.clone(),
        provider: "openai".into(),
        model_requested: key.model.clone(),
        model_served: key.model.clone(),
        prompt_version: key.prompt_version.clone(),
        input_tokens: 420,
        output_tokens: 180,
        cached_tokens: 0,
        estimated: false,
        cost_micro_usd: 171,
        latency_ms: 900,
        outcome: "ok".into(),
        trace_id: None,
        operation: "chat".into(),
        cached: false,
        attempt: 1,
        call_index: 0,
        response_id: Some(format!("chatcmpl-{document_id}")),
        price_set_on: Some("2026-12-01".into()),
        budget: None,
        purpose: None,
    };
    SemanticEntry {
        key,
        text,
        vector,
        document_id,
        created_ms,
        expires_ms: i64::MAX,
        cached: Entry {
            answer: Answer::Chat {
                text: answer,
                model: "gpt-4o-mini-2024-07-18".into(),
                input_tokens: 420,
                output_tokens: 180,
                cached_tokens: 0,
                estimated: false,
                finish_reason: "stop".into(),
            },
            served: "small".into(),
            provider: "openai".into(),
            model_name: "gpt-4o-mini".into(),
            event,
        },
    }
}
