//! The literal guard. Sentence embeddings place "Refund order 1142" next to "Refund order 1143",
//! and "cancel" next to "don't cancel", closer than most rewordings of one question (measured on
//! tests/fixtures/semantic/pairs.jsonl): no similarity threshold separates them. So a reuse also
//! needs the two texts to agree on the literals that change an answer:
//!
//! - **values**: numbers and identifiers — every token with a digit (order ids, amounts with
//!   their currency, dates, versions, status codes, IPs), number words, e-mail addresses, domains,
//!   paths and quoted strings — as equal sets;
//! - **negations**: as many `not`/`no`/`never`/`n't` on each side;
//! - **exclusive words**: two texts naming different members of one group of the lexicon
//!   (`monthly`/`annual`, `enable`/`disable`, `Monday`/`Friday`, `lock`/`unlock`) conflict;
//! - **direction**: `from X to Y` against `from Y to X`;
//! - **names**: a capitalised word inside a sentence (a person, a place, a product: `Berlin`,
//!   `Python`, `Pro`) must appear, in any case, among the other text's words.
//!
//! Each rule errs towards a miss: a conflict costs one model call, a false hit a wrong answer.
//! What it cannot see (`jacket`/`backpack`, `me`/`my sister`) is left to the threshold.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use super::lexicon::{
    group_of, is_negation, number_word, DETERMINERS, ENDPOINT_STOPS, GROUPS, REVERSING_PREFIXES,
};

/// What of a text must match for another text's answer to be reused for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Literals {
    values: BTreeSet<String>,
    negations: u32,
    names: BTreeSet<String>,
    words: BTreeSet<String>,
    groups: BTreeMap<u16, BTreeSet<u16>>,
    from: BTreeSet<String>,
    to: BTreeSet<String>,
}

/// Why two texts may not share an answer. Its [`Conflict::kind`] is a closed set (a metric
/// label); its `Display` repeats the texts' literals, so it is for a reviewer, not for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    Values { only_a: Vec<String>, only_b: Vec<String> },
    Negations { a: u32, b: u32 },
    Exclusive { a: String, b: String },
    Reversed { word: String, reversed: String },
    Direction { word: String },
    Name { name: String },
}

impl Conflict {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Values { .. } => "value",
            Self::Negations { .. } => "negation",
            Self::Exclusive { .. } | Self::Reversed { .. } => "exclusive",
            Self::Direction { .. } => "direction",
            Self::Name { .. } => "name",
        }
    }
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Values { only_a, only_b } => write!(f, "values {only_a:?} vs {only_b:?}"),
            Self::Negations { a, b } => write!(f, "{a} negation(s) vs {b}"),
            Self::Exclusive { a, b } => write!(f, "'{a}' vs '{b}'"),
            Self::Reversed { word, reversed } => write!(f, "'{word}' vs '{reversed}'"),
            Self::Direction { word } => write!(f, "'{word}' is a source on one side only"),
            Self::Name { name } => write!(f, "'{name}' is named on one side only"),
        }
    }
}

/// Whether an answer to `a` may be reused for `b` as far as their literals go.
pub fn compatible(a: &str, b: &str) -> bool {
    Literals::of(a).conflict(&Literals::of(b)).is_none()
}

static QUOTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?:^|[\s(\[])(?:"([^"\n]{1,80})"|`([^`\n]{1,80})`|'([^'\n]{1,80})'(?:$|[\s).,;:!?\]]))"#,
    )
    .expect("a valid pattern")
});

/// One whitespace-separated token, its surrounding punctuation removed.
struct Token<'a> {
    text: &'a str,
    starts_sentence: bool,
    ends_clause: bool,
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    // A line is a sentence of its own (a subject line, a list item, a greeting).
    for line in text.lines() {
        sentence_tokens(line, &mut out);
    }
    out
}

fn sentence_tokens<'a>(line: &'a str, out: &mut Vec<Token<'a>>) {
    let mut starts_sentence = true;
    for raw in line.split_whitespace() {
        let closed = raw.trim_end_matches(['"', '\'', '`', ')', ']', '}', '>']);
        let ends_sentence = closed.ends_with(['.', '!', '?']);
        let ends_clause = ends_sentence || closed.ends_with([',', ';', ':']);
        let text = raw
            .trim_start_matches(['(', '[', '{', '"', '\'', '`', '<', '#'])
            .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '"', '\'', '`', '>']);
        out.push(Token { text, starts_sentence, ends_clause });
        starts_sentence = ends_sentence;
    }
}

/// A token with a digit, as compared: lowercase, thousands separators and a possessive dropped.
fn value(token: &str) -> String {
    let lower = token.to_lowercase();
    let lower = lower.strip_suffix("'s").unwrap_or(&lower);
    let chars: Vec<char> = lower.chars().collect();
    let digit = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    (0..chars.len())
        .filter(|&i| !(chars[i] == ',' && i > 0 && digit(i - 1) && digit(i + 1)))
        .map(|i| chars[i])
        .collect()
}

/// An e-mail address, a domain, a path or a snake_case name: a separator inside the token.
fn is_identifier(token: &str) -> bool {
    let inner = token.get(1..token.len().saturating_sub(1)).unwrap_or("");
    token.len() > 2 && inner.contains(['@', '.', '/', '_'])
}

