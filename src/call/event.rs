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
}

impl CostEvent {
    pub fn to_value(&self) -> Result<apache_avro::types::Value, apache_avro::Error> {
        apache_avro::to_value(self)?.resolve(SchemaKind::CostEvent.schema())
    }

    pub fn from_value(value: &apache_avro::types::Value) -> Result<Self, apache_avro::Error> {
        apache_avro::from_value(value)
    }
}
