//! How a run's output stream stalled, read from the records themselves: each output's timestamp
//! (stamped by the producing worker's client when it sent it) and the input partition its
//! document was read from (where the test placed it). Nothing here asks the workers what they
//! think happened.
//!
//! A partition's longest gap between two consecutive outputs, while it still had work, is the
//! time it made no progress: no owner, or an owner not yet reading it. With 50 ms model calls
//! and 16 in flight per partition, a healthy partition produces every few milliseconds.

use std::collections::{BTreeMap, HashMap};

/// One partition's first and last output and its gaps over 2 s (start, length), ms.
pub type Timeline = (i64, i64, Vec<(i64, i64)>);

/// The stalls of one run.
#[derive(Debug, Clone)]
pub struct Stalls {
    /// The first output's timestamp, ms since the epoch: the origin of every other figure.
    pub start_ms: i64,
    /// From the first output to the last, ms.
    pub spread_ms: i64,
    /// The longest time without any output at all, ms.
    pub longest_pause_ms: i64,
    /// Per input partition: the longest time between two of its outputs, ms, and when that gap
    /// began (ms since the first output of the run).
    pub per_partition: BTreeMap<i32, (i64, i64)>,
    /// Per input partition: its first and last output and every gap over 2 s (start, length),
    /// ms since the first output of the run: the timeline an operator would read.
    pub timeline: BTreeMap<i32, Timeline>,
}

impl Stalls {
    /// `ended`: every output's key (the document id) and timestamp; `placed`: id → (partition,
    /// offset) of its input record. Keys that were never placed are ignored.
    pub fn of(ended: &[(String, i64)], placed: &HashMap<String, (i32, i64)>) -> Self {
        let mut all: Vec<i64> = ended.iter().map(|(_, ts)| *ts).collect();
        all.sort_unstable();
        let start = all.first().copied().unwrap_or(0);
        let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (key, ts) in ended {
            if let Some((partition, _)) = placed.get(key) {
                by_partition.entry(*partition).or_default().push(*ts);
            }
        }
        for ts in by_partition.values_mut() {
            ts.sort_unstable();
        }
        let per_partition = by_partition
            .iter()
            .map(|(p, ts)| {
                (*p, longest_gap(ts).map(|(gap, at)| (gap, at - start)).unwrap_or((0, 0)))
            })
            .collect();
        let timeline = by_partition
            .iter()
            .map(|(p, ts)| {
                let gaps = ts
                    .windows(2)
                    .filter(|w| w[1] - w[0] > 2000)
                    .map(|w| (w[0] - start, w[1] - w[0]))
                    .collect();
                let (first, last) = (ts[0] - start, ts[ts.len() - 1] - start);
                (*p, (first, last, gaps))
            })
            .collect();
        Self {
            start_ms: start,
            spread_ms: all.last().map_or(0, |last| last - start),
            longest_pause_ms: longest_gap(&all).map_or(0, |(gap, _)| gap),
            per_partition,
            timeline,
        }
    }

    /// Each partition's outputs from first to last and its gaps over 2 s, one line each.
    pub fn timeline(&self) -> String {
        let lines: Vec<String> = self
            .timeline
            .iter()
            .map(|(p, (first, last, gaps))| {
                let gaps: Vec<String> = gaps
                    .iter()
                    .map(|(at, gap)| format!("{:.1} s at {:.1} s", secs(*gap), secs(*at)))
                    .collect();
                format!(
                    "  p{p}: outputs {:.1}–{:.1} s; gaps over 2 s: {}",
                    secs(*first),
                    secs(*last),
                    if gaps.is_empty() { "none".into() } else { gaps.join(", ") }
                )
            })
            .collect();
        lines.join("\n")
    }

    /// The longest any one partition went without progress, ms.
    pub fn worst_partition_ms(&self) -> i64 {
        self.per_partition.values().map(|(gap, _)| *gap).max().unwrap_or(0)
    }

    /// One line for a test's output and docs/BENCHMARKS.md.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .per_partition
            .iter()
            .map(|(p, (gap, at))| format!("p{p} {:.1} s at {:.1} s", secs(*gap), secs(*at)))
            .collect();
        format!(
            "outputs over {:.1} s, longest pause {:.1} s, longest per partition: {}",
            secs(self.spread_ms),
            secs(self.longest_pause_ms),
            parts.join(", ")
        )
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The longest gap between consecutive sorted timestamps, and where it began.
fn longest_gap(sorted: &[i64]) -> Option<(i64, i64)> {
    sorted.windows(2).map(|w| (w[1] - w[0], w[0])).max_by_key(|(gap, _)| *gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_that_stops_shows_its_gap_while_the_stream_as_a_whole_does_not() {
        let placed: HashMap<String, (i32, i64)> =
            [("a", 0), ("b", 0), ("c", 0), ("x", 1), ("y", 1), ("z", 1)]
                .into_iter()
                .map(|(k, p)| (k.to_owned(), (p, 0)))
                .collect();
        let ended: Vec<(String, i64)> =
            [("a", 1000), ("b", 1010), ("c", 9010), ("x", 1005), ("y", 5000), ("z", 9000)]
                .into_iter()
                .map(|(k, t)| (k.to_owned(), t))
                .collect();
        let s = Stalls::of(&ended, &placed);
        assert_eq!(s.spread_ms, 8010);
        assert_eq!(s.per_partition[&0], (8000, 10));
        assert_eq!(s.per_partition[&1], (4000, 4000));
        assert_eq!(s.worst_partition_ms(), 8000);
        assert_eq!(s.longest_pause_ms, 4000);
    }
}
