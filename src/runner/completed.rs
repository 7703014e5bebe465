//! The completed-offset map: offsets a partition finished beyond its committed position, carried
//! in the commit's metadata so that the member taking the partition over skips them (as
//! Confluent's Parallel Consumer does). Without it, every record finished out of order above the
//! lowest unfinished one is processed — and paid for — again after each rebalance or crash.
//!
//! Format: `sluice1:<position>:<ranges>`, ranges relative to the position, e.g.
//! `sluice1:1200:3-5,9` = offsets 1203, 1204, 1205 and 1209 are done. The position is repeated so
//! that metadata left behind by a different position (an operator reset the offsets) is ignored.
//! Kafka caps metadata (`offset.metadata.max.bytes`, 4096 by default): past [`MAX_LEN`] the highest
//! offsets are left out, which only means they are processed again.

use std::collections::BTreeSet;
use std::fmt::Write;

const PREFIX: &str = "sluice1:";

/// Longest metadata written; below Kafka's default `offset.metadata.max.bytes` of 4096.
pub const MAX_LEN: usize = 3800;

/// Encodes `done` (all above `position`) for the commit at `position`; empty when nothing is done.
pub fn encode(position: i64, done: &BTreeSet<i64>) -> String {
    if done.is_empty() {
        return String::new();
    }
    let mut out = format!("{PREFIX}{position}:");
    let mut ranges = done.iter().map(|o| o - position).peekable();
    let mut first = true;
    while let Some(start) = ranges.next() {
        let mut end = start;
        while ranges.peek() == Some(&(end + 1)) {
            end = ranges.next().expect("peeked");
        }
        let mut item = String::new();
        let sep = if first { "" } else { "," };
        if start == end {
            let _ = write!(item, "{sep}{start}");
        } else {
            let _ = write!(item, "{sep}{start}-{end}");
        }
        if out.len() + item.len() > MAX_LEN {
            break;
        }
        out.push_str(&item);
        first = false;
    }
    out
}

/// The offsets `metadata` says are done, if it was written for a commit at `position`. Anything
/// else — another tool's metadata, another position, a malformed entry — yields nothing.
pub fn decode(position: i64, metadata: &str) -> BTreeSet<i64> {
    let parse = || -> Option<BTreeSet<i64>> {
        let rest = metadata.strip_prefix(PREFIX)?;
        let (at, ranges) = rest.split_once(':')?;
        if at.parse::<i64>().ok()? != position {
            return None;
        }
        let mut done = BTreeSet::new();
        for item in ranges.split(',').filter(|s| !s.is_empty()) {
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let (a, b): (i64, i64) = (a.parse().ok()?, b.parse().ok()?);
            // Offsets at or below the position are committed already; a huge range is forged.
            if a < 1 || b < a || b - a > 1_000_000 {
                return None;
            }
            done.extend((a..=b).map(|d| position + d));
        }
        Some(done)
    };
    parse().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_relative_to_the_position() {
        let done = BTreeSet::from([1203, 1204, 1205, 1209]);
        let m = encode(1200, &done);
        assert_eq!(m, "sluice1:1200:3-5,9");
        assert_eq!(decode(1200, &m), done);
        assert_eq!(encode(1200, &BTreeSet::new()), "");
    }

    #[test]
    fn metadata_of_another_position_or_tool_is_ignored() {
        let m = encode(1200, &BTreeSet::from([1201]));
        assert!(decode(1100, &m).is_empty(), "offsets were reset since");
        for other in
            ["", "{\"x\":1}", "sluice1:1200:", "sluice1:1200:0", "sluice1:1200:5-3", "sluice1:x:1"]
        {
            assert!(decode(1200, other).is_empty(), "{other}");
        }
    }

    #[test]
    fn long_maps_are_cut_below_the_brokers_limit() {
        let done: BTreeSet<i64> = (0..5000).map(|i| 10 + 2 * i).collect();
        let m = encode(0, &done);
        assert!(m.len() <= MAX_LEN);
        let back = decode(0, &m);
        assert!(!back.is_empty() && back.iter().all(|o| done.contains(o)));
    }
}
