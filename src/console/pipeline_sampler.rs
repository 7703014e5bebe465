//! The pipeline page's samples, taken in the background every [`EVERY`] by one loop per console
//! ([`Sampler::run`]) and shared by every viewer: a request never waits for Kafka, it renders
//! the latest sample and says how old it is (before the first one, that it is sampling). A
//! sample is a `sluice status` report, the one before it (the difference is the throughput) and
//! a scrape of the stage processes' metrics; each is also added to the hour of history the
//! page's plots draw ([`super::pipeline_history`]). Spend today is kept incrementally
//! ([`SpendToday`]): a sample reads only the metering records written since the one before.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::events::{SampleFailed, SamplingStopped};
use super::pipeline_history::History;
use super::scrape::{scrape, Scraped};
use crate::call::now_ms;
use crate::config::Topology;
use crate::kafka::ProbeError;
use crate::ops::spend_today::SpendToday;
use crate::ops::status::{self, Report, StatusError};
use crate::shutdown::{Phase, Shutdown};

/// How often the pipeline is sampled (and the page refreshes itself).
pub const EVERY: Duration = Duration::from_secs(5);

/// The latest sample and the history of samples.
pub struct Sampler {
    pub(super) metrics: Vec<String>,
    latest: RwLock<Option<Arc<Sample>>>,
    history: Mutex<History>,
}

/// Why a sample has no report.
#[derive(Debug, Clone)]
pub(super) enum SampleError {
    /// The console runs on the embedded broker, which has no admin API: no sample ever will.
    Embedded { bootstrap: String },
    /// Anything else (the cluster did not answer): the next sample tries again.
    Failed(String),
}

/// One sample of the pipeline.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    /// When it was begun (ms since the epoch): every figure is from this moment or after.
    pub(super) taken_ms: i64,
    /// How long taking it took.
    pub(super) took: Duration,
    pub(super) report: Result<Report, SampleError>,
    pub(super) previous: Option<Report>,
    pub(super) scraped: Scraped,
}

impl Sampler {
    pub fn new(metrics: Vec<String>) -> Self {
        Self { metrics, latest: RwLock::new(None), history: Mutex::new(History::default()) }
    }

    /// The latest sample; `None` before the first one is done.
    pub(super) fn latest(&self) -> Option<Arc<Sample>> {
        self.latest.read().expect("sample lock").clone()
    }

    /// Runs `f` on the history of samples.
    pub(super) fn with_history<T>(&self, f: impl FnOnce(&History) -> T) -> T {
        f(&self.history.lock().expect("history lock"))
    }

    /// Samples every [`EVERY`] until `shutdown` drains; stops early on the embedded broker,
    /// where no sample can succeed.
    pub async fn run(&self, t: &Topology, shutdown: Shutdown) {
        let mut spend = SpendToday::new();
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.reached(Phase::Draining) => return,
            }
            let embedded = tokio::select! {
                s = self.take(t, &mut spend) => s,
                _ = shutdown.reached(Phase::Draining) => return,
            };
            if embedded {
                return;
            }
        }
    }

    /// Takes one sample and makes it the latest; true when it met the embedded broker.
    async fn take(&self, t: &Topology, spend: &mut SpendToday) -> bool {
        let (started, taken_ms) = (Instant::now(), now_ms());
        let (report, scraped) = tokio::join!(status::report_with(t, spend), scrape(&self.metrics));
        let report = report.map_err(|e| match e {
            StatusError::Probe(ProbeError::NoAdminApi { bootstrap, .. }) => {
                SampleError::Embedded { bootstrap }
            }
            e => SampleError::Failed(e.to_string()),
        });
        let last = self.latest();
        let was_failing = last.as_ref().is_some_and(|s| s.report.is_err());
        match &report {
            Err(SampleError::Embedded { bootstrap }) => SamplingStopped { bootstrap }.emit(),
            Err(SampleError::Failed(error)) if !was_failing => SampleFailed { error }.emit(),
            _ => {}
        }
        let embedded = matches!(report, Err(SampleError::Embedded { .. }));
        // The last report read, carried over failed samples (the page shows it with the error).
        let previous = last.and_then(|s| s.report.as_ref().ok().cloned().or(s.previous.clone()));
        if let Ok(r) = &report {
            self.history.lock().expect("history lock").push(r, previous.as_ref());
        }
        let sample = Sample { taken_ms, took: started.elapsed(), report, previous, scraped };
        *self.latest.write().expect("sample lock") = Some(Arc::new(sample));
        embedded
    }
}
