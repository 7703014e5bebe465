//! The records a replay's cost estimate is based on: a sample spread across the whole replayed
//! window (evenly spaced runs of records in every partition, in proportion to its share of the
//! window), not the window's oldest records — whose cost events are the first to age out of the
//! metering topic. For each sampled record: its document id, timestamp and trace id.

use std::time::Duration;

use rdkafka::message::{Headers, Message};

use super::plan::Plan;
use crate::avro::{Codec, Envelope};
use crate::call::trace_id_of;
use crate::config::KafkaSettings;
use crate::kafka::reader::{read_ranges, Range};

/// Runs per partition a sample is split into (fewer when the sample is smaller).
const RUNS: i64 = 16;

/// One sampled record of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampled {
    pub partition: i32,
    pub offset: i64,
    /// The document id (from the envelope; the record key when it does not decode).
    pub document_id: String,
    pub timestamp_ms: Option<i64>,
    /// From the record's `traceparent` header, when well formed.
    pub trace_id: Option<String>,
}

/// The ranges to read for a sample of about `budget` records of the plan's re-processed
/// windows: a window no larger than its share is read whole; a larger one in evenly spaced runs.
pub fn sample_ranges(plan: &Plan, budget: u64) -> Vec<Range> {
    let total: i64 = plan.partitions.iter().map(|p| p.records().max(0)).sum();
    let mut out = Vec::new();
    for p in plan.partitions.iter().filter(|p| p.records() > 0) {
        let window = p.records();
        let share = ((budget as i128 * window as i128 + total.max(1) as i128 - 1)
            / total.max(1) as i128) as i64;
        let share = share.clamp(1, window);
        if share == window {
            out.push(Range {
                topic: p.topic.clone(),
                partition: p.partition,
                from: p.new,
                to: p.current,
            });
            continue;
        }
        // Run i lies in the i-th of `runs` equal segments: at its start for the first, at its
        // end for the last, in between for the others.
        let runs = RUNS.min(share);
        for i in 0..runs {
            let seg_from = p.new + window * i / runs;
            let seg_len = p.new + window * (i + 1) / runs - seg_from;
            let len = (share * (i + 1) / runs - share * i / runs).min(seg_len);
            let from = seg_from + (seg_len - len) * i / (runs - 1).max(1);
            out.push(Range {
                topic: p.topic.clone(),
                partition: p.partition,
                from,
                to: from + len,
            });
        }
    }
    out
}

type Raw = (i32, i64, Option<String>, Option<Vec<u8>>, Option<i64>, Option<String>);

/// Reads the sample (blocking the calling task on a blocking thread) and decodes each record's
/// document id.
pub async fn read_sample(
    kafka: &KafkaSettings,
    codec: &Codec,
    ranges: Vec<Range>,
    patience: Duration,
) -> Result<Vec<Sampled>, rdkafka::error::KafkaError> {
    let kafka = kafka.clone();
    let raw: Vec<Raw> = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        read_ranges(&kafka, &ranges, patience, |m| {
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            let trace = m.headers().and_then(|h| {
                h.iter().filter(|h| h.key == "traceparent").last().and_then(|h| h.value)
            });
            let trace = trace.and_then(trace_id_of);
            let ts = m.timestamp().to_millis();
            out.push((m.partition(), m.offset(), key, m.payload().map(<[u8]>::to_vec), ts, trace));
        })?;
        Ok::<_, rdkafka::error::KafkaError>(out)
    })
    .await
    .expect("reader thread does not panic")?;
    let mut out = Vec::with_capacity(raw.len());
    for (partition, offset, key, payload, timestamp_ms, trace_id) in raw {
        let id = match codec.decode(payload.as_deref()).await {
            Ok(d) => Envelope::from_value(d.kind, d.value).ok().map(|e| e.document.id),
            Err(_) => None,
        };
        let document_id = id.or(key).unwrap_or_default();
        out.push(Sampled { partition, offset, document_id, timestamp_ms, trace_id });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::plan::PartitionPlan;
    use super::*;

    fn plan(windows: &[(i64, i64)]) -> Plan {
        let partitions = windows
            .iter()
            .enumerate()
            .map(|(i, (new, current))| PartitionPlan {
                topic: "t".into(),
                partition: i as i32,
                low: 0,
                high: *current,
                committed: Some(*current),
                current: *current,
                new: *new,
                metadata: String::new(),
            })
            .collect();
        let (group, topic, reset) = ("g".into(), "t".into(), "x".into());
        Plan { group, topic, reset, partitions, warnings: vec![] }
    }

    #[test]
    fn a_large_window_is_sampled_from_its_start_to_its_end_in_proportion() {
        let ranges = sample_ranges(&plan(&[(1_000, 101_000), (0, 300_000), (5, 5)]), 400);
        let of = |p: i32| ranges.iter().filter(|r| r.partition == p).collect::<Vec<_>>();
        let count = |p: i32| of(p).iter().map(|r| r.to - r.from).sum::<i64>();
        assert_eq!((count(0), count(1), count(2)), (100, 300, 0), "a quarter, three quarters");
        let first = of(0)[0];
        let last = of(0)[of(0).len() - 1];
        assert_eq!(first.from, 1_000, "from the window's start");
        assert_eq!(last.to, 101_000, "to its end");
        assert!(of(0).windows(2).all(|w| w[0].to <= w[1].from), "runs do not overlap");
    }

    #[test]
    fn a_window_within_the_budget_is_read_whole() {
        let ranges = sample_ranges(&plan(&[(10, 30)]), 1_000);
        let total: i64 = ranges.iter().map(|r| r.to - r.from).sum();
        assert_eq!(total, 20);
        assert!(ranges.windows(2).all(|w| w[0].to <= w[1].from));
        assert_eq!((ranges[0].from, ranges[ranges.len() - 1].to), (10, 30));
    }
}
