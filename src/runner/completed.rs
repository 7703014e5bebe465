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
//!
//! The metadata is read back from the group's commit, which anyone allowed to commit for the group
//! can write, and it is decoded in the rebalance callback: a map naming more than
//! [`MAX_OFFSETS`] offsets, or offsets past `i64::MAX`, is taken as forged and yields nothing.
//! The bound is on the offsets named, not the ranges (250 ranges of a million fit in 4 KB). It is
//! a constant rather than the partition window's capacity (`per_partition +
//! buffer_per_partition`): the window bounds the records *in flight*, not those finished above
//! the position — behind one slow record every later one keeps finishing for as long as it
//! runs, so a legitimate map names far more than the window holds. A million is well above what
//! a partition finishes behind one slow record (minutes at thousands a second) and at most a few
//! tens of MB and milliseconds to decode per partition. The encoder stops at the same bound, so
//! every map sluice writes decodes.

use std::collections::BTreeSet;
use std::fmt::Write;

const PREFIX: &str = "sluice1:";

/// Longest metadata written; below Kafka's default `offset.metadata.max.bytes` of 4096.
pub const MAX_LEN: usize = 3800;

/// Most offsets a map names (see the module doc): the encoder leaves out the highest beyond it,
/// the decoder takes a map naming more as forged.
pub const MAX_OFFSETS: i64 = 1_000_000;

/// Encodes `done` (all above `position`) for the commit at `position`; empty when nothing is done.
pub fn encode(position: i64, done: &BTreeSet<i64>) -> String {
    if done.is_empty() {
        return String::new();
    }
    let mut out = format!("{PREFIX}{position}:");
    let mut ranges = done.iter().map(|o| o - position).peekable();
    let mut first = true;
    let mut named = 0;
    while let Some(start) = ranges.next() {
        let mut end = start;
        while ranges.peek() == Some(&(end + 1)) {
            end = ranges.next().expect("peeked");
        }
        let end = end.min(start.saturating_add(MAX_OFFSETS - named - 1));
        if end < start {
            break;
        }
        named += end - start + 1;
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

/// A map of at most this many offsets, all within [`NEAR`] of its position, always fits.
pub const SMALL: usize = 150;
pub const NEAR: i64 = 1_000_000;

/// Whether [`encode`] names every offset of `done`: an exactly-once stage never commits a record
/// its map would leave out (the next owner would process it again). Cheap for the usual map of a
/// few ranges near the position; encodes otherwise.
pub fn fits(position: i64, done: &BTreeSet<i64>) -> bool {
    // Up to SMALL offsets within NEAR of the position: at most 14 characters each.
    let near = done.last().is_none_or(|last| last - position < NEAR);
    if done.len() <= SMALL && near {
        return true;
    }
    decode(position, &encode(position, done)).len() == done.len()
}

/// The offsets `metadata` says are done, if it was written for a commit at `position`. Anything
/// else — another tool's metadata, another position, a malformed entry, more than
/// [`MAX_OFFSETS`] offsets, an offset past `i64::MAX` — yields nothing.
pub fn decode(position: i64, metadata: &str) -> BTreeSet<i64> {
    let parse = || -> Option<Vec<(i64, i64)>> {
        let rest = metadata.strip_prefix(PREFIX)?;
        let (at, ranges) = rest.split_once(':')?;
        if at.parse::<i64>().ok()? != position {
            return None;
        }
        let mut offsets = Vec::new();
        let mut named: i64 = 0;
        for item in ranges.split(',').filter(|s| !s.is_empty()) {
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let (a, b): (i64, i64) = (a.parse().ok()?, b.parse().ok()?);
            // Offsets at or below the position are committed already.
            if a < 1 || b < a {
                return None;
            }
            // Counted before anything is built: a forged map costs its parsing only.
            named = named.checked_add(b - a + 1).filter(|n| *n <= MAX_OFFSETS)?;
            offsets.push((position.checked_add(a)?, position.checked_add(b)?));
        }
        Some(offsets)
    };
    parse().unwrap_or_default().into_iter().flat_map(|(a, b)| a..=b).collect()
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
    fn fits_tells_whether_the_map_names_every_offset() {
        assert!(fits(0, &BTreeSet::new()));
        assert!(fits(0, &(1..100_000).collect()), "one range");
        let scattered: BTreeSet<i64> = (0..5000).map(|i| 10 + 2 * i).collect();
        assert!(!fits(0, &scattered), "{} characters", encode(0, &scattered).len());
        let few: BTreeSet<i64> = (0..100).map(|i| 10 + 2 * i).collect();
        assert!(fits(0, &few));
        assert_eq!(decode(0, &encode(0, &few)), few);
    }

    #[test]
    fn long_maps_are_cut_below_the_brokers_limit() {
        let done: BTreeSet<i64> = (0..5000).map(|i| 10 + 2 * i).collect();
        let m = encode(0, &done);
        assert!(m.len() <= MAX_LEN);
        let back = decode(0, &m);
        assert!(!back.is_empty() && back.iter().all(|o| done.contains(o)));
    }

    #[test]
    fn maps_are_cut_at_the_offset_bound_and_still_decode() {
        let done: BTreeSet<i64> = (1..=MAX_OFFSETS + 500_000).chain([MAX_OFFSETS * 3]).collect();
        let m = encode(0, &done);
        assert_eq!(m, format!("sluice1:0:1-{MAX_OFFSETS}"), "the highest are left out");
        assert_eq!(decode(0, &m).len() as i64, MAX_OFFSETS);
    }

    #[test]
    fn a_map_naming_more_offsets_than_the_bound_is_forged() {
        // Each range is within the bound; together they are not.
        assert!(decode(0, "sluice1:0:1-600000,700001-1300000").is_empty());
        assert!(decode(0, "sluice1:0:1-1000000,1").is_empty(), "overlaps count too");
        // As many ranges of a million as 4 KB holds (over 200, 2×10⁸ offsets): refused before
        // a single offset is built.
        let mut forged = "sluice1:7:".to_owned();
        for start in (1i64..).step_by(1_000_001) {
            let item = format!("{start}-{},", start + 999_999);
            if forged.len() + item.len() > 4096 {
                break;
            }
            forged.push_str(&item);
        }
        assert!(forged.matches(',').count() > 200);
        let started = std::time::Instant::now();
        assert!(decode(7, &forged).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn offsets_past_the_end_of_i64_are_forged_not_an_overflow() {
        let near = i64::MAX - 10;
        assert!(decode(near, &format!("sluice1:{near}:5-20")).is_empty());
        assert!(decode(near, &format!("sluice1:{near}:{}", i64::MAX)).is_empty());
        assert_eq!(decode(near, &format!("sluice1:{near}:10")), BTreeSet::from([i64::MAX]));
    }
}
