//! The gauges a stage's Kafka clients report: consumer lag per partition, assigned and paused
//! partitions, and the depth of the producer's queue.
//!
//! **Where lag comes from.** librdkafka already tracks, for every partition it fetches, the
//! partition's high watermark and the offset the runner stored (the end of the contiguous prefix
//! of done records), and with `statistics.interval.ms` set it hands both to the client context's
//! statistics callback as `consumer_lag_stored` (high watermark − stored offset; before anything is
//! stored, `consumer_lag`: high watermark − committed offset). The callback runs on the stage's
//! poll thread every interval, so the lag costs one JSON document per interval and nothing per
//! record; the alternative — asking the broker for watermarks on a timer — would add requests per
//! partition and a task to schedule, for numbers librdkafka fetches anyway. The lag counts records
//! not yet *done* (stored), not merely not yet read: records buffered or in flight in the window
//! still count, which is what "is the group keeping up?" asks. It is refreshed every
//! [`STATISTICS_INTERVAL_MS`] (unless the topology's consumer settings set
//! `statistics.interval.ms` themselves); a partition whose positions are both still unknown has
//! no series until they are.
//!
//! Assigned partitions follow the rebalance events (exact, at once); paused partitions (windows
//! full, so not read) and the producer's queue (messages not yet acknowledged by the broker:
//! `rd_kafka_outq_len`) are sampled at the same interval as the lag.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use prometheus::{IntGaugeVec, Opts};
use rdkafka::ClientConfig;
use serde::Deserialize;

use super::metrics;

/// How often librdkafka reports statistics to a stage's consumer, unless configured.
pub const STATISTICS_INTERVAL_MS: u64 = 5_000;

/// Turns on librdkafka's statistics for a stage's consumer: every [`STATISTICS_INTERVAL_MS`],
/// unless its settings chose an interval already.
pub fn enable_statistics(config: &mut ClientConfig) {
    if config.get("statistics.interval.ms").is_none() {
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
    }
}

pub(super) struct ClientGauges {
    pub(super) lag: IntGaugeVec,
    pub(super) assigned: IntGaugeVec,
    pub(super) paused: IntGaugeVec,
    pub(super) producer_queue: IntGaugeVec,
    /// The lag series each stage set last time, to remove those of partitions it lost.
    lag_series: Mutex<HashMap<String, BTreeSet<(String, i32)>>>,
}

pub(super) fn client_gauges() -> &'static ClientGauges {
    static GAUGES: OnceLock<ClientGauges> = OnceLock::new();
    GAUGES.get_or_init(|| {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid");
            metrics().registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        ClientGauges {
            lag: gauge(
                "consumer_lag_records",
                "Records of a partition not yet done by this stage: high watermark minus the \
                 stored (else committed) offset.",
                &["stage", "topic", "partition"],
            ),
            assigned: gauge(
                "assigned_partitions",
                "Partitions assigned to this stage's consumer (input, retry and deferred topics).",
                &["stage"],
            ),
            paused: gauge(
                "paused_partitions",
                "Assigned partitions not being read because their window is full.",
                &["stage"],
            ),
            producer_queue: gauge(
                "producer_queue_messages",
                "Messages the stage's producer has not had acknowledged yet (queued or in flight).",
                &["stage"],
            ),
            lag_series: Mutex::new(HashMap::new()),
        }
    })
}

