//! Which dead letters are still outstanding: on the topic and not finished by a redrive or a
//! discard. What is finished is what the redrive group committed ([`DoneSet`]: its offset, and
//! the finished offsets beyond it in the commit's metadata, read with bounds) — the position
//! sluice's own runs keep, not anything a letter says. Counting reads no record: watermarks, the
//! redrive group's commit, and the offsets at the given instants.

use std::collections::BTreeMap;

use serde::Serialize;

use super::redrive::done_set::DoneSet;
use super::redrive::redrive_group;
use crate::config::{KafkaSettings, StageSpec};
use crate::ops::groups::{self, GroupError};

/// Dead letters on a stage's dead-letter topic, all of them and those still outstanding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Letters {
    pub all: i64,
    /// Not yet redriven or discarded (nor passed for good as unredrivable).
    pub outstanding: i64,
}

/// One partition of a dead-letter topic: its watermarks and what redrives finished of it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub low: i64,
    pub high: i64,
    pub done: DoneSet,
}

impl Finished {
    /// Whether the letter at `offset` is finished (or gone: below the log start).
    pub fn is_done(&self, offset: i64) -> bool {
        offset < self.low || self.done.contains(offset)
    }

    /// Letters in `from..high` (`from` at least the log start): all, and outstanding.
    pub fn letters_from(&self, from: i64) -> Letters {
        let from = from.clamp(self.low, self.high);
        let all = self.high - from;
        let finished = self.done.finished_in(from, self.high) as i64;
        Letters { all, outstanding: (all - finished).max(0) }
    }
}

/// Per partition of `spec`'s dead-letter topic, its watermarks and the redrive group's finished
/// set (blocking).
pub fn finished(
    kafka: &KafkaSettings,
    spec: &StageSpec,
) -> Result<BTreeMap<i32, Finished>, GroupError> {
    let group = redrive_group(spec);
    let found = groups::positions_with_metadata(kafka, &group, &spec.dead_letter_topic, None)?;
    Ok(found
        .into_iter()
        .map(|(p, metadata)| {
            let committed = p.committed.unwrap_or(p.low).max(p.low);
            let done = DoneSet::from_commit(committed, &metadata);
            (p.partition, Finished { low: p.low, high: p.high, done })
        })
        .collect())
}

/// Every letter of the partitions, all and outstanding.
pub fn count(parts: &BTreeMap<i32, Finished>) -> Letters {
    parts.values().map(|p| p.letters_from(p.low)).fold(Letters::default(), |a, b| Letters {
        all: a.all + b.all,
        outstanding: a.outstanding + b.outstanding,
    })
}

/// `spec`'s dead letters written at or after each of `since_ms` (by record timestamp), all and
/// outstanding, in the order given (blocking). `i64::MIN` counts the whole topic.
pub fn outstanding<const N: usize>(
    kafka: &KafkaSettings,
    spec: &StageSpec,
    since_ms: [i64; N],
) -> Result<[Letters; N], GroupError> {
    let parts = finished(kafka, spec)?;
    let ids: Vec<i32> = parts.keys().copied().collect();
    let mut counts = [Letters::default(); N];
    for (count, since) in counts.iter_mut().zip(since_ms) {
        let from: Vec<(i32, Option<i64>)> = if since == i64::MIN || ids.is_empty() {
            ids.iter().map(|p| (*p, Some(i64::MIN))).collect()
        } else {
            groups::offsets_at(kafka, &spec.dead_letter_topic, &ids, since)?
        };
        for (p, offset) in from {
            let Some(part) = parts.get(&p) else { continue };
            // No record at or after the instant: none of this partition counts.
            let l = part.letters_from(offset.unwrap_or(part.high));
            count.all += l.all;
            count.outstanding += l.outstanding;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_letters_are_those_no_run_finished() {
        let part = Finished { low: 2, high: 10, done: DoneSet::from_commit(5, "redriven:7-8") };
        assert_eq!(part.letters_from(i64::MIN), Letters { all: 8, outstanding: 3 }, "5, 6, 9");
        assert_eq!(part.letters_from(6), Letters { all: 4, outstanding: 2 });
        assert_eq!(part.letters_from(10), Letters { all: 0, outstanding: 0 });
        assert_eq!(part.letters_from(99), Letters { all: 0, outstanding: 0 });
    }
}
