//! Where a redrive may republish a stage's dead letters, and the record it republishes.
//!
//! A dead letter is a record read from a topic anyone with produce rights can write, so what it
//! says about its origin steers nothing until it is checked against what sluice writes: the
//! runner honours origin headers only on the stage's own retry and deferred topics, and only when
//! they name the stage's input, so every letter sluice writes has `original_topic` = the stage's
//! input (a record with forged retry headers on a rung is dead-lettered at its own coordinates,
//! the rung topic, and is therefore refused here too). A letter naming any other topic, or a
//! partition the input does not have, is refused and reported — never republished.
//!
//! Republished records go where only the failing stage reads them:
//! - the stage's **first retry rung** when it has a ladder, with the retry headers the runner
//!   writes there (rung 1, due now, the letter's original coordinates as origin, its attempts and
//!   history), so the runner accepts it as its own and processes it at once;
//! - otherwise the stage's **input**, at the original partition, but only when no other stage of
//!   the topology reads that topic (it would process, and pay for, the record again); when one
//!   does, the redrive is refused with what to change.

use crate::avro::DeadLetter;
use crate::config::{StageSpec, Topology};
use crate::retry::state::{HeaderPair, REDRIVE_COUNT};
use crate::retry::{own_headers, Origin, RetryState};

/// Where a stage's republished records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The first rung of the stage's retry ladder.
    Rung { topic: String },
    /// The stage's input (no other stage reads it), at each letter's original partition.
    Input { topic: String },
}

impl Route {
    /// The route for `spec`'s letters, or why there is none.
    pub fn of(t: &Topology, spec: &StageSpec) -> Result<Self, String> {
        if let Some((topic, _)) = spec.retry.retry_topics().into_iter().next() {
            return Ok(Self::Rung { topic });
        }
        let others: Vec<&str> = t
            .stages
            .iter()
            .filter(|s| s.name != spec.name && s.input == spec.input)
            .map(|s| s.name.as_str())
            .collect();
        if others.is_empty() {
            return Ok(Self::Input { topic: spec.input.clone() });
        }
        Err(format!(
            "stage '{}' has no retry ladder, and its input '{}' is read by stage(s) {} too: \
             republishing there would make them process (and pay for) the records again. Give \
             stage '{}' a `retry.ladder` (redrive then republishes to its first rung, which only \
             it reads), then run again",
            spec.name,
            spec.input,
            others.join(", "),
            spec.name
        ))
    }

    pub fn topic(&self) -> &str {
        match self {
            Self::Rung { topic } | Self::Input { topic } => topic,
        }
    }
}

/// What a stage's letters must say to be republished: the stage's input, a partition it has.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub input: String,
    pub partitions: i32,
}

impl Accepted {
    /// Why `letter` cannot be republished, if it cannot.
    pub fn refusal(&self, letter: &DeadLetter) -> Option<String> {
        if letter.original_topic != self.input {
            return Some(format!(
                "its original topic '{}' is not the stage's input '{}': sluice never writes such \
                 a letter, so it is not republished",
                letter.original_topic.escape_debug(),
                self.input
            ));
        }
        let p = letter.original_partition;
        if !(0..self.partitions).contains(&p) {
            return Some(format!(
                "its original partition {p} does not exist on '{}' ({} partitions)",
                self.input, self.partitions
            ));
        }
        None
    }
}

/// A republished record: where it goes and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Republished {
    pub topic: String,
    /// Set for the input route (the original partition); the rung route partitions by key, as
    /// the runner does.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<HeaderPair>,
}

/// The header naming the dead letter a republished record was redriven from, `<dead-letter
/// topic>:P:O`: it travels with the record (retry rungs, a new dead letter), so what became of a
/// letter can be traced ([`crate::ops::dlq::fate`]).
pub const REDRIVEN_FROM: &str = "sluice-redriven-from";

