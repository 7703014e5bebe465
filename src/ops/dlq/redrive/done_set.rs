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

use std::collections::BTreeMap;

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
    /// Finished offsets at or beyond `next` as inclusive ranges (first → last), neither
    /// touching each other nor `next`.
    beyond: BTreeMap<i64, i64>,
    /// How many offsets `beyond` holds.
    count: u64,
    /// How long `beyond`'s ranges are as the metadata writes them, each with a comma.
    text: usize,
}

/// The length of range `a..=b` in the metadata, with its comma.
fn text_len(a: i64, b: i64) -> usize {
    let digits = |n: i64| n.to_string().len();
    digits(a) + if a == b { 0 } else { 1 + digits(b) } + 1
}

impl DoneSet {
    fn empty(next: i64) -> Self {
        Self { next, beyond: BTreeMap::new(), count: 0, text: 0 }
    }

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
        ranges.sort_unstable();
        let mut set = Self::empty(committed);
        let mut merged: Option<(i64, i64)> = None;
        for (a, b) in ranges {
            merged = match merged {
                Some((ma, mb)) if a <= mb.saturating_add(1) => Some((ma, mb.max(b))),
                Some((ma, mb)) => {
                    set.put(ma, mb);
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((a, b)) = merged {
            set.put(a, b);
        }
        set.advance();
        set
    }

    /// The offset to commit: every record below it is finished.
    pub fn next(&self) -> i64 {
        self.next
    }

    pub fn contains(&self, offset: i64) -> bool {
        offset < self.next || self.holding(offset).is_some()
    }

    /// How many offsets in `from..to` are finished.
    pub fn finished_in(&self, from: i64, to: i64) -> u64 {
        if to <= from {
            return 0;
        }
        let below = self.next.clamp(from, to).abs_diff(from);
        let beyond: u64 = self
            .beyond
            .iter()
            .map(|(a, b)| {
                let (a, b) = ((*a).max(from).max(self.next), (*b).min(to - 1));
                if b >= a {
                    b.abs_diff(a) + 1
                } else {
                    0
                }
            })
            .sum();
        below + beyond
    }

    pub fn insert(&mut self, offset: i64) {
        if self.contains(offset) {
            return;
        }
        let left = offset.checked_sub(1).and_then(|o| self.holding(o));
        let right = offset.checked_add(1).filter(|o| self.beyond.contains_key(o));
        let first = left.map_or(offset, |a| self.take(a).0);
        let last = right.map_or(offset, |a| self.take(a).1);
        self.put(first, last);
        self.advance();
    }

    /// Whether marking `offsets` finished keeps the metadata within [`MAX_METADATA`] and the
    /// offsets beyond the committed one within [`MAX_BEYOND`]. Only the ranges the offsets touch
    /// are copied: O(offsets), whatever the set holds.
    pub fn has_room_for(&self, offsets: impl IntoIterator<Item = i64>) -> bool {
        let offsets: Vec<i64> = offsets.into_iter().collect();
        let mut touched = Self::empty(self.next);
        for &o in &offsets {
            for near in [o.checked_sub(1), Some(o), o.checked_add(1)].into_iter().flatten() {
                if let Some(a) = self.holding(near) {
                    if !touched.beyond.contains_key(&a) {
                        touched.put(a, self.beyond[&a]);
                    }
                }
            }
        }
        let (count, text) = (touched.count, touched.text);
        offsets.into_iter().for_each(|o| touched.insert(o));
        let count = self.count - count + touched.count;
        let text = self.text - text + touched.text;
        count <= MAX_BEYOND && Self::metadata_len(text) <= MAX_METADATA
    }

    /// The commit metadata: the finished offsets beyond [`DoneSet::next`] as ranges.
    pub fn metadata(&self) -> String {
        if self.beyond.is_empty() {
            return String::new();
        }
        let text: Vec<String> = self
            .beyond
            .iter()
            .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
            .collect();
        format!("{PREFIX}{}", text.join(","))
    }

    /// The metadata's length for ranges of `text` length (commas included).
    fn metadata_len(text: usize) -> usize {
        if text == 0 {
            0
        } else {
            PREFIX.len() + text - 1
        }
    }

    /// The first offset of the range holding `offset`, if any.
    fn holding(&self, offset: i64) -> Option<i64> {
        let (a, b) = self.beyond.range(..=offset).next_back()?;
        (*b >= offset).then_some(*a)
    }

    fn put(&mut self, a: i64, b: i64) {
        self.count += b.abs_diff(a) + 1;
        self.text += text_len(a, b);
        self.beyond.insert(a, b);
    }

    fn take(&mut self, a: i64) -> (i64, i64) {
        let b = self.beyond.remove(&a).expect("a range held");
        self.count -= b.abs_diff(a) + 1;
        self.text -= text_len(a, b);
        (a, b)
    }

    /// Moves `next` over the finished offsets contiguous with it (never past `i64::MAX`, which
    /// then stays in `beyond`).
    fn advance(&mut self) {
        if !self.beyond.contains_key(&self.next) || self.next == i64::MAX {
            return;
        }
        let (_, b) = self.take(self.next);
        if b == i64::MAX {
            self.next = i64::MAX;
            self.put(i64::MAX, i64::MAX);
        } else {
            self.next = b + 1;
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
    fn finished_offsets_are_counted_in_a_range() {
        let set = DoneSet::from_commit(10, "redriven:12-14,20");
        assert_eq!(set.finished_in(0, 30), 10 + 3 + 1);
        assert_eq!(set.finished_in(5, 13), 5 + 1, "5..10 and 12");
        assert_eq!(set.finished_in(10, 12), 0);
        assert_eq!(set.finished_in(14, 21), 2);
        assert_eq!(set.finished_in(21, 21), 0);
        assert_eq!(set.finished_in(30, 20), 0);
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

    /// Review #11: the room check, which copies only the ranges it touches, agrees with
    /// inserting into a full copy, over gaps, merges and the committed offset moving.
    #[test]
    fn room_agrees_with_inserting_into_a_copy() {
        let mut set = DoneSet::from_commit(10, "redriven:12-14,20,22-30");
        let batches: [&[i64]; 6] = [&[11], &[10, 15, 16], &[21, 19], &[5, 40, 41, 43], &[42], &[]];
        for batch in batches {
            let mut copy = set.clone();
            batch.iter().for_each(|&o| copy.insert(o));
            let fits = copy.metadata().len() <= MAX_METADATA && copy.count <= MAX_BEYOND;
            assert_eq!(set.has_room_for(batch.iter().copied()), fits);
            let held: u64 = copy.beyond.iter().map(|(a, b)| b.abs_diff(*a) + 1).sum();
            assert_eq!(copy.count, held);
            assert_eq!(DoneSet::metadata_len(copy.text), copy.metadata().len());
            set = copy;
        }
        assert_eq!((set.next(), set.metadata()), (17, "redriven:19-30,40-43".to_owned()));
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
