//! Hostile input to the parsers that read what anyone can write: the Confluent-framed Avro
//! decoder ([`avro`]), the topology loader ([`topology`]), and the retry and trace header parsers
//! ([`headers`]). Each has property tests (proptest, case counts bounded so the whole binary runs
//! in seconds in a debug build) and a saved corpus in `tests/fuzz_corpus/`, replayed on every
//! run. The properties: no input panics; every failure is classified (a malformed record, a
//! listed topology problem, a named header); and what sluice writes reads back as written.

mod avro;
mod corpus;
mod headers;
#[path = "../common/raw_headers.rs"]
mod raw_headers;
mod topology;

use proptest::test_runner::Config;

/// Cases per property: enough to find shallow bugs on every run, few enough for a debug build
/// on two cores. Raise it locally with `PROPTEST_CASES=100000` for a longer search.
pub fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    Config { cases, ..Config::default() }
}
