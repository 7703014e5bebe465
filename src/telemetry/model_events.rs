//! Events of the policy plane: model calls (with their cost), fallbacks, breaker transitions and
//! waits on the client-side rate limiters.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec};

use super::metrics;

/// `sluice_limiter_wait_seconds{provider, model}`, registered in the one registry on first use.
fn limiter_wait() -> &'static HistogramVec {
    static WAIT: OnceLock<HistogramVec> = OnceLock::new();
    WAIT.get_or_init(|| {
        let h = HistogramVec::new(
            HistogramOpts::new(
                "limiter_wait_seconds",
                "Time calls waited for a client-side rate limit (requests and tokens).",
            )
            .buckets(vec![0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            &["provider", "model"],
        )
        .expect("valid");
        metrics().registry.register(Box::new(h.clone())).expect("unique metric");
        h
    })
}

/// One call to one model ended (answered, failed, or cut off by a stage deadline).
pub struct ModelCalled<'a> {
    /// The calling stage (closed set: the topology's stage names).
    pub stage: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    /// `ok` or a [`crate::provider::ProviderError::class`].
    pub outcome: &'static str,
    pub latency: Duration,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// What the call's cost event records: the price of its tokens, 0 for a failed call, the
    /// most it could cost for a cancelled one.
    pub cost_micro_usd: u64,
}

impl ModelCalled<'_> {
    pub fn emit(self) {
        let m = metrics();
        let (stage, provider, model) = (self.stage, self.provider, self.model);
        m.model_calls.with_label_values(&[stage, provider, model, self.outcome]).inc();
        m.model_cost.with_label_values(&[stage, provider, model]).inc_by(self.cost_micro_usd);
        if self.outcome == "ok" {
            m.model_call_seconds
                .with_label_values(&[provider, model])
                .observe(self.latency.as_secs_f64());
            m.model_tokens
                .with_label_values(&[stage, provider, model, "input"])
                .inc_by(self.input_tokens);
            m.model_tokens
                .with_label_values(&[stage, provider, model, "output"])
                .inc_by(self.output_tokens);
        }
        tracing::debug!(
            stage = self.stage,
            gen_ai.provider.name = self.provider,
            gen_ai.request.model = self.model,
            gen_ai.usage.input_tokens = self.input_tokens,
            gen_ai.usage.output_tokens = self.output_tokens,
            outcome = self.outcome,
            cost_micro_usd = self.cost_micro_usd,
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

/// A provider's breaker was built (closed): its state reads 0 from the start, so dashboards and
/// the breaker alert see every provider, not only those whose breaker has moved.
pub struct BreakerCreated<'a> {
    pub provider: &'a str,
}

impl BreakerCreated<'_> {
    pub fn emit(self) {
        metrics().breaker_state.with_label_values(&[self.provider]).set(0);
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

/// A call waited for the rate limits of its (provider, model); observed for every limited call,
/// zero waits included, so the histogram's count is the number of limited calls.
pub struct LimiterWaited<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub waited: Duration,
}

impl LimiterWaited<'_> {
    pub fn emit(self) {
        limiter_wait()
            .with_label_values(&[self.provider, self.model])
            .observe(self.waited.as_secs_f64());
        if self.waited >= Duration::from_secs(1) {
            tracing::debug!(
                provider = self.provider,
                model = self.model,
                waited_ms = self.waited.as_millis() as u64,
                "call waited for a rate limit"
            );
        }
    }
}
