//! The pipeline page's samples: the last two `sluice status` reports (the difference is the
//! throughput) and the last scrape of the stage processes' metrics, shared by every viewer.
//! Spend today is kept incrementally ([`SpendToday`]): a sample reads only the metering records
//! written since the one before, and counts those that are not cost events.

use std::time::{Duration, Instant};

use super::scrape::{scrape, Scraped};
use crate::config::Topology;
use crate::ops::spend_today::SpendToday;
use crate::ops::status::{self, Report};

/// Samples are shared by every viewer and taken at most this often.
const FRESH_FOR: Duration = Duration::from_secs(3);

/// The last two status samples (the difference is the throughput) and the last scrape.
pub struct Sampler {
    pub(super) metrics: Vec<String>,
    last: tokio::sync::Mutex<Option<Sample>>,
    /// Today's spend, read incrementally: each sample reads only the metering records written
    /// since the one before.
    spend: tokio::sync::Mutex<SpendToday>,
}

#[derive(Clone)]
pub(super) struct Sample {
    at: Instant,
    pub(super) report: Result<Report, String>,
    pub(super) previous: Option<Report>,
    pub(super) scraped: Scraped,
}

impl Sampler {
    pub fn new(metrics: Vec<String>) -> Self {
        Self {
            metrics,
            last: tokio::sync::Mutex::new(None),
            spend: tokio::sync::Mutex::new(SpendToday::new()),
        }
    }

    /// Takes a first sample.
    pub async fn prime(&self, t: &Topology) {
        self.sample(t).await;
    }

    /// The current sample, with the report before it.
    pub(super) async fn sample(&self, t: &Topology) -> Sample {
        let mut last = self.last.lock().await;
        if let Some(s) = last.as_ref().filter(|s| s.at.elapsed() < FRESH_FOR) {
            return s.clone();
        }
        let mut spend = self.spend.lock().await;
        let report = status::report_with(t, &mut spend).await.map_err(|e| e.to_string());
        drop(spend);
        let previous = last.take().and_then(|s| s.report.ok());
        let scraped = scrape(&self.metrics).await;
        let sample = Sample { at: Instant::now(), report, previous, scraped };
        *last = Some(sample.clone());
        sample
    }
}
