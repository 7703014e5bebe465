//! The offset rule, per partition: the position to store is the lowest offset received and not
//! yet completed, or one past the highest received when nothing is open. Records complete in
//! any order; the stored position never passes an unfinished record. Gaps in offsets
//! (compaction, transaction markers) need no special case.

use std::collections::BTreeSet;

#[derive(Debug, Default, Clone)]
pub struct Window {
    /// Offsets received and not completed.
    open: BTreeSet<i64>,
    /// Highest offset received so far.
    highest: Option<i64>,
    /// The position last returned by [`Window::complete`] (next offset to consume after restart).
    stored: Option<i64>,
    /// Offsets completed above the stored position (out of order): the completed-offset map.
    done: BTreeSet<i64>,
}

impl Window {
    /// Records that `offset` was received and is now in flight.
    pub fn open(&mut self, offset: i64) {
        // Before anything completes, the position is where this window began.
        self.stored.get_or_insert(offset);
        self.open.insert(offset);
        self.highest = Some(self.highest.map_or(offset, |h| h.max(offset)));
    }

    /// Records in flight (received, not completed).
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The lowest offset received and not completed.
    pub fn lowest_open(&self) -> Option<i64> {
        self.open.first().copied()
    }

    /// How many offsets completed above the stored position (out of order).
    pub fn done_len(&self) -> usize {
        self.done.len()
    }

    /// The position that may be stored now: everything below it is complete.
    pub fn committable(&self) -> Option<i64> {
        match self.open.first() {
            Some(lowest) => Some(*lowest),
            None => self.highest.map(|h| h + 1),
        }
    }

    /// Marks `offset` complete; returns the new position to store if it advanced.
    pub fn complete(&mut self, offset: i64) -> Option<i64> {
        if !self.open.remove(&offset) {
            return None;
        }
        self.done.insert(offset);
        let position = self.committable()?;
        if self.stored.is_some_and(|s| s >= position) {
            return None;
        }
        self.stored = Some(position);
        self.done = self.done.split_off(&position);
        Some(position)
    }

    /// The position stored last (or where the window began) and the offsets completed above it.
    pub fn progress(&self) -> Option<(i64, &BTreeSet<i64>)> {
        self.stored.map(|s| (s, &self.done))
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn out_of_order_completion_never_passes_an_open_record() {
        let mut w = Window::default();
        for o in 10..15 {
            w.open(o);
        }
        assert_eq!(w.complete(12), None, "10 and 11 are still open");
        assert_eq!(w.complete(14), None);
        assert_eq!(w.complete(10), Some(11));
        assert_eq!(w.complete(11), Some(13), "12 was already done, 13 is open");
        assert_eq!(w.complete(13), Some(15), "all done: one past the highest");
        assert!(w.is_empty());
    }

    #[test]
    fn gaps_between_offsets_are_skipped() {
        let mut w = Window::default();
        w.open(3);
        w.open(7);
        assert_eq!(w.complete(7), None);
        assert_eq!(w.complete(3), Some(8));
    }

    #[test]
    fn unknown_or_repeated_completions_change_nothing() {
        let mut w = Window::default();
        w.open(1);
        assert_eq!(w.complete(5), None);
        assert_eq!(w.complete(1), Some(2));
        assert_eq!(w.complete(1), None);
    }

    #[test]
    fn every_completion_order_stores_a_safe_position() {
        // Exhaustive over permutations of 5 records: the stored position is always
        // <= the lowest offset not yet completed.
        let offsets = [0i64, 1, 2, 3, 4];
        let mut perm = offsets;
        permute(&mut perm, 0, &mut |order| {
            let mut w = Window::default();
            offsets.iter().for_each(|o| w.open(*o));
            let mut done = std::collections::BTreeSet::new();
            for o in order {
                done.insert(*o);
                if let Some(p) = w.complete(*o) {
                    let lowest_open =
                        offsets.iter().find(|x| !done.contains(x)).copied().unwrap_or(5);
                    assert!(p <= lowest_open, "stored {p} with {lowest_open} open ({order:?})");
                }
            }
            assert_eq!(w.committable(), Some(5));
        });
    }

    fn permute(a: &mut [i64; 5], k: usize, f: &mut impl FnMut(&[i64])) {
        if k == a.len() {
            f(a);
            return;
        }
        for i in k..a.len() {
            a.swap(k, i);
            permute(a, k + 1, f);
            a.swap(k, i);
        }
    }
}
