//! The cost event record (`schemas/cost_event.avsc`): one model call, or cache hit, and what it
//! cost.

use serde::{Deserialize, Serialize};

use crate::avro::SchemaKind;

/// One model call (or cache hit) and what it cost (`schemas/cost_event.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostEvent {
    pub event_id: String,
    pub timestamp_ms: i64,
    pub tenant: String,
    pub pipeline: String,
    pub stage: String,
    pub document_id: String,
    pub provider: String,
    pub model_requested: String,
    pub model_served: String,
    pub prompt_version: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub estimated: bool,
    pub cost_micro_usd: i64,
    pub latency_ms: i64,
    /// `ok`, or the failure class (`rate_limited`, `unavailable`, `rejected`, `unauthorized`).
    pub outcome: String,
    pub trace_id: Option<String>,
    pub operation: String,
    pub cached: bool,
    pub attempt: i32,
    pub call_index: i32,
    pub response_id: Option<String>,
    pub price_set_on: Option<String>,
    pub budget: Option<String>,
    /// Why the call was made when not for the stage's own answer (`semantic_lookup`), or
    /// `semantic_hit` on the event of an answer reused from the semantic cache.
    #[serde(default)]
    pub purpose: Option<String>,
}

impl CostEvent {
    pub fn to_value(&self) -> Result<apache_avro::types::Value, apache_avro::Error> {
        apache_avro::to_value(self)?.resolve(SchemaKind::CostEvent.schema())
    }

    pub fn from_value(value: &apache_avro::types::Value) -> Result<Self, apache_avro::Error> {
        apache_avro::from_value(value)
    }
}

#[cfg(test)]
impl CostEvent {
    /// A successful chat call for unit tests to vary with struct update syntax: 10 tokens in,
    /// 5 out, no cost, 1 ms.
    pub(crate) fn sample() -> Self {
        CostEvent {
            event_id: "e".into(),
            timestamp_ms: 1,
            tenant: "t".into(),
            pipeline: "p".into(),
            stage: "s".into(),
            document_id: "d".into(),
            provider: "m".into(),
            model_requested: "x".into(),
            model_served: "x".into(),
            prompt_version: None,
            input_tokens: 10,
            output_tokens: 5,
            cached_tokens: 0,
            estimated: false,
            cost_micro_usd: 0,
            latency_ms: 1,
            outcome: "ok".into(),
            trace_id: None,
            operation: "chat".into(),
            cached: false,
            attempt: 1,
            call_index: 0,
            response_id: None,
            price_set_on: None,
            budget: None,
            purpose: None,
        }
    }
}
