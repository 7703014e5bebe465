//! Unit tests of [`super`]: a record's own processing, unknown, sampling error, the cache.
use std::path::Path;

use super::*;
use crate::config::compile;

fn event(id: &str, doc: &str, cost: i64, cached: bool, at: i64, attempt: i32) -> CostEvent {
    CostEvent {
        event_id: id.into(),
        timestamp_ms: at,
        stage: "answer".into(),
        document_id: doc.into(),
        provider: "sim".into(),
        model_requested: "m".into(),
        model_served: "m".into(),
        prompt_version: Some("answer@2".into()),
        cost_micro_usd: cost,
        cached,
        attempt,
        ..CostEvent::sample()
    }
}

fn record(offset: i64, doc: &str, at: i64) -> Sampled {
    Sampled {
        partition: 0,
        offset,
        document_id: doc.into(),
        timestamp_ms: Some(at),
        trace_id: None,
    }
}

fn topology(cache: &str) -> Topology {
    let yaml = format!(
        r#"
pipeline: p
providers:
  sim: {{ kind: simulated }}
prompts:
  answer@1: {{ system: "s", user: "{{{{document}}}}" }}
  answer@2: {{ system: "s2", user: "{{{{document}}}}" }}
{cache}
inputs:
  p.docs: {{}}
stages:
  answer:
    kind: generate
    input: p.docs
    output: p.out
    model: {{ provider: sim, name: m }}
    generate: {{ prompt: answer@2 }}
"#
    );
    compile(Path::new("t.yaml"), &yaml).expect("compiles")
}

fn estimated(a: &Amount) -> (u64, u64, u64) {
    match a {
        Amount::Estimated { expected_micro_usd, low_micro_usd, high_micro_usd } => {
            (*expected_micro_usd, *low_micro_usd, *high_micro_usd)
        }
        Amount::Unknown { reason } => panic!("unknown: {reason}"),
    }
}

#[test]
fn a_record_pays_what_its_own_first_processing_paid_not_its_documents_history() {
    let t = topology("");
    let events = vec![
        // d1 was processed for an older record at 100 (paid 500), then for the sampled
        // record at 1_000: a failed attempt (30) and a retry (70); a later replay paid 90.
        event("old", "d1", 500, false, 100, 1),
        event("a1", "d1", 30, false, 1_000, 1),
        event("a2", "d1", 70, false, 1_050, 2),
        event("replayed", "d1", 90, false, 5_000, 1),
        event("b", "d2", 40, false, 2_000, 1),
    ];
    let sample = [record(0, "d1", 900), record(1, "d2", 1_900), record(2, "d3", 1_900)];
    let e = estimate(&t, &t.stages[0], (&events, true), &sample, 3, 10_000);
    assert_eq!((e.sampled, e.metered), (3, 2));
    let (expected, low, high) = estimated(&e.without_cache);
    assert_eq!(low, 140, "d3, without a cost event, counted free at the low end");
    assert_eq!(high, 140 + 70, "and at the others' average at the high end");
    assert_eq!(expected, 140, "d3 is younger than the oldest event kept: it made no call");
    assert!(e.notes.iter().any(|n| n.contains("1 of 3 sampled records (33%)")), "{:?}", e.notes);
    assert_eq!(e.with_cache, None);
}

#[test]
fn a_record_older_than_the_metering_kept_is_priced_like_the_others_not_as_free() {
    let t = topology("");
    let events =
        vec![event("a", "d1", 100, false, 1_000, 1), event("b", "d2", 40, false, 2_000, 1)];
    // d0's events, if any, aged out of the metering topic: it was written before the oldest kept.
    let sample = [record(0, "d1", 900), record(1, "d2", 1_900), record(2, "d0", 10)];
    let e = estimate(&t, &t.stages[0], (&events, false), &sample, 3, 10_000);
    let (whole, ..) =
        estimated(&estimate(&t, &t.stages[0], (&events, true), &sample, 3, 10_000).without_cache);
    assert_eq!(whole, 140, "with nothing aged out, d0 made no call");
    let (expected, low, high) = estimated(&e.without_cache);
    assert_eq!((low, high), (140, 140 + 70));
    assert_eq!(expected, 140 + 70, "the likely figure prices d0 at the others' average");
}

#[test]
fn with_no_cost_event_for_any_sampled_record_the_cost_is_unknown_not_zero() {
    let t = topology("cache: { path: /tmp/c }");
    let sample = [record(0, "d1", 900), record(1, "d2", 900)];
    let e = estimate(&t, &t.stages[0], (&[], true), &sample, 1_000, 10_000);
    assert!(matches!(e.without_cache, Amount::Unknown { .. }), "{:?}", e.without_cache);
    assert!(matches!(e.with_cache, Some(Amount::Unknown { .. })));
    let shown = e.without_cache.describe();
    assert!(shown.starts_with("unknown (none of the 2 sampled records"), "{shown}");
    assert!(!e.without_cache.contains(0), "unknown is not $0");
}

#[test]
fn a_sample_of_part_of_the_window_is_extrapolated_with_its_sampling_error() {
    let t = topology("");
    let events: Vec<CostEvent> = (0..10)
        .map(|i| event(&format!("e{i}"), &format!("d{i}"), 100 + 10 * i, false, 1_000, 1))
        .collect();
    let sample: Vec<Sampled> = (0..10).map(|i| record(i, &format!("d{i}"), 900)).collect();
    let e = estimate(&t, &t.stages[0], (&events, true), &sample, 1_000, 10_000);
    let (expected, low, high) = estimated(&e.without_cache);
    assert_eq!(expected, 145 * 1_000, "the sample's mean times the window");
    assert!(low < expected && high > expected, "{low} {expected} {high}");
    assert!(e.without_cache.contains(150_000) && !e.without_cache.contains(300_000));
    assert!(e.notes.iter().any(|n| n.contains("sampled 10 of the 1000 records")));
}

#[test]
fn with_a_cache_answered_records_are_free_at_best_and_paid_at_worst() {
    let t = topology("cache: { path: /tmp/c }");
    let mut old_prompt = event("b", "d2", 40, false, 1_000, 1);
    old_prompt.prompt_version = Some("answer@1".into());
    let events = vec![event("a", "d1", 100, false, 1_000, 1), old_prompt];
    let sample = [record(0, "d1", 900), record(1, "d2", 900)];
    let e = estimate(&t, &t.stages[0], (&events, true), &sample, 2, 10_000);
    assert_eq!(e.cached, 1, "d2 was answered by answer@1: not cached under answer@2");
    let (expected, low, high) = estimated(e.with_cache.as_ref().expect("a cache"));
    assert_eq!((expected, low, high), (40, 40, 140));
    assert!(e.notes.iter().any(|n| n.contains("the high end assumes it holds none")));
}

#[test]
fn redis_entries_older_than_the_ttl_pay_again() {
    use super::super::cost_evidence::DocCost;
    let d = DocCost { paid_micro_usd: 5, answered_ms: Some(1_000), hit: true };
    let redis = CacheSpec::Redis { url: "redis://x".into(), ttl: Duration::from_secs(60) };
    assert!(in_cache(Some(&redis), &d, 60_999));
    assert!(!in_cache(Some(&redis), &d, 61_000));
    let disk = CacheSpec::Embedded { path: "/tmp/c".into() };
    assert!(in_cache(Some(&disk), &DocCost { answered_ms: None, ..d }, i64::MAX));
    assert!(!in_cache(None, &d, 0));
}
