//! Events of the policy plane: model calls, fallbacks and breaker transitions.

use std::time::Duration;

use super::metrics;

pub struct ModelCalled<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// `ok` or a [`crate::provider::ProviderError::class`].
    pub outcome: &'static str,
    pub latency: Duration,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl ModelCalled<'_> {
    pub fn emit(self) {
        let m = metrics();
        m.model_calls.with_label_values(&[self.provider, self.model, self.outcome]).inc();
        if self.outcome == "ok" {
            m.model_call_seconds
                .with_label_values(&[self.provider, self.model])
                .observe(self.latency.as_secs_f64());
            m.model_tokens
                .with_label_values(&[self.provider, self.model, "input"])
                .inc_by(self.input_tokens);
            m.model_tokens
                .with_label_values(&[self.provider, self.model, "output"])
                .inc_by(self.output_tokens);
        }
        tracing::debug!(
            gen_ai.provider.name = self.provider,
            gen_ai.request.model = self.model,
            gen_ai.usage.input_tokens = self.input_tokens,
            gen_ai.usage.output_tokens = self.output_tokens,
            outcome = self.outcome,
            latency_ms = self.latency.as_millis() as u64,
            "model call"
        );
    }
}

pub struct FallbackTaken<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub next: &'a str,
    pub error: &'a str,
}

impl FallbackTaken<'_> {
    pub fn emit(self) {
        metrics().fallbacks.with_label_values(&[self.provider, self.model]).inc();
        tracing::debug!(
            provider = self.provider,
            model = self.model,
            next = self.next,
            error = self.error,
            "model failed; trying its fallback"
        );
    }
}

pub struct BreakerTransition<'a> {
    pub provider: &'a str,
    pub from: &'static str,
    pub to: &'static str,
}

impl BreakerTransition<'_> {
    pub fn emit(self) {
        let level = match self.to {
            "closed" => 0,
            "half_open" => 1,
            _ => 2,
        };
        metrics().breaker_state.with_label_values(&[self.provider]).set(level);
        if self.to == "open" {
            tracing::warn!(
                provider = self.provider,
                from = self.from,
                to = self.to,
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                provider = self.provider,
                from = self.from,
                to = self.to,
                "circuit breaker transition"
            );
        }
    }
}
