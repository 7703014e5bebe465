//! What became of each dead letter: outstanding, or finished by a redrive or a discard — and for
//! a redriven one, where its record went and whether the stage processed it or dead-lettered it
//! again.
//!
//! Everything here is checked against what sluice wrote before it is believed:
//! - **Finished** is the redrive group's committed position ([`super::outstanding::finished`]),
//!   which only sluice's runs write (read with bounds), never what a letter says.
//! - **Its record**: a redrive stamps each republished record with [`REDRIVEN_FROM`] (the dead-
//!   letter topic and the letter's `P:O`); the header travels with the record through the
//!   stage's retry rungs and into a new dead letter. A record naming a letter counts only when
//!   the letter is finished and the record carries the letter's own key and value (so a forged
//!   header names nothing it does not copy in full), and, in a new dead letter, a redrive count
//!   one higher than the letter's.
//! - **What became of it**: dead-lettered again when a newer letter read is its record; otherwise
//!   processed once the stage's group committed past the furthest place the record was seen (its
//!   first rung or the input, a later rung, the deferred topic), waiting before.
//!
//! Reading stays bounded: the newest [`SCAN`] records per partition of each topic the stage reads
//! (those written before the oldest letter looked for failed are skipped unread; the embedded
//! broker cannot look offsets up by time). A letter whose record is not found (discarded,
//! refused, or redriven before those records) is finished, without more said.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::message::Message;
use serde::Serialize;

use super::at::At;
use super::outstanding::{finished, Finished};
use super::read::{redrive_count, DlqError, DlqRecord};
use crate::avro::DeadLetter;
use crate::config::{StageSpec, Topology};
use crate::ops::groups;
use crate::ops::ranges::{read_ranges, Range};
use crate::retry::state::{read_headers, HeaderPair};

pub use super::redrive::route::REDRIVEN_FROM;

/// Records read per partition of each topic the stage reads, looking for redriven records: the
/// newest.
pub const SCAN: i64 = 10_000;

/// What became of one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Fate {
    /// No redrive or discard finished it.
    Outstanding,
    /// Redriven, and its record failed again: the newer letter at `again`.
    DeadLetteredAgain { again: At },
    /// Redriven to `topic` at `at`, and the stage's group went past the furthest place it was
    /// seen without dead-lettering it again.
    Processed { topic: String, at: At },
    /// Redriven; its record waits at `at` on `topic` for the stage.
    Waiting { topic: String, at: At },
    /// Finished by a discard, as unredrivable, or by a redrive whose record is no longer found.
    Finished,
}

impl Fate {
    pub fn is_outstanding(&self) -> bool {
        matches!(self, Self::Outstanding)
    }

    /// For people: `outstanding`, `redriven: processed (support.docs 0:12)`…
    pub fn describe(&self) -> String {
        match self {
            Self::Outstanding => "outstanding".into(),
            Self::DeadLetteredAgain { again } => {
                format!("redriven: dead-lettered again at {again}")
            }
            Self::Processed { topic, at } => format!("redriven: processed ({topic} {at})"),
            Self::Waiting { topic, at } => format!("redriven: waiting at {topic} {at}"),
            Self::Finished => "finished (discarded, unredrivable, or redriven earlier)".into(),
        }
    }
}

/// The header value naming letter `at` of `dead_letter_topic`: `<topic>:P:O`.
pub fn redriven_from(dead_letter_topic: &str, at: At) -> String {
    format!("{dead_letter_topic}:{at}")
}

/// The letter a [`REDRIVEN_FROM`] header names, when it names one of `dead_letter_topic`.
fn named(headers: &[HeaderPair], dead_letter_topic: &str) -> Option<At> {
    let (_, value) = headers.iter().rev().find(|(k, _)| k == REDRIVEN_FROM)?;
    let text = std::str::from_utf8(value.as_deref()?).ok()?;
    let (topic, at) = text.split_once(':')?;
    (topic == dead_letter_topic).then(|| At::parse(at).ok()).flatten()
}