/// `letter` (checked by [`Accepted::refusal`], its value present) republished along `route`,
/// its redrive count set to `count`, naming where it was redriven `from` (see
/// [`REDRIVEN_FROM`]), at `now_ms`.
pub fn republish(
    route: &Route,
    letter: &DeadLetter,
    count: u32,
    from: &str,
    now_ms: i64,
) -> Republished {
    let mut own = own_headers(&letter.original_headers);
    own.retain(|(k, _)| k != REDRIVE_COUNT && k != REDRIVEN_FROM);
    own.push((REDRIVE_COUNT.to_owned(), Some(count.to_string().into_bytes())));
    own.push((REDRIVEN_FROM.to_owned(), Some(from.as_bytes().to_vec())));
    let value = letter.original_value.clone().expect("a withheld value is not redriven");
    let key = letter.original_key.clone();
    match route {
        Route::Input { topic } => Republished {
            topic: topic.clone(),
            partition: Some(letter.original_partition),
            key,
            value,
            headers: own,
        },
        Route::Rung { topic } => {
            let origin = Origin {
                topic: letter.original_topic.clone(),
                partition: letter.original_partition,
                offset: letter.original_offset,
                timestamp_ms: letter.original_timestamp_ms,
            };
            let state = RetryState {
                attempts: letter.attempts.iter().map(|a| a.attempt).max().unwrap_or(0),
                history: letter.attempts.clone(),
                ..RetryState::fresh(origin)
            };
            let headers = state.headers_at(&own, 1, now_ms, now_ms);
            Republished { topic: topic.clone(), partition: None, key, value, headers }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::dlq::fixtures::letter;
    use crate::retry::state::{ORIGIN_TOPIC, RUNG};

    fn accepted() -> Accepted {
        Accepted { input: "t".into(), partitions: 2 }
    }

    #[test]
    fn only_letters_from_the_input_at_an_existing_partition_are_accepted() {
        assert_eq!(accepted().refusal(&letter()), None);
        let forged = DeadLetter { original_topic: "support.answers".into(), ..letter() };
        assert!(accepted().refusal(&forged).expect("refused").contains("support.answers"));
        let nowhere = DeadLetter { original_partition: 2, ..letter() };
        assert!(accepted().refusal(&nowhere).expect("refused").contains("partition 2"));
        let negative = DeadLetter { original_partition: -1, ..letter() };
        assert!(accepted().refusal(&negative).is_some());
    }

    #[test]
    fn a_rung_record_carries_what_the_runner_checks_on_rung_one() {
        let l = DeadLetter { original_value: Some(b"v".to_vec()), ..letter() };
        let r = republish(&Route::Rung { topic: "t.retry.1".into() }, &l, 2, "t.dlq:0:4", 1_000);
        assert_eq!((r.topic.as_str(), r.partition), ("t.retry.1", None));
        let here =
            Origin { topic: "t.retry.1".into(), partition: 0, offset: 3, timestamp_ms: None };
        let state = RetryState::parse(&r.headers, here, 1, 1_000).expect("what sluice writes");
        assert_eq!((state.rung, state.due_ms, state.attempts), (1, Some(1_000), 1));
        assert_eq!((state.origin.topic.as_str(), state.origin.offset), ("t", 7));
        assert_eq!(state.history, l.attempts);
        let count: Vec<_> = r.headers.iter().filter(|(k, _)| k == REDRIVE_COUNT).collect();
        assert_eq!(count, [&(REDRIVE_COUNT.to_owned(), Some(b"2".to_vec()))]);
        assert!(r.headers.contains(&("h".to_owned(), Some(b"v".to_vec()))), "own headers kept");
        let from: Vec<_> = r.headers.iter().filter(|(k, _)| k == REDRIVEN_FROM).collect();
        assert_eq!(from, [&(REDRIVEN_FROM.to_owned(), Some(b"t.dlq:0:4".to_vec()))]);
    }

    #[test]
    fn retry_headers_inside_a_letter_do_not_travel_to_the_input() {
        let mut l = DeadLetter { original_value: Some(b"v".to_vec()), ..letter() };
        l.original_headers.push((RUNG.to_owned(), Some(b"0".to_vec())));
        l.original_headers.push((ORIGIN_TOPIC.to_owned(), Some(b"x".to_vec())));
        l.original_headers.push((REDRIVEN_FROM.to_owned(), Some(b"t.dlq:0:1".to_vec())));
        let r = republish(&Route::Input { topic: "t".into() }, &l, 1, "t.dlq:0:9", 0);
        let from: Vec<_> = r.headers.iter().filter(|(k, _)| k == REDRIVEN_FROM).collect();
        assert_eq!(from, [&(REDRIVEN_FROM.to_owned(), Some(b"t.dlq:0:9".to_vec()))], "one, new");
        assert_eq!(r.partition, Some(1));
        assert!(!r.headers.iter().any(|(k, _)| k == RUNG || k == ORIGIN_TOPIC), "{:?}", r.headers);
        let rung = republish(&Route::Rung { topic: "t.retry.1".into() }, &l, 1, "t.dlq:0:9", 0);
        let origins: Vec<_> = rung.headers.iter().filter(|(k, _)| k == ORIGIN_TOPIC).collect();
        assert_eq!(origins, [&(ORIGIN_TOPIC.to_owned(), Some(b"t".to_vec()))]);
    }
}
