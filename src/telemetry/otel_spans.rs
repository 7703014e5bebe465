//! The spans of sluice's traces, built here so the runner and the policy plane each add a line:
//! a record's handling by a stage (the OpenTelemetry messaging conventions), each model call (the
//! GenAI conventions and sluice's own `sluice.*` attributes), each produce, and the waits on rate
//! limiters, budgets and retry backoff.
//!
//! The W3C `traceparent` header links them across topics: a record's span is a child of the span
//! its header names ([`record_span`]), and everything produced for the record carries the record
//! span's own ([`continue_trace`]). A missing or malformed header starts a new trace.
//!
//! Without an exporter no layer wants these spans: every constructor returns a disabled span,
//! which costs nothing, and headers pass through untouched.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every span sluice exports; the log layer never sees it.
pub const SPAN_TARGET: &str = "sluice::trace";

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// A Kafka header as the runner carries it: key and value (Kafka allows none).
type Header = (String, Option<Vec<u8>>);

/// The trace-context headers of a record, for the W3C propagator.
struct Headers<'a>(&'a [Header]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let (_, value) = self.0.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(key))?;
        std::str::from_utf8(value.as_deref()?).ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// What the propagator writes for a span.
#[derive(Default)]
struct Injected(Vec<(String, String)>);

impl Injector for Injected {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// The span of one record's handling by `stage` (consumer group `group`), from dispatch to every
/// output acknowledged: a child of the span the record's `traceparent` names, or the root of a
/// new trace when it has none (or one that does not parse).
pub fn record_span(
    stage: &str,
    group: &str,
    message: &impl rdkafka::Message,
    headers: &[Header],
) -> Span {
    let topic = message.topic();
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "process",
        "otel.name" = format!("process {topic}"),
        "otel.kind" = "consumer",
        "messaging.system" = "kafka",
        "messaging.operation.type" = "process",
        "messaging.operation.name" = "process",
        "messaging.destination.name" = topic,
        "messaging.destination.partition.id" = %message.partition(),
        "messaging.kafka.offset" = message.offset(),
        "messaging.consumer.group.name" = group,
        "sluice.stage" = stage,
    );
    if !span.is_disabled() {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        // Set before the span is first used, so this cannot fail for a fresh span.
        let _ = span.set_parent(parent);
    }
    span
}

/// Makes `headers` carry `span`'s trace context instead of the one they came with, so every
/// record produced from them (outputs, retries, deferrals, dead letters, cost events) continues
/// the trace below this span. Leaves them untouched when the span is not exported.
pub fn continue_trace(span: &Span, headers: &mut Vec<Header>) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    let mut injected = Injected::default();
    TraceContextPropagator::new().inject_context(&cx, &mut injected);
    headers.retain(|(k, _)| {
        !k.eq_ignore_ascii_case(TRACEPARENT) && !k.eq_ignore_ascii_case(TRACESTATE)
    });
    headers.extend(injected.0.into_iter().map(|(k, v)| (k, Some(v.into_bytes()))));
}

/// A model call about to be made (one hop of a fallback chain), or answered from the cache.
pub struct ModelCall<'a> {
    /// `chat` or `embeddings`.
    pub operation: &'a str,
    /// The kind of provider (`openai`, `anthropic`, `simulated`).
    pub provider: &'a str,
    /// The topology's name for the provider endpoint.
    pub endpoint: &'a str,
    /// The provider's model name.
    pub model: &'a str,
    pub tenant: &'a str,
    pub prompt_version: Option<&'a str>,
    pub attempt: u32,
}

/// What a model call used and returned.
pub struct ModelUsage<'a> {
    pub response_model: &'a str,
    pub response_id: Option<&'a str>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micro_usd: u64,
    /// `ok`, or the error class of the failure.
    pub outcome: &'a str,
}

impl ModelCall<'_> {
    /// The span of the call, a child of the current span; [`ModelCall::finished`] records its
    /// answer. It covers the waits for the budget and the rate limiter too.
    pub fn span(&self) -> Span {
        self.start(false)
    }

    /// Records a call answered from the response cache (no provider call, no cost).
    pub fn cache_hit(&self, usage: &ModelUsage<'_>) {
        Self::finished(&self.start(true), usage);
    }

    fn start(&self, cached: bool) -> Span {
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "model call",
            "otel.name" = format!("{} {}", self.operation, self.model),
            "otel.kind" = "client",
            "otel.status_code" = Empty,
            "gen_ai.operation.name" = self.operation,
            "gen_ai.provider.name" = self.provider,
            "gen_ai.request.model" = self.model,
            "gen_ai.response.model" = Empty,
            "gen_ai.response.id" = Empty,
            "gen_ai.usage.input_tokens" = Empty,
            "gen_ai.usage.output_tokens" = Empty,
            "error.type" = Empty,
            "sluice.provider" = self.endpoint,
            "sluice.tenant" = Empty,
            "sluice.prompt.version" = self.prompt_version,
            "sluice.attempt" = self.attempt,
            "sluice.cached" = cached,
            "sluice.cost.usd" = Empty,
        );
        if !self.tenant.is_empty() {
            span.record("sluice.tenant", self.tenant);
        }
        span
    }

    /// Records the answer (or the failure) of a call on its span.
    pub fn finished(span: &Span, usage: &ModelUsage<'_>) {
        span.record("gen_ai.response.model", usage.response_model);
        if let Some(id) = usage.response_id {
            span.record("gen_ai.response.id", id);
        }
        span.record("gen_ai.usage.input_tokens", usage.input_tokens);
        span.record("gen_ai.usage.output_tokens", usage.output_tokens);
        span.record("sluice.cost.usd", usage.cost_micro_usd as f64 / 1e6);
        if usage.outcome != "ok" {
            span.record("error.type", usage.outcome);
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The span of one produce, a child of the current span (the record's); none outside one.
pub fn send_span(topic: &str) -> Span {
    if Span::current().is_disabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: SPAN_TARGET,
        "send",
        "otel.name" = format!("send {topic}"),
        "otel.kind" = "producer",
        "otel.status_code" = Empty,
        "messaging.system" = "kafka",
        "messaging.operation.type" = "send",
        "messaging.operation.name" = "send",
        "messaging.destination.name" = topic,
        "messaging.destination.partition.id" = Empty,
        "messaging.kafka.offset" = Empty,
        "error.type" = Empty,
    )
}

/// Records where a produce landed, or the broker's error code.
pub fn sent(span: &Span, result: Result<(i32, i64), &rdkafka::error::KafkaError>) {
    match result {
        Ok((partition, offset)) => {
            span.record("messaging.destination.partition.id", tracing::field::display(partition));
            span.record("messaging.kafka.offset", offset);
        }
        Err(e) => {
            let code = e.rdkafka_error_code().map(|c| format!("{c:?}"));
            span.record("error.type", code.as_deref().unwrap_or("kafka_error"));
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The span of a wait (`rate_limit`, `budget`, `retry_backoff`) below `parent`; none when the
/// parent is not traced.
pub fn wait_span(parent: &Span, what: &'static str) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: SPAN_TARGET,
        parent: parent,
        "wait",
        "otel.name" = format!("wait {what}"),
        "sluice.wait" = what,
    )
}
