//! The telemetry HTTP endpoints every command that runs stages serves on its metrics address:
//! `GET /metrics` (Prometheus text), `GET /healthz` and `GET /readyz` (see [`super::health`]).
//! Both health endpoints answer 200 or 503 with a short plain-text body, one line per check.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use super::health::{health, Verdict};

fn answer(verdict: Verdict, failed: &str) -> (StatusCode, String) {
    let status = if verdict.ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, verdict.body(failed))
}

/// The router: `/metrics`, `/healthz`, `/readyz`.
pub fn router() -> Router {
    Router::new()
        .route("/metrics", get(|| async { super::render() }))
        .route("/healthz", get(|| async { answer(health().liveness(), "not live") }))
        .route("/readyz", get(|| async { answer(health().readiness(), "not ready") }))
}

/// Binds `addr` and serves [`router`] in the background; returns the bound address (useful
/// with port 0).
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router()).await {
            tracing::error!(error = %e, "telemetry endpoints stopped");
        }
    });
    Ok(bound)
}
