//! The last hour of the console's own pipeline samples, per stage, for the page's plots: a
//! bounded ring of points (throughput, lag, dead letters in the last hour, spend today), at most
//! one hour's worth at the sampling rate, so memory stays the same however long it runs.

use std::collections::{BTreeMap, VecDeque};

use crate::ops::status::Report;

/// How far back the plots go.
pub const SPAN_MS: i64 = 3_600_000;
/// Points kept per stage: an hour of samples 5 s apart, and one more.
pub const MAX_POINTS: usize = 721;
/// A lag that grew on this many consecutive samples is trouble.
pub const GROWING_SAMPLES: usize = 3;

/// One stage at one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub taken_ms: i64,
    /// Records per second since the sample before (none for the first).
    pub throughput: Option<f64>,
    pub lag: i64,
    pub dead_letters: i64,
    pub spend_micro_usd: u64,
}

/// Per stage, its points, oldest first.
#[derive(Debug, Default)]
pub struct History {
    stages: BTreeMap<String, VecDeque<Point>>,
}

impl History {
    /// Adds a sample's points (the previous report gives the throughput).
    pub fn push(&mut self, report: &Report, previous: Option<&Report>) {
        for s in &report.stages {
            let before = previous
                .filter(|p| report.taken_ms > p.taken_ms)
                .and_then(|p| p.stages.iter().find(|x| x.stage == s.stage).map(|x| (p, x)));
            let throughput = before.map(|(p, x)| {
                let seconds = (report.taken_ms - p.taken_ms) as f64 / 1000.0;
                (s.position - x.position).max(0) as f64 / seconds
            });
            let point = Point {
                taken_ms: report.taken_ms,
                throughput,
                lag: s.lag,
                dead_letters: s.dead_letters_last_hour,
                spend_micro_usd: s.spend_today_micro_usd,
            };
            let points = self.stages.entry(s.stage.clone()).or_default();
            points.push_back(point);
            while points.len() > MAX_POINTS
                || points.front().is_some_and(|p| p.taken_ms < report.taken_ms - SPAN_MS)
            {
                points.pop_front();
            }
        }
    }

    /// A stage's points, oldest first.
    pub fn points(&self, stage: &str) -> Vec<Point> {
        self.stages.get(stage).map(|p| p.iter().copied().collect()).unwrap_or_default()
    }

    /// Whether a stage's lag grew on each of the last [`GROWING_SAMPLES`] samples.
    pub fn lag_growing(&self, stage: &str) -> bool {
        let Some(points) = self.stages.get(stage) else { return false };
        let n = points.len();
        n > GROWING_SAMPLES && (n - GROWING_SAMPLES..n).all(|i| points[i].lag > points[i - 1].lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::Skipped;
    use crate::ops::status::StageStatus;

    pub(crate) fn report(taken_ms: i64, position: i64, lag: i64) -> Report {
        let stage = StageStatus {
            stage: "embed".into(),
            group: "g".into(),
            state: "Stable".into(),
            members: vec![],
            members_known: true,
            input: "in".into(),
            lag,
            position,
            worst_partition: None,
            worst_partition_lag: 0,
            oldest_unprocessed_ms: None,
            oldest_unprocessed_age_s: None,
            retry_backlog: vec![],
            deferred_backlog: None,
            dead_letter_topic: "dlq".into(),
            dead_letters_last_hour: 0,
            dead_letters_last_day: 0,
            spend_today_micro_usd: 0,
            spend_today_usd: "0.000000".into(),
            spend_today_by_tenant: BTreeMap::new(),
            missing_topics: vec![],
            errors: vec![],
        };
        Report {
            pipeline: "p".into(),
            taken_ms,
            stages: vec![stage],
            metering_skipped: Skipped::default(),
            spend_error: None,
        }
    }

    #[test]
    fn the_ring_keeps_an_hour_at_most_and_sees_a_growing_lag() {
        let mut h = History::default();
        let mut previous: Option<Report> = None;
        for i in 0..2_000i64 {
            let r = report(i * 5_000, i * 10, 100 - i.min(50));
            h.push(&r, previous.as_ref());
            previous = Some(r);
        }
        let points = h.points("embed");
        assert!(points.len() <= MAX_POINTS, "{}", points.len());
        let span = points.last().expect("some").taken_ms - points[0].taken_ms;
        assert!(span <= SPAN_MS, "{span}");
        assert_eq!(points.last().expect("some").throughput, Some(2.0), "10 records in 5 s");
        assert!(!h.lag_growing("embed"));
        for (i, lag) in [(2_000i64, 51), (2_001, 52), (2_002, 53)] {
            let r = report(i * 5_000, i * 10, lag);
            h.push(&r, previous.as_ref());
            previous = Some(r);
        }
        assert!(h.lag_growing("embed"), "grew on three samples in a row");
        assert!(!h.lag_growing("other"));
    }
}
