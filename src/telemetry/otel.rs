//! Trace export: OpenTelemetry over OTLP/HTTP (protobuf), configured by the standard `OTEL_*`
//! variables and off unless an endpoint is set — then nothing connects anywhere.
//!
//! Read here: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as given) or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (`/v1/traces` appended), `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL` (only `http/protobuf`),
//! `OTEL_SERVICE_NAME` (default `sluice`), `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`
//! (`otlp` or `none`) and `OTEL_BSP_MAX_QUEUE_SIZE`. The SDK reads the rest itself:
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]` (default: parent-based, always on),
//! `OTEL_EXPORTER_OTLP[_TRACES]_HEADERS`, `..._TIMEOUT`, and the other `OTEL_BSP_*` settings.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use super::otel_queue::{Bounded, Counted, Queue};

const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// The SDK's default queue size.
const DEFAULT_QUEUE_SIZE: usize = 2048;
/// How long exiting waits for the last spans to reach the collector.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Why the `OTEL_*` settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("{var}={value:?} is not supported: sluice exports traces as OTLP over http/protobuf")]
    Unsupported { var: &'static str, value: String },
    #[error("{var}={value:?} is not an http:// or https:// URL")]
    Endpoint { var: &'static str, value: String },
    #[error("{var}={value:?} is not a positive number")]
    Number { var: &'static str, value: String },
    #[error("cannot build the OTLP trace exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Where and how traces are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelSettings {
    /// The full URL spans are posted to.
    pub endpoint: String,
    /// `OTEL_SERVICE_NAME`; without it, `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, else
    /// `sluice`.
    pub service_name: Option<String>,
    /// Finished spans that may wait for the exporter before further ones are dropped.
    pub queue_size: usize,
}

impl OtelSettings {
    /// The settings of the process's environment; `None` when traces are off.
    pub fn from_env() -> Result<Option<Self>, OtelError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings `var` gives (a variable set to blanks counts as unset); `None` when no
    /// endpoint is set or traces are disabled.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, OtelError> {
        let var = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER") {
            Some(v) if v.eq_ignore_ascii_case("none") => return Ok(None),
            Some(v) if !v.eq_ignore_ascii_case("otlp") => {
                return Err(OtelError::Unsupported { var: "OTEL_TRACES_EXPORTER", value: v })
            }
            _ => {}
        }
        let (name, endpoint) = match (var(TRACES_ENDPOINT), var(ENDPOINT)) {
            (Some(url), _) => (TRACES_ENDPOINT, url),
            (None, Some(base)) => (ENDPOINT, format!("{}/v1/traces", base.trim_end_matches('/'))),
            (None, None) => return Ok(None),
        };
        let url = reqwest::Url::parse(&endpoint).ok();
        if !url.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
            return Err(OtelError::Endpoint { var: name, value: endpoint });
        }
        for name in [TRACES_PROTOCOL, PROTOCOL] {
            match var(name) {
                Some(p) if p == "http/protobuf" => break,
                Some(p) => return Err(OtelError::Unsupported { var: name, value: p }),
                None => {}
            }
        }
        let queue_size = match var(QUEUE_SIZE) {
            None => DEFAULT_QUEUE_SIZE,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(OtelError::Number { var: QUEUE_SIZE, value: v })?,
        };
        Ok(Some(Self { endpoint, service_name: var("OTEL_SERVICE_NAME"), queue_size }))
    }

    /// The endpoint without any credentials it embeds, for a log line.
    pub fn endpoint_for_log(&self) -> String {
        let Ok(mut url) = reqwest::Url::parse(&self.endpoint) else { return String::new() };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.to_string()
    }
}

/// The tracer provider: the OTLP/HTTP exporter behind a bounded batch queue.
pub(super) struct Exporter {
    pub provider: SdkTracerProvider,
    pub queue: Arc<Queue>,
}

impl Exporter {
    pub fn build(settings: &OtelSettings) -> Result<Self, OtelError> {
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&settings.endpoint)
            .build()?;
        let queue = Queue::new(settings.queue_size);
        let config = BatchConfigBuilder::default().with_max_queue_size(settings.queue_size).build();
        let batch = BatchSpanProcessor::new(Counted { inner: otlp, queue: queue.clone() }, config);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded { inner: batch, queue: queue.clone() })
            .with_resource(resource(settings))
            .build();
        Ok(Self { provider, queue })
    }

    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("sluice")
    }
}