/// The part of librdkafka's statistics JSON the gauges need (the rest — brokers, windows — is
/// skipped unread).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Stats {
    topics: HashMap<String, TopicStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TopicStats {
    /// By partition id as a string; "-1" is librdkafka's internal unassigned partition.
    partitions: HashMap<String, PartitionStats>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct PartitionStats {
    partition: i32,
    /// librdkafka's mark for a partition this member was assigned (the other partitions of a
    /// subscribed topic are listed too).
    desired: bool,
    /// High watermark − committed offset; -1 while either is unknown.
    consumer_lag: i64,
    /// High watermark − stored offset; -1 while either is unknown.
    consumer_lag_stored: i64,
}

impl Default for PartitionStats {
    fn default() -> Self {
        Self { partition: -1, desired: false, consumer_lag: -1, consumer_lag_stored: -1 }
    }
}

impl PartitionStats {
    /// The records not yet done; `None` while neither position is known.
    fn lag(&self) -> Option<i64> {
        [self.consumer_lag_stored, self.consumer_lag].into_iter().find(|lag| *lag >= 0)
    }
}

/// librdkafka's periodic statistics of a stage's consumer (its JSON, as the `stats_raw` callback
/// receives it), with what the runner sampled at the same moment.
pub struct ClientStatistics<'a> {
    pub stage: &'a str,
    pub json: &'a [u8],
    /// Assigned partitions whose window is full; `None` when it could not be sampled now.
    pub paused: Option<usize>,
    /// Messages in the stage producer's queue; `None` when there is no producer (yet).
    pub producer_queue: Option<i32>,
}

impl ClientStatistics<'_> {
    pub fn emit(self) {
        let g = client_gauges();
        if let Some(paused) = self.paused {
            g.paused.with_label_values(&[self.stage]).set(paused as i64);
        }
        if let Some(queued) = self.producer_queue {
            g.producer_queue.with_label_values(&[self.stage]).set(i64::from(queued));
        }
        let stats: Stats = match serde_json::from_slice(self.json) {
            Ok(stats) => stats,
            Err(e) => {
                tracing::debug!(stage = self.stage, error = %e, "unreadable librdkafka statistics");
                return;
            }
        };
        let mut now = BTreeSet::new();
        for (topic, t) in &stats.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0 && p.desired) {
                if let Some(lag) = p.lag() {
                    let partition = p.partition.to_string();
                    g.lag.with_label_values(&[self.stage, topic, &partition]).set(lag);
                    now.insert((topic.clone(), p.partition));
                }
            }
        }
        let mut series = g.lag_series.lock().expect("lag series lock");
        let before = series.insert(self.stage.to_owned(), now.clone()).unwrap_or_default();
        for (topic, partition) in before.difference(&now) {
            let _ = g.lag.remove_label_values(&[self.stage, topic, &partition.to_string()]);
        }
    }
}

/// A stage started: its gauges and the counters alerts take `increase()` of read 0 from now on
/// (a series that first appears at 1 hides its first increase).
pub(super) fn stage_started(stage: &str) {
    let g = client_gauges();
    g.assigned.with_label_values(&[stage]).set(0);
    g.paused.with_label_values(&[stage]).set(0);
    let m = metrics();
    m.in_flight.with_label_values(&[stage]).add(0);
    m.deferred.with_label_values(&[stage]).inc_by(0);
    for outcome in ["ok", "dead_lettered"] {
        m.records.with_label_values(&[stage, outcome]).inc_by(0);
    }
    for when in ["background", "handover"] {
        let failures = &super::runner_metrics::runner_metrics().commit_failures;
        failures.with_label_values(&[stage, when]).inc_by(0);
    }
}

/// A stage stopped: it has no partitions, no lag and no queue any more.
pub(super) fn stage_stopped(stage: &str) {
    let g = client_gauges();
    g.assigned.with_label_values(&[stage]).set(0);
    g.paused.with_label_values(&[stage]).set(0);
    g.producer_queue.with_label_values(&[stage]).set(0);
    let mut series = g.lag_series.lock().expect("lag series lock");
    for (topic, partition) in series.remove(stage).unwrap_or_default() {
        let _ = g.lag.remove_label_values(&[stage, &topic, &partition.to_string()]);
    }
}

/// A rebalance gave (`delta` > 0) or took partitions; never below zero (a revocation served
/// while the consumer closes, after the stage reset its gauges).
pub(super) fn partitions_changed(stage: &str, delta: i64) {
    let g = client_gauges().assigned.with_label_values(&[stage]);
    // Only the stage's poll thread changes its gauge (rebalance callbacks run there).
    g.set((g.get() + delta).max(0));
}

#[cfg(test)]
#[path = "client_stats_tests.rs"]
mod tests;
