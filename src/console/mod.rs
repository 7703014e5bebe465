//! `sluice console`: a web console served by sluice itself for the people in the loop — the
//! review queue of every review stage ([`review`], [`actions`], decided in log order by the
//! [`ledger`] so several replicas agree), the dead letters with redrive ([`dlq_pages`], through
//! [`crate::ops::redrive`]), and the pipeline at a glance ([`pipeline_page`], through
//! [`crate::ops::status`]). Server-rendered HTML ([`html`]) with a little script, assets
//! compiled into the binary; sessions and CSRF in [`auth`]; routes in [`server`].

pub mod actions;
pub mod auth;
mod dlq_pages;
pub mod html;
pub mod ledger;
mod loops;
mod pipeline_page;
pub mod queue;
pub mod review;
mod review_forms;
mod review_item;
mod review_pages;
pub mod scrape;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Topology;
use auth::Sessions;
use review::{QueueError, QueueTopics, ReviewQueue};
use server::App;

#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub addr: SocketAddr,
    /// Required to log in; must be set when `addr` is not a loopback address.
    pub token: Option<String>,
    /// How long a reviewer holds a claimed item.
    pub claim_ttl: Duration,
    /// A decision left without its record this long (by a console that stopped) is finished by
    /// this one; longer than a decision's own produce and read-back take.
    pub finish_after: Duration,
    /// Prometheus endpoints of the stage processes, for in-flight records and breaker states.
    pub metrics: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "the console would listen on {0}, which is not a loopback address, without a token: set \
         SLUICE_CONSOLE_TOKEN or --token-file (or listen on 127.0.0.1)"
    )]
    TokenRequired(SocketAddr),
    #[error("review queue of stage '{stage}': {error}")]
    Queue { stage: String, error: QueueError },
    #[error("listening on {addr}: {error}")]
    Bind { addr: SocketAddr, error: std::io::Error },
}

/// A console that is listening.
pub struct Console {
    pub addr: SocketAddr,
    pub app: Arc<App>,
}

/// Starts every review queue and listens; requests are served in the background.
pub async fn start(t: &Topology, opts: ConsoleOptions) -> Result<Console, ConsoleError> {
    if !opts.addr.ip().is_loopback() && opts.token.is_none() {
        return Err(ConsoleError::TokenRequired(opts.addr));
    }
    let mut queues = Vec::new();
    for topics in t.stages.iter().filter_map(QueueTopics::of) {
        let stage = topics.stage.clone();
        let queue = ReviewQueue::start(t, topics, opts.claim_ttl, opts.finish_after)
            .await
            .map_err(|error| ConsoleError::Queue { stage, error })?;
        queues.push(queue);
    }
    let app = Arc::new(App {
        topology: t.clone(),
        queues,
        sessions: Sessions::new(opts.token),
        pipeline: pipeline_page::Sampler::new(opts.metrics),
        redrives: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|error| ConsoleError::Bind { addr: opts.addr, error })?;
    let addr =
        listener.local_addr().map_err(|error| ConsoleError::Bind { addr: opts.addr, error })?;
    // A first status sample now, so the pipeline page shows a throughput from its first view.
    let primed = app.clone();
    tokio::spawn(async move { primed.pipeline.prime(&primed).await });
    let router = server::router(app.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "console stopped serving");
        }
    });
    Ok(Console { addr, app })
}
