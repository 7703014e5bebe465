//! The end-to-end oracle: every input id ends in an output or a dead letter — exactly one of the
//! two once duplicates are removed — and the duplicates are counted so a test can bound them.
//! Records are identified by their key, which is the document id everywhere in these tests
//! (`Harness::produce_docs`, `sluice produce`), and dead letters keep the input's key.

use std::collections::{BTreeMap, BTreeSet};

/// Where the input ids ended. Build it with [`Oracle::new`] or `Harness::oracle`, then assert on
/// [`Oracle::check`], the id sets and [`Oracle::duplicates`].
#[derive(Debug, Clone)]
pub struct Oracle {
    inputs: BTreeSet<String>,
    /// Copies of each id on the output topics.
    pub outputs: BTreeMap<String, usize>,
    /// Copies of each id on the dead-letter topics.
    pub dead_letters: BTreeMap<String, usize>,
}

impl Oracle {
    /// `outputs` and `dead_letters` are the keys of every record on those topics, with repeats.
    pub fn new(
        inputs: impl IntoIterator<Item = String>,
        outputs: impl IntoIterator<Item = String>,
        dead_letters: impl IntoIterator<Item = String>,
    ) -> Self {
        let count = |keys: &mut dyn Iterator<Item = String>| {
            let mut counts = BTreeMap::new();
            for k in keys {
                *counts.entry(k).or_insert(0) += 1;
            }
            counts
        };
        Self {
            inputs: inputs.into_iter().collect(),
            outputs: count(&mut outputs.into_iter()),
            dead_letters: count(&mut dead_letters.into_iter()),
        }
    }

    /// Input ids in neither an output nor a dead letter.
    pub fn missing(&self) -> BTreeSet<&str> {
        self.inputs
            .iter()
            .filter(|id| !self.outputs.contains_key(*id) && !self.dead_letters.contains_key(*id))
            .map(String::as_str)
            .collect()
    }

    /// Ids on the final topics that were never input.
    pub fn unexpected(&self) -> BTreeSet<&str> {
        self.outputs
            .keys()
            .chain(self.dead_letters.keys())
            .filter(|id| !self.inputs.contains(*id))
            .map(String::as_str)
            .collect()
    }

    /// Ids that reached an output and also a dead letter: a record must end in exactly one.
    pub fn in_both(&self) -> BTreeSet<&str> {
        self.outputs
            .keys()
            .filter(|id| self.dead_letters.contains_key(*id))
            .map(String::as_str)
            .collect()
    }

    /// Whether every input id has ended somewhere (duplicates aside).
    pub fn all_ended(&self) -> bool {
        self.missing().is_empty()
    }

    /// Ids that ended in an output.
    pub fn delivered(&self) -> BTreeSet<&str> {
        self.outputs.keys().map(String::as_str).collect()
    }

    /// Ids that ended in a dead letter.
    pub fn dead_lettered(&self) -> BTreeSet<&str> {
        self.dead_letters.keys().map(String::as_str).collect()
    }

    /// Copies beyond the first, over both kinds of topic.
    pub fn duplicates(&self) -> usize {
        self.outputs.values().chain(self.dead_letters.values()).map(|c| c - 1).sum()
    }

    /// Ids with more than one copy, and how many extra copies each has.
    pub fn duplicated(&self) -> BTreeMap<&str, usize> {
        let mut extra = BTreeMap::new();
        for (id, c) in self.outputs.iter().chain(&self.dead_letters).filter(|(_, c)| **c > 1) {
            *extra.entry(id.as_str()).or_insert(0) += c - 1;
        }
        extra
    }

    /// The most copies any one id has.
    pub fn max_copies(&self) -> usize {
        self.outputs.values().chain(self.dead_letters.values()).copied().max().unwrap_or(0)
    }

    /// Panics unless every input id ended exactly once modulo duplicates: nothing missing,
    /// nothing unexpected, nothing in both an output and a dead letter.
    pub fn check(&self) -> &Self {
        assert!(self.missing().is_empty(), "ids that ended nowhere: {:?}", self.missing());
        assert!(self.unexpected().is_empty(), "ids never input: {:?}", self.unexpected());
        assert!(
            self.in_both().is_empty(),
            "ids in an output and a dead letter: {:?}",
            self.in_both()
        );
        self
    }
}

/// At-least-once replays after one group event (a member joining, leaving, killed): at most the
/// records its members had not committed. Those are the ones in the partitions' windows
/// (`partitions × (per_partition + buffer_per_partition)`), plus the ones finished since the last
/// commit the coordinator accepted: over one commit interval, and one heartbeat interval more in
/// which a member does not yet know of a rebalance and the coordinator refuses its commits. A
/// member finishes at most `max_in_flight` records per `min_record_ms`.
pub struct ReplayBound {
    pub partitions: usize,
    pub per_partition: usize,
    pub buffer_per_partition: usize,
    /// Members whose uncommitted records the event replays.
    pub members: usize,
    pub max_in_flight: usize,
    pub commit_interval_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// The fastest a record can be processed.
    pub min_record_ms: u64,
}

impl ReplayBound {
    /// Records one event can replay.
    pub fn per_event(&self) -> usize {
        let windows = self.partitions * (self.per_partition + self.buffer_per_partition);
        let uncommitted_ms = self.commit_interval_ms + self.heartbeat_interval_ms;
        let finished = self.max_in_flight * (uncommitted_ms / self.min_record_ms + 1) as usize;
        windows + self.members * finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_oracle_sees_missing_unexpected_doubled_and_duplicated_ids() {
        let o = Oracle::new(s(&["a", "b", "c", "d"]), s(&["a", "a", "b", "x"]), s(&["b", "c"]));
        assert_eq!(o.missing(), BTreeSet::from(["d"]));
        assert_eq!(o.unexpected(), BTreeSet::from(["x"]));
        assert_eq!(o.in_both(), BTreeSet::from(["b"]));
        assert_eq!(o.duplicates(), 1);
        assert_eq!(o.max_copies(), 2);
        let ok = Oracle::new(s(&["a", "b"]), s(&["a", "a"]), s(&["b"]));
        ok.check();
        assert_eq!(
            (ok.delivered(), ok.dead_lettered()),
            (BTreeSet::from(["a"]), BTreeSet::from(["b"]))
        );
    }
}
