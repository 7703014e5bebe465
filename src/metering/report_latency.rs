//! Latency percentiles of a cost report: exact nearest-rank percentiles over the model calls of a
//! group. Exact rather than a sketch because the report holds every event of its window in memory
//! anyway (the metering topic is read whole); a group's latencies add 8 bytes per call to that.

/// p50, p95 and p99 of a group's model-call latencies in milliseconds; `None` when the group made
/// no model call (only cache hits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

impl Latency {
    /// The percentiles of `latencies_ms` (in any order; sorted here).
    pub fn of(mut latencies_ms: Vec<u64>) -> Self {
        latencies_ms.sort_unstable();
        Self {
            p50_ms: nearest_rank(&latencies_ms, 50),
            p95_ms: nearest_rank(&latencies_ms, 95),
            p99_ms: nearest_rank(&latencies_ms, 99),
        }
    }
}

/// The nearest-rank `percent`-th percentile of `sorted` (ascending): the value at rank
/// ⌈percent/100 × n⌉, so the smallest value that at least `percent`% of the values do not exceed.
/// Always one of the values, never an interpolation; `None` for no values.
pub fn nearest_rank(sorted: &[u64], percent: u32) -> Option<u64> {
    debug_assert!((1..=100).contains(&percent), "a percentile is in 1..=100");
    let rank = (percent as usize * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_the_textbook_example() {
        // Five values: the 30th percentile is the 2nd (⌈1.5⌉), the 50th the 3rd (⌈2.5⌉).
        let v = [15, 20, 35, 40, 50];
        assert_eq!(nearest_rank(&v, 5), Some(15));
        assert_eq!(nearest_rank(&v, 30), Some(20));
        assert_eq!(nearest_rank(&v, 40), Some(20));
        assert_eq!(nearest_rank(&v, 50), Some(35));
        assert_eq!(nearest_rank(&v, 100), Some(50));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn p50_p95_p99_of_a_hundred_and_of_twenty_values() {
        let hundred: Vec<u64> = (1..=100).rev().collect();
        let l = Latency::of(hundred);
        assert_eq!((l.p50_ms, l.p95_ms, l.p99_ms), (Some(50), Some(95), Some(99)));
        // Twenty values: p95 is rank 19, p99 rank ⌈19.8⌉ = 20 (the maximum), p50 rank 10.
        let twenty: Vec<u64> = (1..=20).map(|i| i * 10).collect();
        let l = Latency::of(twenty);
        assert_eq!((l.p50_ms, l.p95_ms, l.p99_ms), (Some(100), Some(190), Some(200)));
        // One value is every percentile; none is none.
        assert_eq!(Latency::of(vec![7]).p99_ms, Some(7));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }
}