impl Literals {
    /// The literals of `text`.
    pub fn of(text: &str) -> Self {
        let text =
            text.replace(['\u{2018}', '\u{2019}'], "'").replace(['\u{201c}', '\u{201d}'], "\"");
        let mut l = Self::default();
        for c in QUOTED.captures_iter(&text) {
            if let Some(q) = c.get(1).or(c.get(2)).or(c.get(3)) {
                l.values.insert(
                    q.as_str().split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase(),
                );
            }
        }
        let tokens = tokens(&text);
        let has_digit =
            |i: usize| tokens.get(i).is_some_and(|t| t.text.contains(|c: char| c.is_ascii_digit()));
        let mut stream: Vec<(String, bool)> = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            if t.text.contains(|c: char| c.is_ascii_digit()) {
                l.values.insert(value(t.text));
            } else if is_identifier(t.text) {
                l.values.insert(t.text.to_lowercase());
            }
            let parts: Vec<&str> = t.text.split(['-', '/']).filter(|p| !p.is_empty()).collect();
            for (j, part) in parts.iter().enumerate() {
                let part = part.strip_suffix("'s").unwrap_or(part).trim_end_matches('\'');
                let lower = part.to_lowercase();
                stream.push((lower.clone(), t.ends_clause && j + 1 == parts.len()));
                if part.is_empty() || part.contains(|c: char| c.is_ascii_digit()) {
                    continue;
                }
                l.words.insert(lower.clone());
                if is_negation(&lower) {
                    l.negations += 1;
                } else if let Some(digits) = number_word(&lower) {
                    l.values.insert(digits.to_owned());
                } else if let Some((g, m)) = group_of(&lower) {
                    // `may` is a month beside a number ("May 3"), otherwise a verb.
                    if lower != "may" || has_digit(i + 1) || i > 0 && has_digit(i - 1) {
                        l.groups.entry(g).or_default().insert(m);
                    }
                } else if is_name(part, t.starts_sentence && j == 0) {
                    l.names.insert(lower);
                }
            }
        }
        (l.from, l.to) = endpoints(&stream);
        l
    }

    /// Why an answer to `self`'s text may not be reused for `other`'s, if it may not.
    pub fn conflict(&self, other: &Self) -> Option<Conflict> {
        if self.values != other.values {
            let only = |a: &Self, b: &Self| a.values.difference(&b.values).cloned().collect();
            return Some(Conflict::Values { only_a: only(self, other), only_b: only(other, self) });
        }
        if self.negations != other.negations {
            return Some(Conflict::Negations { a: self.negations, b: other.negations });
        }
        for (g, mine) in &self.groups {
            if let Some(theirs) = other.groups.get(g).filter(|t| t.is_disjoint(mine)) {
                let name = |m: &BTreeSet<u16>| {
                    let first = *m.iter().next().expect("a group entry has a member");
                    GROUPS[*g as usize][first as usize].split('|').next().unwrap_or("").to_owned()
                };
                return Some(Conflict::Exclusive { a: name(mine), b: name(theirs) });
            }
        }
        self.one_way(other).or_else(|| other.one_way(self))
    }

    /// The conflicts that are checked in each direction.
    fn one_way(&self, other: &Self) -> Option<Conflict> {
        for word in self.words.iter().filter(|w| w.len() >= 4) {
            for p in REVERSING_PREFIXES {
                let reversed = format!("{p}{word}");
                if other.words.contains(&reversed)
                    && !other.words.contains(word)
                    && !self.words.contains(&reversed)
                {
                    return Some(Conflict::Reversed { word: word.clone(), reversed });
                }
            }
        }
        // A source here (and not also a destination) that is a destination there (only).
        let mut sources = self.from.difference(&self.to);
        if let Some(word) = sources.find(|w| other.to.contains(*w) && !other.from.contains(*w)) {
            return Some(Conflict::Direction { word: word.clone() });
        }
        let name = self.names.iter().find(|n| !other.words.contains(*n))?;
        Some(Conflict::Name { name: name.clone() })
    }

    /// Bytes held, roughly (for the index's memory accounting).
    pub fn approx_bytes(&self) -> usize {
        let strings = |s: &BTreeSet<String>| s.iter().map(|w| w.len() + 48).sum::<usize>();
        let groups = self.groups.values().map(|m| 64 + m.len() * 8).sum::<usize>();
        std::mem::size_of::<Self>()
            + [&self.values, &self.names, &self.words, &self.from, &self.to]
                .into_iter()
                .map(strings)
                .sum::<usize>()
            + groups
    }
}

/// A name: capitalised, not the pronoun `I`, and not merely the first word of a sentence unless
/// capitals follow inside it (`API`, `iPhone`).
fn is_name(part: &str, sentence_start: bool) -> bool {
    let lower = part.to_lowercase();
    if lower == "i" || lower.starts_with("i'") || !part.chars().any(char::is_uppercase) {
        return false;
    }
    !sentence_start || part.chars().skip(1).any(char::is_uppercase)
}

/// The words after `from` and after the `to` that goes with it (up to three each, past
/// determiners, up to a clause's end or a preposition).
fn endpoints(stream: &[(String, bool)]) -> (BTreeSet<String>, BTreeSet<String>) {
    let is = |w: &'static str| move |(x, _): &(String, bool)| x == w || w == "to" && x == "into";
    let Some(from) = stream.iter().position(is("from")) else { return Default::default() };
    let to = stream[from..]
        .iter()
        .position(is("to"))
        .map(|p| p + from)
        .or_else(|| stream[..from].iter().rposition(is("to")));
    let Some(to) = to else { return Default::default() };
    let segment = |start: usize| {
        let mut out = BTreeSet::new();
        for (w, ends) in &stream[start + 1..] {
            if ENDPOINT_STOPS.contains(&w.as_str()) || out.len() == 3 {
                break;
            }
            if !DETERMINERS.contains(&w.as_str()) {
                out.insert(w.clone());
            }
            if *ends {
                break;
            }
        }
        out
    };
    (segment(from), segment(to))
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
