//! The one Prometheus registry, every metric family and its label names. Label values come from
//! closed sets (stage and topic names from the topology, outcomes, error classes): never tenant
//! ids, keys or raw error text.

use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    /// Records finished, by stage and outcome (ok, dead_lettered, skipped).
    pub records: IntCounterVec,
    /// Time from a record's dispatch to its offset being storable.
    pub record_seconds: HistogramVec,
    /// Stage attempts that failed, by stage and error class.
    pub attempt_failures: IntCounterVec,
    /// Records in flight per stage.
    pub in_flight: IntGaugeVec,
    /// Times a partition's window filled and it stopped being read, by topic.
    pub pauses: IntCounterVec,
    /// Produce attempts that failed and were retried, by topic.
    pub produce_retries: IntCounterVec,
    /// Records parked on a retry topic, by stage and rung.
    pub retries_scheduled: IntCounterVec,
    /// Model calls by stage, provider, model (the topology's names) and outcome.
    pub model_calls: IntCounterVec,
    /// Latency of successful model calls.
    pub model_call_seconds: HistogramVec,
    /// Tokens billed by stage, provider, model and direction (input, output).
    pub model_tokens: IntCounterVec,
    /// What model calls cost, in integer micro-dollars (the cost events' `cost_micro_usd`), by
    /// stage, provider and model.
    pub model_cost: IntCounterVec,
    /// Calls that went to a fallback model, by the model that failed.
    pub fallbacks: IntCounterVec,
    /// Breaker state per provider: 0 closed, 1 half-open, 2 open.
    pub breaker_state: IntGaugeVec,
    /// Records parked until their tenant's next budget window, by stage.
    pub deferred: IntCounterVec,
}

fn build() -> Metrics {
    let registry = Registry::new_custom(Some("sluice".into()), None).expect("valid prefix");
    let records = IntCounterVec::new(
        Opts::new("records_total", "Records finished by a stage."),
        &["stage", "outcome"],
    )
    .expect("valid");
    let record_seconds = HistogramVec::new(
        HistogramOpts::new(
            "record_duration_seconds",
            "Time from dispatch to every output acknowledged.",
        )
        .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
        &["stage"],
    )
    .expect("valid");
    let attempt_failures = IntCounterVec::new(
        Opts::new("attempt_failures_total", "Failed stage attempts."),
        &["stage", "class"],
    )
    .expect("valid");
    let in_flight = IntGaugeVec::new(
        Opts::new("in_flight_records", "Records received and not yet done."),
        &["stage"],
    )
    .expect("valid");
    let pauses = IntCounterVec::new(
        Opts::new(
            "partition_pauses_total",
            "Times a partition's window filled and it stopped being read.",
        ),
        &["topic"],
    )
    .expect("valid");
    let produce_retries = IntCounterVec::new(
        Opts::new("produce_retries_total", "Output produces that failed and were retried."),
        &["topic"],
    )
    .expect("valid");
    let retries_scheduled = IntCounterVec::new(
        Opts::new("retries_scheduled_total", "Records parked on a retry topic."),
        &["stage", "rung"],
    )
    .expect("valid");
    let model_calls = IntCounterVec::new(
        Opts::new("model_calls_total", "Model calls by stage, provider, model and outcome."),
        &["stage", "provider", "model", "outcome"],
    )
    .expect("valid");
    let model_call_seconds = HistogramVec::new(
        HistogramOpts::new("model_call_duration_seconds", "Latency of successful model calls.")
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        &["provider", "model"],
    )
    .expect("valid");
    let model_tokens = IntCounterVec::new(
        Opts::new("model_tokens_total", "Tokens billed by providers."),
        &["stage", "provider", "model", "direction"],
    )
    .expect("valid");
    let model_cost = IntCounterVec::new(
        Opts::new(
            "model_cost_micro_usd_total",
            "What model calls cost, in micro-dollars (cancelled calls at the most they could cost).",
        ),
        &["stage", "provider", "model"],
    )
    .expect("valid");
    let fallbacks = IntCounterVec::new(
        Opts::new("model_fallbacks_total", "Calls passed to a fallback model."),
        &["provider", "model"],
    )
    .expect("valid");
    let breaker_state = IntGaugeVec::new(
        Opts::new("breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open."),
        &["provider"],
    )
    .expect("valid");
    let deferred = IntCounterVec::new(
        Opts::new("records_deferred_total", "Records parked until the next budget window."),
        &["stage"],
    )
    .expect("valid");
    for c in [
        &deferred,
        &records,
        &attempt_failures,
        &pauses,
        &produce_retries,
        &retries_scheduled,
        &model_calls,
        &model_tokens,
        &model_cost,
        &fallbacks,
    ] {
        registry.register(Box::new(c.clone())).expect("unique metric");
    }
    for h in [&record_seconds, &model_call_seconds] {
        registry.register(Box::new(h.clone())).expect("unique metric");
    }
    for g in [&in_flight, &breaker_state] {
        registry.register(Box::new(g.clone())).expect("unique metric");
    }
    Metrics {
        registry,
        records,
        record_seconds,
        attempt_failures,
        in_flight,
        pauses,
        produce_retries,
        retries_scheduled,
        model_calls,
        model_call_seconds,
        model_tokens,
        model_cost,
        fallbacks,
        breaker_state,
        deferred,
    }
}

pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(build)
}

/// The registry in Prometheus text format. Families registered on first use must be touched
/// first: [`super::render`] does that and calls this.
pub(super) fn encode() -> String {
    let mut out = Vec::new();
    TextEncoder::new().encode(&metrics().registry.gather(), &mut out).expect("text encoding");
    String::from_utf8(out).expect("prometheus text is UTF-8")
}
