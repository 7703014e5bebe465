//! Which records of one dead-letter partition a redrive has finished with, as it is kept in the
//! redrive group's committed position: the committed offset (everything below it is finished)
//! plus, in the commit's metadata string, the finished offsets beyond it — the records redriven
//! past a record the run left in place (not selected by its filters, or held by the loop guard).
//! The metadata reads `redriven:105-109,112` (inclusive ranges), so an operator can read it in
//! `kafka-consumer-groups --describe --verbose`-like tools too.
//!
//! Whoever may commit for the redrive group can write that metadata, so it is read with bounds: a
//! redrive never finishes more than [`MAX_BEYOND`] offsets beyond its committed one (it stops
//! for lack of room first, as it does when the metadata would grow too long), and metadata naming
//! more is taken as forged and ignored — the ranges are counted before a single offset is built,
//! however many of them fit in the string. A million keeps the set at most a few tens of MB.

use std::collections::BTreeSet;

/// The metadata prefix; a commit without it (or with a foreign one) holds no extra offsets.
const PREFIX: &str = "redriven:";

/// Longest metadata a commit carries: Kafka's `offset.metadata.max.bytes` defaults to 4096.
pub const MAX_METADATA: usize = 3000;

/// Most finished offsets kept beyond the committed one (see the module doc).
pub const MAX_BEYOND: u64 = 1_000_000;

/// The finished offsets of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneSet {
    /// Every offset below this is finished (the offset to commit).
    next: i64,
    /// Finished offsets at or beyond `next`, never contiguous with it.
    beyond: BTreeSet<i64>,
}

