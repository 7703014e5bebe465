//! `sluice mock-provider`: a model server speaking OpenAI's chat-completions and embeddings API
//! (also under Azure's deployment paths) and Anthropic's Messages API, for tests, benchmarks and
//! users' own load tests. Latency follows a configured distribution; errors, 429s with
//! Retry-After and a requests-per-minute limit it enforces itself are injected; a ledger records
//! every call and the tokens it billed, per model, and can be read over HTTP.
//!
//! Control endpoints: `GET /mock/ledger`, `POST /mock/reset`, `PUT /mock/faults/{model}` with
//! `{"status": 503}` (every call to that model fails so) and `DELETE /mock/faults`.

mod gate;
mod handlers;
mod ledger;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::{delete, get, post, put};
use axum::Router;

pub use ledger::{CallEntry, Ledger, ModelTotals};

use crate::config::Price;

/// How latency varies around `latency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LatencyDist {
    /// Always `latency`.
    Fixed,
    /// `latency` plus up to `jitter`, uniformly.
    Uniform,
    /// `latency` plus an exponential tail with mean `jitter` (long tails, like real APIs).
    Exponential,
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub latency: Duration,
    pub jitter: Duration,
    pub dist: LatencyDist,
    /// Fraction of calls answered 500/503.
    pub error_rate: f64,
    /// Fraction of calls answered 429 regardless of the limit.
    pub rate_limit_rate: f64,
    /// Retry-After sent with injected 429s.
    pub retry_after: Duration,
    /// Requests per minute the server accepts (a bucket holding one second's worth).
    pub rpm: Option<u32>,
    pub embedding_dim: usize,
    /// When set, requests must carry this key (`Authorization: Bearer`, `api-key` or
    /// `x-api-key`); others get 401.
    pub api_key: Option<String>,
    /// Prices by model name, for the ledger's billing.
    pub prices: BTreeMap<String, Price>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            dist: LatencyDist::Fixed,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after: Duration::from_secs(1),
            rpm: None,
            embedding_dim: 64,
            api_key: None,
            prices: BTreeMap::new(),
        }
    }
}

pub(crate) struct MockState {
    config: MockConfig,
    started: Instant,
    seq: AtomicU64,
    ledger: Mutex<Ledger>,
    /// Model → forced HTTP status.
    faults: Mutex<HashMap<String, u16>>,
    /// Request bucket: (tokens, last refill).
    bucket: Mutex<(f64, Instant)>,
    /// Holding: new requests wait at the door; released with `reject`: those that waited fail.
    hold: tokio::sync::watch::Sender<Hold>,
    /// Requests past the door and not yet answered.
    in_flight: AtomicUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    Open,
    Holding,
    Released { reject: bool },
}

/// A running mock server; it serves until the runtime ends.
#[derive(Clone)]
pub struct MockProvider {
    pub addr: SocketAddr,
    state: Arc<MockState>,
}

impl MockProvider {
    /// Base URL for an `openai` provider (`…/v1`).
    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL for an `anthropic` provider.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ledger(&self) -> Ledger {
        self.state.ledger.lock().expect("ledger lock").clone()
    }

    /// New requests wait at the door until [`Self::release`]: what is in flight finishes, nothing
    /// new starts. Lets a test kill a client at a moment no answer is on its way to it.
    pub fn hold(&self) {
        self.state.hold.send_replace(Hold::Holding);
    }

    /// Requests past the door (see [`Self::hold`]) whose answer is not yet written: zero while
    /// holding means no answer is on its way to a client.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Opens the door; with `reject`, the requests that waited are answered 503 (unbilled), as
    /// if the provider had failed them.
    pub fn release(&self, reject: bool) {
        self.state.hold.send_replace(Hold::Released { reject });
    }

    /// Makes every call to `model` fail with `status` (`None` heals it).
    pub fn set_fault(&self, model: &str, status: Option<u16>) {
        let mut faults = self.state.faults.lock().expect("faults lock");
        match status {
            Some(s) => faults.insert(model.to_owned(), s),
            None => faults.remove(model),
        };
    }
}

/// Serves on `addr` (port 0 picks one) on the current tokio runtime.
pub async fn serve(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockProvider> {
    let burst = config.rpm.map_or(0.0, |r| (f64::from(r) / 60.0).max(1.0));
    let state = Arc::new(MockState {
        config,
        started: Instant::now(),
        seq: AtomicU64::new(0),
        ledger: Mutex::new(Ledger::default()),
        faults: Mutex::new(HashMap::new()),
        bucket: Mutex::new((burst, Instant::now())),
        hold: tokio::sync::watch::Sender::new(Hold::Open),
        in_flight: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(handlers::openai_chat))
        .route("/v1/embeddings", post(handlers::openai_embeddings))
        .route("/openai/deployments/{deployment}/chat/completions", post(handlers::azure_chat))
        .route("/openai/deployments/{deployment}/embeddings", post(handlers::azure_embeddings))
        .route("/v1/messages", post(handlers::anthropic_messages))
        .route("/mock/ledger", get(handlers::ledger))
        .route("/mock/reset", post(handlers::reset))
        .route("/mock/faults/{model}", put(handlers::set_fault))
        .route("/mock/faults", delete(handlers::clear_faults))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "mock provider stopped");
        }
    });
    Ok(MockProvider { addr, state })
}