/// `service.name` (see [`OtelSettings::service_name`]), `service.version`, the SDK's own
/// attributes and `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(settings: &OtelSettings) -> Resource {
    let resource = Resource::builder_empty()
        .with_service_name("sluice")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_detectors(&[
            Box::new(TelemetryResourceDetector),
            Box::new(EnvResourceDetector::new()),
        ]);
    match &settings.service_name {
        Some(name) => resource.with_service_name(name.clone()).build(),
        None => resource.build(),
    }
}

/// Keeps the trace exporter running. Dropping it exports the spans still queued (waiting at most
/// five seconds for the collector) and stops the exporter: keep it until the process exits.
#[must_use = "dropping the guard stops the trace exporter"]
#[derive(Default)]
pub struct TraceGuard {
    exporter: Option<Exporter>,
}

impl TraceGuard {
    pub(super) fn new(exporter: Option<Exporter>) -> Self {
        Self { exporter }
    }

    /// Whether spans are exported (an endpoint was configured and the subscriber installed).
    pub fn exporting(&self) -> bool {
        self.exporter.is_some()
    }

    /// Sends every span finished so far; blocks until the collector answered (or gave up).
    pub fn flush(&self) {
        if let Some(e) = &self.exporter {
            let _ = e.provider.force_flush();
        }
    }

    /// Spans dropped because the export queue was full.
    pub fn dropped(&self) -> u64 {
        self.exporter.as_ref().map_or(0, |e| e.queue.dropped())
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        let Some(e) = self.exporter.take() else { return };
        if let Err(error) = e.provider.shutdown_with_timeout(SHUTDOWN_WAIT) {
            tracing::warn!(%error, "the last spans may not have reached the trace collector");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<OtelSettings>, OtelError> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OtelSettings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn without_an_endpoint_traces_are_off_whatever_else_is_set() {
        let others = [
            ("OTEL_SERVICE_NAME", "x"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_RESOURCE_ATTRIBUTES", "a=b"),
        ];
        assert_eq!(settings(&others).expect("valid"), None);
        assert_eq!(settings(&[(ENDPOINT, "  ")]).expect("valid"), None, "blank counts as unset");
    }

    #[test]
    fn the_endpoint_follows_the_otlp_rules() {
        let base = settings(&[(ENDPOINT, "http://collector:4318/")]).expect("valid").expect("on");
        assert_eq!(base.endpoint, "http://collector:4318/v1/traces");
        assert_eq!((base.service_name, base.queue_size), (None, DEFAULT_QUEUE_SIZE));
        let both = settings(&[
            (ENDPOINT, "http://collector:4318"),
            (TRACES_ENDPOINT, "https://traces.example/otlp/spans"),
            ("OTEL_SERVICE_NAME", "sluice-eu"),
            (QUEUE_SIZE, "64"),
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(both.endpoint, "https://traces.example/otlp/spans", "the signal's own, as is");
        assert_eq!((both.service_name.as_deref(), both.queue_size), (Some("sluice-eu"), 64));
    }

    #[test]
    fn disabling_wins_over_an_endpoint() {
        let on = (ENDPOINT, "http://collector:4318");
        assert_eq!(settings(&[on, ("OTEL_SDK_DISABLED", "true")]).expect("valid"), None);
        assert_eq!(settings(&[on, ("OTEL_TRACES_EXPORTER", "none")]).expect("valid"), None);
        assert!(settings(&[on, ("OTEL_TRACES_EXPORTER", "otlp")]).expect("valid").is_some());
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let on = (ENDPOINT, "http://collector:4318");
        let refused = |vars: &[(&str, &str)]| settings(vars).expect_err("refused").to_string();
        assert!(refused(&[on, (PROTOCOL, "grpc")]).starts_with("OTEL_EXPORTER_OTLP_PROTOCOL="));
        assert!(refused(&[on, (TRACES_PROTOCOL, "http/json"), (PROTOCOL, "http/protobuf")])
            .starts_with("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="));
        assert!(refused(&[on, ("OTEL_TRACES_EXPORTER", "zipkin")]).contains("zipkin"));
        assert!(refused(&[(ENDPOINT, "collector:4318")]).contains("not an http"));
        assert!(refused(&[on, (QUEUE_SIZE, "0")]).contains(QUEUE_SIZE));
        let fine = [(TRACES_PROTOCOL, "http/protobuf"), (PROTOCOL, "grpc"), on];
        assert!(settings(&fine).is_ok(), "the signal's own protocol wins");
    }

    #[test]
    fn credentials_in_the_endpoint_stay_out_of_logs() {
        let s = settings(&[(TRACES_ENDPOINT, "https://user:secret@collector/v1/traces?key=k")])
            .expect("valid")
            .expect("on");
        assert_eq!(s.endpoint_for_log(), "https://collector/v1/traces");
    }
}
