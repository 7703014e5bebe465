//! The mock server's own record of what it served and billed: the ground truth tests and cost
//! reconciliation compare sluice against.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ModelTotals {
    /// Calls answered 2xx (billed).
    pub calls: u64,
    /// Calls answered 5xx (injected errors or faults).
    pub errors: u64,
    /// Calls answered 429.
    pub rate_limited: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micro_usd: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallEntry {
    /// Microseconds since the server started.
    pub at_us: u64,
    pub api: &'static str,
    pub model: String,
    pub status: u16,
    pub inputs: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// What the call was billed, by the mock's price for the model (0 when not billed).
    pub cost_micro_usd: u64,
    /// The id in the response body (chat and messages; OpenAI's embeddings have none).
    pub response_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Ledger {
    pub models: BTreeMap<String, ModelTotals>,
    pub calls: Vec<CallEntry>,
}

impl Ledger {
    pub fn record(&mut self, entry: CallEntry) {
        let t = self.models.entry(entry.model.clone()).or_default();
        match entry.status {
            200..=299 => {
                t.calls += 1;
                t.input_tokens += entry.input_tokens;
                t.output_tokens += entry.output_tokens;
                t.cost_micro_usd += entry.cost_micro_usd;
            }
            429 => t.rate_limited += 1,
            _ => t.errors += 1,
        }
        self.calls.push(entry);
    }

    /// Billed calls across all models.
    pub fn billed_calls(&self) -> u64 {
        self.models.values().map(|t| t.calls).sum()
    }

    /// Everything billed, in micro-dollars.
    pub fn billed_micro_usd(&self) -> u64 {
        self.models.values().map(|t| t.cost_micro_usd).sum()
    }

    pub fn rate_limited(&self) -> u64 {
        self.models.values().map(|t| t.rate_limited).sum()
    }

    pub fn totals(&self, model: &str) -> ModelTotals {
        self.models.get(model).cloned().unwrap_or_default()
    }
}