impl DoneSet {
    /// From a committed position: `committed` (the partition's start when none) and its metadata.
    /// Unreadable ranges are skipped, offsets below `committed` dropped; metadata naming more than
    /// [`MAX_BEYOND`] offsets beyond it is ignored as a whole.
    pub fn from_commit(committed: i64, metadata: &str) -> Self {
        let mut ranges = Vec::new();
        let mut named: u64 = 0;
        for range in metadata.strip_prefix(PREFIX).unwrap_or("").split(',') {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) else { continue };
            let from = a.max(committed);
            if b >= from {
                named = named.saturating_add(b.abs_diff(from).saturating_add(1));
                ranges.push((from, b));
            }
        }
        if named > MAX_BEYOND {
            ranges.clear();
        }
        let beyond = ranges.into_iter().flat_map(|(a, b)| a..=b).collect();
        let mut set = Self { next: committed, beyond };
        set.advance();
        set
    }

    /// The offset to commit: every record below it is finished.
    pub fn next(&self) -> i64 {
        self.next
    }

    pub fn contains(&self, offset: i64) -> bool {
        offset < self.next || self.beyond.contains(&offset)
    }

    pub fn insert(&mut self, offset: i64) {
        if offset >= self.next {
            self.beyond.insert(offset);
            self.advance();
        }
    }

    /// Whether marking `offsets` finished keeps the metadata within [`MAX_METADATA`] and the
    /// offsets beyond the committed one within [`MAX_BEYOND`].
    pub fn has_room_for(&self, offsets: impl IntoIterator<Item = i64>) -> bool {
        let mut with = self.clone();
        offsets.into_iter().for_each(|o| with.insert(o));
        with.beyond.len() as u64 <= MAX_BEYOND && with.metadata().len() <= MAX_METADATA
    }

    /// The commit metadata: the finished offsets beyond [`DoneSet::next`] as ranges.
    pub fn metadata(&self) -> String {
        if self.beyond.is_empty() {
            return String::new();
        }
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for &o in &self.beyond {
            match ranges.last_mut() {
                Some((_, end)) if *end + 1 == o => *end = o,
                _ => ranges.push((o, o)),
            }
        }
        let text: Vec<String> = ranges
            .iter()
            .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
            .collect();
        format!("{PREFIX}{}", text.join(","))
    }

    /// Moves `next` over the finished offsets contiguous with it (never past `i64::MAX`).
    fn advance(&mut self) {
        while self.next < i64::MAX && self.beyond.remove(&self.next) {
            self.next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_offsets_beyond_a_gap_travel_in_the_metadata_and_come_back() {
        let mut set = DoneSet::from_commit(100, "");
        for o in [100, 101, 105, 106, 107, 109] {
            set.insert(o);
        }
        assert_eq!(set.next(), 102, "the contiguous prefix only");
        assert_eq!(set.metadata(), "redriven:105-107,109");
        let back = DoneSet::from_commit(set.next(), &set.metadata());
        assert_eq!(back, set);
        assert!(back.contains(101) && back.contains(106) && !back.contains(102));
        assert!(!back.contains(108));
    }

    #[test]
    fn filling_the_gap_advances_the_commit_and_empties_the_metadata() {
        let mut set = DoneSet::from_commit(10, "redriven:11-12");
        set.insert(10);
        assert_eq!((set.next(), set.metadata()), (13, String::new()));
    }

    #[test]
    fn foreign_or_stale_metadata_is_ignored() {
        assert_eq!(DoneSet::from_commit(5, "something else").metadata(), "");
        let set = DoneSet::from_commit(5, "redriven:1-3,x,7");
        assert_eq!((set.next(), set.metadata()), (5, "redriven:7".to_owned()));
    }

    #[test]
    fn room_is_measured_on_the_encoded_metadata() {
        let mut set = DoneSet::from_commit(0, "");
        let mut o = 1_000_000_000;
        while set.has_room_for([o]) {
            set.insert(o);
            o += 2;
        }
        assert!(set.metadata().len() <= MAX_METADATA);
        assert!(!set.has_room_for([o]), "a new range would not fit");
        assert!(set.has_room_for([o - 2]), "an offset already finished always fits");
        assert!(!set.has_room_for([o - 2, o]), "room is for every offset given");
    }

    #[test]
    fn metadata_naming_more_than_the_bound_is_ignored() {
        // Each range is within a million; together they are not.
        let set = DoneSet::from_commit(0, "redriven:10-500009,600000-1099999,1200000-1699999");
        assert_eq!((set.next(), set.metadata()), (0, String::new()));
        // As many ranges of a million as 3 KB holds (over 150): refused before any is built.
        let mut forged = "redriven:".to_owned();
        for start in (1i64..).step_by(1_000_001) {
            let item = format!("{start}-{},", start + 999_999);
            if forged.len() + item.len() > MAX_METADATA {
                break;
            }
            forged.push_str(&item);
        }
        assert!(forged.matches(',').count() > 150);
        let started = std::time::Instant::now();
        assert_eq!(DoneSet::from_commit(0, &forged).metadata(), "");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Offsets below the committed one do not count against the bound.
        let set = DoneSet::from_commit(2_000_000, "redriven:1-1999999,2000005");
        assert_eq!(set.metadata(), "redriven:2000005");
    }

    #[test]
    fn room_is_bounded_in_offsets_too() {
        let bound = MAX_BEYOND as i64;
        let set = DoneSet::from_commit(0, &format!("redriven:2-{}", bound + 1));
        assert_eq!(set.metadata(), format!("redriven:2-{}", bound + 1), "the bound itself is read");
        assert!(!set.has_room_for([bound + 3]), "one more beyond is past the bound");
        assert!(set.has_room_for([0]), "finishing the committed one moves it instead");
    }

    #[test]
    fn offsets_at_the_end_of_i64_do_not_overflow() {
        let near = i64::MAX - 2;
        let set = DoneSet::from_commit(near, &format!("redriven:{near}-{}", i64::MAX));
        assert_eq!(set.next(), i64::MAX);
        assert!(set.contains(i64::MAX) && set.contains(near));
        let mut set = DoneSet::from_commit(i64::MAX, "");
        set.insert(i64::MAX);
        assert!(set.contains(i64::MAX));
    }
}
