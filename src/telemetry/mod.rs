//! Telemetry: each observable occurrence is a typed event whose `emit()` writes the log line and
//! updates the metric together (and, for the runner's lifecycle events, the process's
//! [`Health`]). Nothing per record is logged at INFO. [`http`] serves metrics and health. Spans go
//! to an OpenTelemetry collector when the `OTEL_*` variables name one ([`otel`], [`otel_spans`]).

mod broker_events;
mod budget_events;
mod cache_events;
mod client_stats;
mod consumer_events;
mod export_events;
mod health;
pub mod http;
mod metrics;
mod model_events;
pub mod otel;
mod otel_queue;
pub mod otel_spans;
mod record_events;
mod review_events;
mod runner_metrics;
mod semantic_events;
mod transaction_events;

pub use broker_events::BrokerComingUp;
pub use budget_events::{
    budget_metrics, BudgetClaimFailed, BudgetMetrics, LedgerClaimSkipped, LedgerReadFailed,
    LedgerRegistryWait,
};
pub use cache_events::{CacheBackend, CacheLookups, CacheReadFailed, CacheWriteFailed};
pub use client_stats::{enable_statistics, ClientStatistics, STATISTICS_INTERVAL_MS};
pub use consumer_events::*;
pub use export_events::SpansDropped;
pub use health::{health, Health, Verdict};
pub use metrics::metrics;
pub use model_events::{
    BreakerCreated, BreakerTransition, FallbackTaken, LimiterWaited, ModelCalled,
};
pub use otel::{OtelError, OtelSettings, TraceGuard};
pub use otel_spans::{
    continue_trace, record_span, send_span, sent, wait_span, ModelCall, ModelUsage,
};
pub use record_events::*;
pub use review_events::{ReviewDecided, ReviewQueueSize};
pub use semantic_events::{SemanticCacheFailed, SemanticCacheRead, SemanticLookup, SemanticResult};
pub use transaction_events::{TransactionAborted, TransactionCommitted};

use tracing_subscriber::filter::{filter_fn, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the log subscriber and, when the `OTEL_*` variables name a collector, the trace
/// exporter (see [`otel`]); keep the guard until the process exits.
pub fn init(json: bool) -> Result<TraceGuard, OtelError> {
    init_with(json, OtelSettings::from_env()?.as_ref())
}

/// Installs the log subscriber only (the first subscriber installed in a process stays).
pub fn init_logging(json: bool) {
    let _ = init_with(json, None);
}

/// Installs the log subscriber — `RUST_LOG` filters (default `info`); `json` selects JSON lines —
/// and, with `traces`, the trace exporter. Logs and spans are filtered apart: `RUST_LOG` never
/// silences spans, and spans never show in logs. Exported spans carry the WARN and ERROR events
/// logged inside them.
pub fn init_with(json: bool, traces: Option<&OtelSettings>) -> Result<TraceGuard, OtelError> {
    let exporter = traces.map(otel::Exporter::build).transpose()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into());
    let logs =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour_stderr());
    let logs = if json { logs.json().boxed() } else { logs.boxed() };
    let logs = logs.with_filter(filter.and(filter_fn(|m| m.target() != otel_spans::SPAN_TARGET)));
    let spans = exporter.as_ref().map(|e| {
        tracing_opentelemetry::layer()
            .with_tracer(e.tracer())
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(
                Targets::new()
                    .with_target(otel_spans::SPAN_TARGET, tracing::Level::INFO)
                    .with_target("sluice", tracing::Level::WARN),
            )
    });
    let installed = tracing_subscriber::registry().with(logs).with(spans).try_init().is_ok();
    match (exporter, traces) {
        (Some(exporter), Some(settings)) if installed => {
            tracing::info!(endpoint = %settings.endpoint_for_log(), "exporting traces over OTLP/HTTP");
            Ok(TraceGuard::new(Some(exporter)))
        }
        (Some(_), _) => {
            tracing::warn!("a subscriber was installed before: traces are not exported");
            Ok(TraceGuard::default())
        }
        (None, _) => Ok(TraceGuard::default()),
    }
}

/// Whether log lines may carry ANSI colours: only on a terminal (never into a file or a pipe),
/// and never with `NO_COLOR` set to anything non-empty (no-color.org).
fn colour_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// The registry in Prometheus text format. A family without labels shows from the start (0), not
/// only after its first event, so those registered on first use are touched here.
pub fn render() -> String {
    export_events::spans_dropped();
    metrics::encode()
}
