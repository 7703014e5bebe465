//! The labelled pairs through sluice's own [`SemanticIndex`], as the cache will run: the first
//! question of a pair is stored under its tenant's key, the second is looked up under its own.
//!
//! - [`Layout::Pairwise`]: an index holding only the pair's first question, so each pair is
//!   judged alone.
//! - [`Layout::Shared`]: every pair's first question in one index (each tenant's key holds about
//!   sixty), every second question looked up in it; an answer from any entry but the pair's own
//!   first question (or an identical text of the same tenant) is a wrong-entry answer.
//!
//! [`Guard::Off`] is the baseline: the same index with the literal guard given nothing to compare
//! (each entry's text is a distinct tag of letters with no literal, a lookup's text is empty), so
//! the most similar entry at or above the threshold answers; every such lookup is checked to have
//! had no candidate refused.

use std::collections::{BTreeMap, HashMap};

use sluice::policy::semantic::{IndexLimits, SemanticEntry, SemanticIndex};

use crate::entries::{entry, tenant};
use crate::pairs::{Label, Pair};

const NOW_MS: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guard {
    Off,
    On,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    Pairwise,
    Shared,
}

/// Lookups of one category at one threshold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub n: u32,
    /// Answered from the pair's own first question.
    pub own: u32,
    /// Answered from an entry of the very same question (see the module doc).
    pub repeat: u32,
    /// Answered from another entry.
    pub other: u32,
}

/// Which entry answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The pair's own first question.
    Own,
    /// The looked-up question itself, stored by another pair.
    Repeat,
    /// Any other entry.
    Other,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.n += o.n;
        self.own += o.own;
        self.repeat += o.repeat;
        self.other += o.other;
    }
}

/// Per category (`paraphrase/light`, …).
pub type Tallies = BTreeMap<String, Tally>;

/// The answer a lookup got with no threshold at all (threshold −1): what the index would return
/// at any threshold up to its similarity.
#[derive(Debug, Clone, Copy)]
pub struct Nearest {
    pub pair: usize,
    /// The pair whose entry answered, which entry that is, and the similarity.
    pub answer: Option<(usize, Answered, f32)>,
}

pub struct Run {
    pub per_threshold: Vec<(f32, Tallies)>,
    pub nearest: Vec<Nearest>,
}

/// A distinct text of letters only: no value, name, negation or lexicon word for the guard.
fn tag(mut i: usize) -> String {
    let mut out = String::from("zq");
    loop {
        out.push(char::from(b'a' + (i % 26) as u8));
        i /= 26;
        if i == 0 {
            return out;
        }
    }
}

fn stored(i: usize, p: &Pair, vectors: &HashMap<String, Vec<f32>>, guard: Guard) -> SemanticEntry {
    let text = match guard {
        Guard::On => p.a.clone(),
        Guard::Off => tag(i),
    };
    let answer = format!("The answer to: {}", p.a);
    entry(tenant(&p.tenant_a), text, vectors[&p.a].clone(), i.to_string(), answer, i as i64)
}

/// Which entry answered pair `i`'s lookup: pair `j`'s, of the lookup's own key.
fn answered(pairs: &[Pair], i: usize, j: usize) -> Answered {
    if j == i {
        Answered::Own
    } else if pairs[j].a == pairs[i].b {
        Answered::Repeat
    } else if pairs[j].a == pairs[i].a {
        Answered::Own
    } else {
        Answered::Other
    }
}

pub fn run(
    pairs: &[Pair],
    vectors: &HashMap<String, Vec<f32>>,
    layout: Layout,
    guard: Guard,
    thresholds: &[f32],
) -> Run {
    let limits = IndexLimits::default();
    let mut shared = SemanticIndex::new(limits);
    if layout == Layout::Shared {
        for (i, p) in pairs.iter().enumerate() {
            shared.insert(stored(i, p, vectors, guard), NOW_MS).expect("an entry");
        }
    }
    let mut per_threshold: Vec<(f32, Tallies)> =
        thresholds.iter().map(|t| (*t, Tallies::new())).collect();
    let mut nearest = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let mut alone = SemanticIndex::new(limits);
        let index = match layout {
            Layout::Shared => &mut shared,
            Layout::Pairwise => {
                alone.insert(stored(i, p, vectors, guard), NOW_MS).expect("an entry");
                &mut alone
            }
        };
        let text = match guard {
            Guard::On => p.b.as_str(),
            Guard::Off => "",
        };
        let key = tenant(&p.tenant_b);
        let mut answer = |threshold: f32| {
            let found = index.lookup(&key, &vectors[&p.b], text, threshold, NOW_MS);
            if guard == Guard::Off {
                assert!(found.guarded.is_empty(), "the baseline's guard refused nothing");
            }
            found.hit.map(|h| {
                let j: usize = h.entry.document_id.parse().expect("a pair's index");
                (j, answered(pairs, i, j), h.similarity)
            })
        };
        for (threshold, tallies) in &mut per_threshold {
            let tally = tallies.entry(p.category()).or_default();
            tally.n += 1;
            match answer(*threshold) {
                None => {}
                Some((_, a, _)) => count(tally, a),
            }
        }
        nearest.push(Nearest { pair: i, answer: answer(-1.0) });
    }
    check(pairs, &per_threshold, &nearest);
    Run { per_threshold, nearest }
}

/// The index answers at a threshold exactly what its nearest compatible entry is, when that is
/// similar enough: the counts from the unthresholded answers must match the lookups'.
fn check(pairs: &[Pair], per_threshold: &[(f32, Tallies)], nearest: &[Nearest]) {
    for (threshold, tallies) in per_threshold {
        let mut derived = Tallies::new();
        for n in nearest {
            let tally = derived.entry(pairs[n.pair].category()).or_default();
            tally.n += 1;
            match n.answer {
                Some((_, a, s)) if s >= *threshold => count(tally, a),
                _ => {}
            }
        }
        assert_eq!(&derived, tallies, "threshold {threshold}");
    }
}

fn count(tally: &mut Tally, a: Answered) {
    match a {
        Answered::Own => tally.own += 1,
        Answered::Repeat => tally.repeat += 1,
        Answered::Other => tally.other += 1,
    }
}

/// Whether an answer to pair `p`'s lookup is wrong: one from another entry (but a repeat), or
/// from the pair's own entry when that is a near miss or another tenant's.
pub fn wrong(p: &Pair, a: Answered) -> bool {
    match a {
        Answered::Repeat => false,
        Answered::Own => p.label != Label::Paraphrase,
        Answered::Other => true,
    }
}
