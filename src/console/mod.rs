//! `sluice console`: a web console served by sluice itself for the people in the loop — the
//! review queue of every review stage ([`review`]: decided in log order by its ledger so several
//! replicas agree, one decision per document), the dead letters with redrive ([`dlq_pages`], through
//! [`crate::ops::redrive`]), and the pipeline at a glance ([`pipeline_page`], through
//! [`crate::ops::status`]). Server-rendered HTML ([`html`]) with a little script, assets
//! compiled into the binary; who may log in in [`access`], sessions and CSRF in [`auth`], the
//! login form in [`login`]; routes in [`server`], what pages share (and refusals as pages) in
//! [`app`]; log lines through [`events`].
//!
//! Log lines are typed events ([`events`]); a test there fails when another file of `console/`
//! calls `tracing`'s macros.

pub mod access;
pub mod app;
pub mod auth;
mod dlq_pages;
pub mod events;
pub mod html;
pub mod login;
mod pipeline_history;
mod pipeline_page;
mod pipeline_rows;
mod pipeline_sampler;
mod pipeline_spark;
pub mod review;
pub mod scrape;
pub mod server;

pub use review::{actions, ledger, queue};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Topology;
use crate::shutdown::{Phase, Shutdown};
use access::Access;
use app::App;
use auth::{SessionLimits, Sessions};
use review::{QueueError, QueueOptions, QueueTopics, ReviewQueue};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub addr: SocketAddr,
    /// Who may log in (reviewers' tokens, a trusted proxy); must admit someone by token or
    /// proxy when `addr` is not a loopback address. Empty: the single-user console on loopback.
    pub access: Access,
    /// How long a reviewer holds a claimed item.
    pub claim_ttl: Duration,
    /// A decision left without its record this long (by a console that stopped) is finished by
    /// this one; longer than a decision's own produce and read-back take.
    pub finish_after: Duration,
    /// Prometheus endpoints of the stage processes, for in-flight records and breaker states.
    pub metrics: Vec<String>,
    /// How much the console holds in memory.
    pub limits: Limits,
}

/// Bounds on what a console holds in memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Needs-human records held per review stage; past it, the queue reads on as decisions
    /// make room (the page says how many wait in Kafka beyond).
    pub queue_items: usize,
    /// Dead letters read for one view of the dead-letter page, over all partitions.
    pub dlq_letters: usize,
    /// Sessions at once; a login past it ends the oldest session.
    pub sessions: usize,
    /// Failed logins from one address in a minute before it is refused until the minute ends.
    pub login_failures_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { queue_items: 1_000, dlq_letters: 100, sessions: 200, login_failures_per_minute: 10 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "the console would listen on {0}, which is not a loopback address, admitting anyone: give \
         it reviewers' tokens (--access-file; a shared SLUICE_CONSOLE_TOKEN no longer does) or a \
         trusted proxy (--trusted-proxy), or listen on 127.0.0.1"
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
    /// What the server and every background loop observe: request it to stop the console.
    pub shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Console {
    /// Requests shutdown and waits until the server and every loop ended (each queue commits
    /// what is done once more and leaves its presence on the way out).
    pub async fn stop(self) {
        self.shutdown.request();
        self.stopped().await;
    }

    /// Waits until the server and every loop ended (after `shutdown` was requested).
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts every review queue and listens; requests are served in the background until the
/// console is stopped ([`Console::stop`]).
pub async fn start(t: &Topology, opts: ConsoleOptions) -> Result<Console, ConsoleError> {
    start_until(t, opts, Shutdown::new()).await
}

/// [`start`], observing `shutdown` (e.g. the process's, on signals).
pub async fn start_until(
    t: &Topology,
    opts: ConsoleOptions,
    shutdown: Shutdown,
) -> Result<Console, ConsoleError> {
    if !opts.addr.ip().is_loopback() && opts.access.is_open() {
        return Err(ConsoleError::TokenRequired(opts.addr));
    }
    let (mut queues, mut tasks) = (Vec::new(), Vec::new());
    for topics in t.stages.iter().filter_map(QueueTopics::of) {
        let stage = topics.stage.clone();
        let queue_opts = QueueOptions {
            claim_ttl: opts.claim_ttl,
            finish_after: opts.finish_after,
            capacity: opts.limits.queue_items,
        };
        let queue = ReviewQueue::start(t, topics, queue_opts, shutdown.clone())
            .await
            .map_err(|error| ConsoleError::Queue { stage, error })?;
        tasks.extend(review::run(&queue));
        queues.push(queue);
    }
    let app = Arc::new(App {
        topology: t.clone(),
        queues,
        sessions: Sessions::new(
            opts.access,
            SessionLimits {
                max_sessions: opts.limits.sessions,
                max_failures: opts.limits.login_failures_per_minute,
            },
        ),
        pipeline: pipeline_sampler::Sampler::new(opts.metrics),
        limits: opts.limits,
        redrives: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|error| ConsoleError::Bind { addr: opts.addr, error })?;
    let addr =
        listener.local_addr().map_err(|error| ConsoleError::Bind { addr: opts.addr, error })?;
    // The pipeline page's samples, taken in the background from now on.
    let (sampling, until) = (app.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move { sampling.pipeline.run(&sampling.topology, until).await }));
    let router = server::router(app.clone());
    let stopping = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, service)
            .with_graceful_shutdown(async move { stopping.reached(Phase::Draining).await });
        if let Err(e) = serve.await {
            events::ServeFailed { error: &e.to_string() }.emit();
        }
    }));
    Ok(Console { addr, app, shutdown, tasks })
}
