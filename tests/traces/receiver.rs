//! The OTLP/HTTP trace receiver the trace tests export to, and the spans it decoded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message as _;

/// A span as received, with its attributes rendered as text and its resource's.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub(crate) trace: String,
    pub(crate) id: String,
    pub(crate) parent: String,
    pub(crate) name: String,
    pub(crate) kind: SpanKind,
    /// The span's status is an error.
    pub(crate) error: bool,
    pub(crate) attrs: HashMap<String, String>,
    pub(crate) resource: HashMap<String, String>,
}

impl Got {
    pub(crate) fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map_or("", String::as_str)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn text(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

#[derive(Default)]
pub(crate) struct Received {
    pub(crate) spans: Vec<Got>,
    /// Requests that were not `POST /v1/traces` with `application/x-protobuf`.
    pub(crate) refused: Vec<String>,
    pub(crate) requests: usize,
}

/// An OTLP/HTTP trace receiver on loopback.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    pub(crate) got: Arc<Mutex<Received>>,
}

pub(crate) async fn export(
    State(got): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut got = got.lock().expect("received");
    got.requests += 1;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if content_type != Some("application/x-protobuf") {
        got.refused.push(format!("content type {content_type:?}"));
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => {
            got.refused.push(format!("undecodable: {e}"));
            return (StatusCode::BAD_REQUEST, Vec::new());
        }
    };
    for rs in request.resource_spans {
        let resource = rs.resource.map(|r| text(&r.attributes)).unwrap_or_default();
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            got.spans.push(Got {
                trace: hex(&span.trace_id),
                id: hex(&span.span_id),
                parent: hex(&span.parent_span_id),
                kind: span.kind(),
                error: span.status.as_ref().is_some_and(|s| s.code() == SpanStatus::Error),
                name: span.name,
                attrs: text(&span.attributes),
                resource: resource.clone(),
            });
        }
    }
    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
}

impl Receiver {
    pub(crate) async fn start(addr: &str) -> Self {
        let got = Arc::new(Mutex::new(Received::default()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("the receiver listens on {addr}: {e}"));
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, got }
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn spans(&self) -> Vec<Got> {
        self.got.lock().expect("received").spans.clone()
    }

    pub(crate) fn requests(&self) -> usize {
        self.got.lock().expect("received").requests
    }

    pub(crate) fn refused(&self) -> Vec<String> {
        self.got.lock().expect("received").refused.clone()
    }
}

/// The record spans of `spans` (one per record per stage), by stage.
pub(crate) fn record_spans(spans: &[Got]) -> HashMap<String, Vec<Got>> {
    let mut by_stage: HashMap<String, Vec<Got>> = HashMap::new();
    for s in spans.iter().filter(|s| s.kind == SpanKind::Consumer) {
        by_stage.entry(s.attr("sluice.stage").to_owned()).or_default().push(s.clone());
    }
    by_stage
}
