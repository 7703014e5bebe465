//! Telemetry: each observable occurrence is a typed event whose `emit()` writes the log line and
//! updates the metric together (and, for the runner's lifecycle events, the process's
//! [`Health`]). Nothing per record is logged at INFO. [`http`] serves metrics and health.

mod budget_events;
mod cache_events;
mod client_stats;
mod consumer_events;
mod export_events;
mod health;
pub mod http;
mod metrics;
mod model_events;
mod record_events;
mod runner_metrics;

pub use budget_events::{
    budget_metrics, BudgetClaimFailed, BudgetMetrics, LedgerClaimSkipped, LedgerReadFailed,
    LedgerRegistryWait,
};
pub use cache_events::{CacheBackend, CacheLookups, CacheReadFailed, CacheWriteFailed};
pub use client_stats::{enable_statistics, ClientStatistics, STATISTICS_INTERVAL_MS};
pub use consumer_events::*;
pub use export_events::SpansDropped;
pub use health::{health, Health, Verdict};
pub use metrics::{metrics, render};
pub use model_events::{
    BreakerCreated, BreakerTransition, FallbackTaken, LimiterWaited, ModelCalled,
};
pub use record_events::*;

/// Installs the log subscriber: `RUST_LOG` filters (default `info`); `json` selects JSON lines.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