/// A place a redriven record was seen: (topic index in the stage's reading order, topic, at).
type Sighting = (usize, String, At);
/// Where each letter's redriven record was seen.
type Seen = BTreeMap<At, Vec<Sighting>>;
/// The stage group's committed offset per (topic, partition).
type Committed = HashMap<(String, i32), i64>;
/// The letters looked for: their key and value.
type Wanted = BTreeMap<At, (Option<Vec<u8>>, Option<Vec<u8>>)>;

/// The fate of every letter of `records` (which were read from `spec`'s dead-letter topic).
pub async fn fates(
    t: &Topology,
    spec: &StageSpec,
    records: &[DlqRecord],
) -> Result<HashMap<At, Fate>, DlqError> {
    let (kafka, s) = (t.kafka.clone(), spec.clone());
    let parts = tokio::task::spawn_blocking(move || finished(&kafka, &s))
        .await
        .expect("the offsets thread does not panic")?;
    fates_with(t, spec, records, &parts).await
}

/// [`fates`], with the redrive group's finished sets already read ([`finished`]).
pub async fn fates_with(
    t: &Topology,
    spec: &StageSpec,
    records: &[DlqRecord],
    parts: &BTreeMap<i32, Finished>,
) -> Result<HashMap<At, Fate>, DlqError> {
    let done = |at: At| parts.get(&at.partition).is_some_and(|p| p.is_done(at.offset));
    let letters: BTreeMap<At, &DeadLetter> = records
        .iter()
        .filter_map(|r| Some((At::new(r.partition, r.offset), r.letter.as_ref().ok()?)))
        .collect();
    // The letters that say they are a redriven record of another: (named, (at, letter)).
    let mut claims: HashMap<At, Vec<(At, &DeadLetter)>> = HashMap::new();
    for (&at, &l) in &letters {
        if let Some(named) = named(&l.original_headers, &spec.dead_letter_topic) {
            claims.entry(named).or_default().push((at, l));
        }
    }
    let count = |l: &DeadLetter| redrive_count(&l.original_headers).ok();
    let mut out: HashMap<At, Fate> = HashMap::new();
    let mut searched: BTreeMap<At, &DeadLetter> = BTreeMap::new();
    for (&at, &letter) in &letters {
        if !done(at) {
            out.insert(at, Fate::Outstanding);
            continue;
        }
        let again = claims.get(&at).into_iter().flatten().find(|(a, l)| {
            *a != at
                && same_record(letter, l.original_key.as_deref(), l.original_value.as_deref())
                && count(letter).zip(count(l)).is_some_and(|(c, n)| n == c.saturating_add(1))
        });
        match again {
            Some((a, _)) => {
                out.insert(at, Fate::DeadLetteredAgain { again: *a });
            }
            None => {
                searched.insert(at, letter);
            }
        }
    }
    if searched.is_empty() {
        return Ok(out);
    }
    let since = searched.values().map(|l| l.failed_at_ms).min().unwrap_or(0);
    let topics = reads(t, spec);
    let owned: Wanted = searched
        .iter()
        .map(|(at, l)| (*at, (l.original_key.clone(), l.original_value.clone())))
        .collect();
    let (kafka, s) = (t.kafka.clone(), spec.clone());
    let (seen, committed) =
        tokio::task::spawn_blocking(move || sightings(&kafka, &s, &topics, since, &owned))
            .await
            .expect("the reader thread does not panic")?;
    for at in searched.keys() {
        let furthest = seen.get(at).and_then(|s| s.iter().max_by_key(|(i, _, a)| (*i, *a)));
        let fate = match furthest {
            None => Fate::Finished,
            Some((_, topic, a)) => {
                let past =
                    committed.get(&(topic.clone(), a.partition)).is_some_and(|c| *c > a.offset);
                match past {
                    true => Fate::Processed { topic: topic.clone(), at: *a },
                    false => Fate::Waiting { topic: topic.clone(), at: *a },
                }
            }
        };
        out.insert(*at, fate);
    }
    Ok(out)
}

