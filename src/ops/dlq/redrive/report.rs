//! What a redrive or a discard found and did: the plan (records per original topic and error
//! class), what it left in place and why, and the counts of the summary.

use serde::Serialize;

use crate::avro::DeadLetter;
use crate::ops::dlq::read::clip;

/// Entries kept per list of a report; the counts cover every letter.
pub const KEPT: usize = 100;
/// Characters kept of a text read from a letter (its key, its original topic).
const TEXT: usize = 200;
/// Characters kept of a reason (which may quote a letter).
const REASON: usize = 300;

/// The outcome of `sluice dlq redrive` or `sluice dlq discard`, dry run or not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedriveReport {
    /// `redrive` or `discard`.
    pub action: &'static str,
    pub stage: String,
    pub dead_letter_topic: String,
    /// The consumer group holding the redrive's position in the dead-letter topic.
    pub group: String,
    /// False for a dry run: nothing was produced or committed.
    pub executed: bool,
    /// Where a redrive republishes: the stage's first retry rung, or its input when it has no
    /// ladder and no other stage reads the input. None for a discard.
    pub republish_to: Option<String>,
    /// Whether each batch and the position committed in one Kafka transaction (exactly once);
    /// false on the embedded broker, which has no transactions (at least once), and in dry runs.
    pub transactional: bool,
    /// Records this run selected to redrive, per original topic and error class.
    pub plan: Vec<PlanRow>,
    /// Records republished and committed.
    pub redriven: usize,
    /// Letters acknowledged without republishing (`sluice dlq discard`) and committed past.
    pub discarded: usize,
    /// Left in place: already redriven `--max-redrives` times (the first [`KEPT`]).
    pub loop_guarded: Vec<Skipped>,
    /// How many letters the loop guard left in place.
    pub loop_guarded_count: usize,
    /// Can never be redriven: the record is not a dead letter, it names a destination sluice
    /// never writes (not the stage's input, or a partition the input lacks), its value was
    /// withheld (a redacting stage), or its redrive count is unreadable. The position moves past
    /// them; the reason says which. The first [`KEPT`].
    pub unredrivable: Vec<Skipped>,
    /// How many letters can never be redriven.
    pub unredrivable_count: usize,
    /// Not selected by the filters: left for a later run.
    pub passed_over: usize,
    /// Still on the topic, finished by an earlier run (redriven, discarded or unredrivable):
    /// with `--at`, of the positions named only; otherwise every finished letter before the
    /// run's start (not read again, so whatever the other filters) and the selected ones after.
    pub done_before: usize,
    /// Selected but not redriven (or discarded): the whole plan in a dry run; after
    /// `--execute`, what an error (see `stopped`) left.
    pub remaining: usize,
    /// Why the run stopped before the end, if it did; what was acknowledged is committed.
    pub stopped: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRow {
    pub original_topic: String,
    pub error_class: String,
    pub records: usize,
}

/// A dead letter left where it is, with why; texts taken from the letter are cut to 200
/// characters (and the reason to 300), ending in `…` when cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub partition: i32,
    pub offset: i64,
    /// The original key as text (lossy when not UTF-8).
    pub key: Option<String>,
    pub original_topic: Option<String>,
    pub error_class: Option<String>,
    pub redrive_count: Option<u32>,
    pub reason: String,
}

impl Skipped {
    pub fn new(partition: i32, offset: i64, letter: Option<&DeadLetter>, reason: String) -> Self {
        Self {
            partition,
            offset,
            key: letter.and_then(|l| l.original_key.as_deref()).map(|k| {
                // At most 4 bytes a character: no more is decoded than is kept.
                let head = &k[..k.len().min(4 * TEXT + 4)];
                clip(&String::from_utf8_lossy(head), TEXT)
            }),
            original_topic: letter.map(|l| clip(&l.original_topic, TEXT)),
            error_class: letter.map(|l| l.error_class.symbol().to_owned()),
            redrive_count: None,
            reason: clip(&reason, REASON),
        }
    }
}

impl RedriveReport {
    /// Records selected to redrive (the sum of the plan).
    pub fn planned(&self) -> usize {
        self.plan.iter().map(|r| r.records).sum()
    }

    pub(super) fn add_to_plan(&mut self, letter: &DeadLetter) {
        let (topic, class) = (&letter.original_topic, letter.error_class.symbol());
        match self.plan.iter_mut().find(|r| r.original_topic == *topic && r.error_class == class) {
            Some(row) => row.records += 1,
            None => self.plan.push(PlanRow {
                original_topic: topic.clone(),
                error_class: class.to_owned(),
                records: 1,
            }),
        }
    }

    /// Counts a letter left in place by the loop guard, keeping the first [`KEPT`].
    pub(super) fn guarded(&mut self, s: Skipped) {
        self.loop_guarded_count += 1;
        if self.loop_guarded.len() < KEPT {
            self.loop_guarded.push(s);
        }
    }

    /// Counts a letter that can never be redriven, keeping the first [`KEPT`].
    pub(super) fn refused(&mut self, s: Skipped) {
        self.unredrivable_count += 1;
        if self.unredrivable.len() < KEPT {
            self.unredrivable.push(s);
        }
    }

    /// Records stop to the first reason given.
    pub(super) fn stop(&mut self, reason: String) {
        self.stopped.get_or_insert(reason);
    }
}
