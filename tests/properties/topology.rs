//! The topology loader (`config::compile`, `config::load`) on arbitrary YAML-ish text and on the
//! shipped topologies mutated line by line and value by value. No input panics, and a file that
//! does not compile comes back with at least one problem, each naming what is wrong.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use sluice::config::{compile, load, ConfigErrors, Topology};

use super::corpus;

fn shipped() -> &'static [(PathBuf, String)] {
    static SHIPPED: std::sync::OnceLock<Vec<(PathBuf, String)>> = std::sync::OnceLock::new();
    SHIPPED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("topologies/")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("shipped topology");
                (p, text)
            })
            .collect();
        files.sort();
        assert!(files.len() >= 2, "the shipped topologies");
        files
    })
}

/// Panics unless a failed compile lists problems, each with a message.
fn classified(result: &Result<Topology, ConfigErrors>) {
    if let Err(ConfigErrors(list)) = result {
        assert!(!list.is_empty(), "an error without a single problem");
        for e in list {
            assert!(!e.message.is_empty(), "a problem without a message: {e:?}");
        }
    }
}

/// Scalars that break parsers: extreme numbers, odd durations, YAML specials, flow openers.
const NASTY: &[&str] = &[
    "0",
    "-1",
    "18446744073709551616",
    "-9223372036854775808",
    "1e308",
    ".nan",
    ".inf",
    "~",
    "",
    "''",
    "[]",
    "{}",
    "[",
    "{a: ",
    "*nope",
    "&a x",
    "!!binary aGk=",
    "!tag x",
    "0x7fffffff",
    "99999999999999999999h",
    "584542046090y",
    "0ms",
    "1ns",
    "-5s",
    "1.5m",
    "999999999d",
    "\"\\u0000\"",
    "\"\\xff\"",
    "|\n  block",
    ">-",
    "? complex",
    "- item",
    "<<: *a",
    "ünïcödé",
];

#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(prop::sample::Index),
    DuplicateLine(prop::sample::Index),
    /// Replace what follows the line's first `: ` (or the whole line) with a nasty scalar.
    Value(prop::sample::Index, prop::sample::Index),
    Indent(prop::sample::Index, usize),
    Dedent(prop::sample::Index),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, String),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let idx = any::<prop::sample::Index>;
    prop_oneof![
        idx().prop_map(Edit::DeleteLine),
        idx().prop_map(Edit::DuplicateLine),
        (idx(), idx()).prop_map(|(l, v)| Edit::Value(l, v)),
        (idx(), 1..6usize).prop_map(|(l, n)| Edit::Indent(l, n)),
        idx().prop_map(Edit::Dedent),
        idx().prop_map(Edit::Truncate),
        (idx(), "[ a-z:\\-\\[\\]{},&*!|>#'\"\n]{0,24}").prop_map(|(l, s)| Edit::Insert(l, s)),
    ]
}

fn edit(text: &str, e: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match e {
        Edit::DeleteLine(i) => {
            lines.remove(i.index(n));
        }
        Edit::DuplicateLine(i) => {
            let i = i.index(n);
            lines.insert(i, lines[i].clone());
        }
        Edit::Value(i, v) => {
            let (i, nasty) = (i.index(n), NASTY[v.index(NASTY.len())]);
            lines[i] = match lines[i].split_once(": ") {
                Some((key, _)) => format!("{key}: {nasty}"),
                None => nasty.to_owned(),
            };
        }
        Edit::Indent(i, by) => {
            let i = i.index(n);
            lines[i] = format!("{}{}", " ".repeat(*by), lines[i]);
        }
        Edit::Dedent(i) => {
            let i = i.index(n);
            lines[i] = lines[i].trim_start().to_owned();
        }
        Edit::Truncate(i) => {
            let all = lines.join("\n");
            let cut = (0..=i.index(all.len() + 1).min(all.len()))
                .rev()
                .find(|c| all.is_char_boundary(*c))
                .unwrap_or(0);
            return all[..cut].to_owned();
        }
        Edit::Insert(i, s) => lines.insert(i.index(n + 1), s.clone()),
    }
    lines.join("\n")
}

/// The durations of the first stage a runner adds to its clocks (the shutdown deadline, retry
/// and ladder due times, the stage deadline).
fn stage_durations(t: &Topology) -> Vec<Duration> {
    let s = &t.stages[0];
    let mut all = vec![s.deadline, s.shutdown_grace, s.retry.initial_backoff, s.retry.max_backoff];
    all.extend(s.document_deadline);
    all.extend(s.retry.ladder.iter().copied());
    all
}

fn duration_text() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "y"]);
    (prop_oneof![1..1000u64, any::<u64>(), (1u64 << 30)..(1u64 << 40)], unit)
        .prop_map(|(n, u)| format!("{n}{u}"))
}

proptest! {
    #![proptest_config(super::config())]

    /// A duration the loader accepts can be added to `Instant::now()` and `SystemTime::now()`:
    /// the runner does both (shutdown deadline, retry due times), and an overflow there panics.
    #[test]
    fn every_accepted_duration_fits_the_clocks(
        grace in duration_text(),
        rung in duration_text(),
        backoff in duration_text(),
    ) {
        let (_, text) = &shipped()[0];
        let text = text
            .replace("shutdown_grace: 60s", &format!("shutdown_grace: {grace}"))
            .replace("ladder: [1m, 10m, 1h]", &format!("ladder: [1m, {rung}]"))
            .replace("max_backoff: 10s", &format!("max_backoff: {backoff}"));
        prop_assert!(text.contains(&grace) && text.contains(&rung) && text.contains(&backoff));
        let compiled = compile(Path::new("fuzz.yaml"), &text);
        classified(&compiled);
        if let Ok(t) = compiled {
            for d in stage_durations(&t) {
                prop_assert!(Instant::now().checked_add(d).is_some(), "{d:?} overflows an Instant");
                prop_assert!(SystemTime::now().checked_add(d).is_some(), "{d:?} overflows the clock");
            }
        }
    }

    #[test]
    fn arbitrary_yaml_ish_text_never_panics(text in "[ a-z0-9_.:\\-\\[\\]{},&*!|>#'\"\n\t]{0,200}") {
        classified(&compile(Path::new("fuzz.yaml"), &text));
    }

    #[test]
    fn arbitrary_unicode_never_panics(text in ".{0,120}") {
        classified(&compile(Path::new("fuzz.yaml"), &text));
    }

    #[test]
    fn mutated_shipped_topologies_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(arb_edit(), 1..5),
    ) {
        let (path, text) = &shipped()[which.index(shipped().len())];
        let mutated = edits.iter().fold(text.clone(), |t, e| edit(&t, e));
        classified(&compile(path, &mutated));
    }
}

/// Every saved topology: `*.ok.yaml` compiles; every other file fails with its problems listed
/// (the corpus holds YAML bombs, deep nesting, invalid UTF-8, extreme numbers and durations).
#[test]
fn the_saved_topology_corpus_is_classified_as_named() {
    for path in corpus::files("topology", ".yaml") {
        let name = corpus::name(&path);
        let result = load(&path);
        classified(&result);
        match (&result, name.ends_with(".ok.yaml")) {
            (Ok(_), true) | (Err(_), false) => {}
            (Ok(_), false) => panic!("{name} compiled; rename it *.ok.yaml if it should"),
            (Err(e), true) => panic!("{name}: {e}"),
        }
    }
}