/// Whether a record's key and value are the letter's own (a letter without a value names no
/// record: it was never redriven).
fn same_record(letter: &DeadLetter, key: Option<&[u8]>, value: Option<&[u8]>) -> bool {
    letter.original_value.is_some()
        && letter.original_key.as_deref() == key
        && letter.original_value.as_deref() == value
}

/// The topics the stage's group reads a redriven record on, in the order it travels: its retry
/// rungs (a redrive republishes to the first), or its input when it has none; its deferred topic
/// (with budgets).
fn reads(t: &Topology, spec: &StageSpec) -> Vec<String> {
    let mut topics: Vec<String> =
        spec.retry.retry_topics().into_iter().map(|(topic, _)| topic).collect();
    if topics.is_empty() {
        topics.push(spec.input.clone());
    }
    if t.budgets.is_some() {
        topics.push(spec.deferred_topic.clone());
    }
    topics
}

/// Where the records redriven from `letters` were seen on `topics` (written since `since_ms`,
/// among the newest [`SCAN`] of each partition), and the
/// stage group's committed offset of every partition seen (blocking).
fn sightings(
    kafka: &crate::config::KafkaSettings,
    spec: &StageSpec,
    topics: &[String],
    since_ms: i64,
    letters: &Wanted,
) -> Result<(Seen, Committed), DlqError> {
    let mut seen = Seen::new();
    let mut committed = HashMap::new();
    for (index, topic) in topics.iter().enumerate() {
        let Ok(positions) = groups::positions(kafka, &spec.group, topic, None) else { continue };
        let ranges: Vec<Range> = positions
            .iter()
            .map(|p| Range {
                topic: topic.clone(),
                partition: p.partition,
                from: p.low.max(p.high - SCAN),
                to: p.high,
            })
            .collect();
        for p in &positions {
            if let Some(c) = p.committed {
                committed.insert((topic.clone(), p.partition), c);
            }
        }
        read_ranges(kafka, &ranges, Duration::from_secs(5), |m| {
            if m.timestamp().to_millis().is_some_and(|ts| ts < since_ms) {
                return;
            }
            let headers = read_headers(m.headers());
            let Some(at) = named(&headers, &spec.dead_letter_topic) else { return };
            let Some((key, value)) = letters.get(&at) else { return };
            if value.is_some() && key.as_deref() == m.key() && value.as_deref() == m.payload() {
                let here = At::new(m.partition(), m.offset());
                seen.entry(at).or_default().push((index, topic.clone(), here));
            }
        })?;
    }
    Ok((seen, committed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderPair {
        (REDRIVEN_FROM.to_owned(), Some(v.as_bytes().to_vec()))
    }

    #[test]
    fn a_header_names_a_letter_of_this_topic_only() {
        let topic = "p.s.dlq";
        assert_eq!(named(&[header("p.s.dlq:2:7")], topic), Some(At::new(2, 7)));
        assert_eq!(named(&[header("p.other.dlq:2:7")], topic), None);
        assert_eq!(named(&[header("p.s.dlq:2@7")], topic), None);
        assert_eq!(
            named(&[header("p.s.dlq:1:1"), header("p.s.dlq:3:4")], topic),
            Some(At::new(3, 4))
        );
        assert_eq!(named(&[(REDRIVEN_FROM.to_owned(), None)], topic), None);
        assert_eq!(redriven_from(topic, At::new(2, 7)), "p.s.dlq:2:7");
    }

    #[test]
    fn a_record_is_the_letters_only_with_its_key_and_value() {
        use crate::ops::dlq::fixtures::letter;
        let l = DeadLetter { original_value: Some(b"v".to_vec()), ..letter() };
        let (k, v, w): (&[u8], &[u8], &[u8]) = (b"k", b"v", b"w");
        assert!(same_record(&l, Some(k), Some(v)));
        assert!(!same_record(&l, Some(k), Some(w)));
        assert!(!same_record(&l, None, Some(v)));
        assert!(!same_record(&letter(), Some(k), None), "a withheld value names nothing");
    }
}
