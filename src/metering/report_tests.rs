//! Unit tests of [`super`]: grouping, duplicates, cache hits, several keys, JSON shape.

use super::*;

fn event(id: &str, tenant: &str, cost: i64, latency: i64, cached: bool) -> CostEvent {
    CostEvent {
        event_id: id.into(),
        tenant: tenant.into(),
        prompt_version: Some("answer@1".into()),
        cost_micro_usd: cost,
        latency_ms: latency,
        cached,
        ..CostEvent::sample()
    }
}

/// A call of `template` against `model` at `at_ms`.
fn call(id: &str, template: Option<&str>, model: &str, at_ms: i64, latency: i64) -> CostEvent {
    CostEvent {
        timestamp_ms: at_ms,
        prompt_version: template.map(str::to_owned),
        model_served: model.into(),
        ..event(id, "acme", 100, latency, false)
    }
}

#[test]
fn duplicates_count_once_and_cache_hits_cost_nothing() {
    let events = dedup(vec![
        event("a", "acme", 1_500_000, 10, false),
        event("a", "acme", 1_500_000, 10, false),
        event("b", "acme", 250, 30, false),
        event("c", "acme", 0, 0, true),
        event("d", "globex", 7, 20, false),
    ]);
    let rows = summarize(&events, &[GroupBy::Tenant]);
    assert_eq!(rows.len(), 2);
    let acme = &rows[0];
    assert_eq!((acme.requests, acme.cache_hits, acme.input_tokens), (2, 1, 20));
    assert_eq!(usd(acme.cost_micro_usd), "1.500250");
    // Nearest rank over the two model calls (10, 30): p50 is the first, p95 and p99 the second.
    // The cache hit's 0 ms would have made p50 0 had it counted.
    assert_eq!(
        (acme.latency_p50_ms, acme.latency_p95_ms, acme.latency_p99_ms),
        (Some(10), Some(30), Some(30))
    );
    assert_eq!(rows[1].key.joined(), "globex");
}

#[test]
fn several_keys_group_by_their_combination_in_the_order_asked() {
    let events = vec![
        call("1", Some("answer@1"), "small", 10, 100),
        call("2", Some("answer@1"), "large", 20, 900),
        call("3", Some("answer@2"), "small", 30, 200),
        call("4", Some("answer@1"), "small", 40, 300),
        call("5", None, "small", 50, 50),
    ];
    let rows = summarize(&events, &[GroupBy::Template, GroupBy::Model]);
    let keys: Vec<String> = rows.iter().map(|r| r.key.joined()).collect();
    assert_eq!(keys, ["-,m/small", "answer@1,m/large", "answer@1,m/small", "answer@2,m/small"]);
    let a1_small = &rows[2];
    assert_eq!(a1_small.key.value(GroupBy::Template), Some("answer@1"));
    assert_eq!(a1_small.key.value(GroupBy::Model), Some("m/small"));
    assert_eq!(a1_small.key.value(GroupBy::Tenant), None);
    assert_eq!((a1_small.requests, a1_small.first_ms, a1_small.last_ms), (2, 10, 40));
    assert_eq!((a1_small.latency_p50_ms, a1_small.latency_p95_ms), (Some(100), Some(300)));
    // The other order gives the same groups, keyed model first.
    let flipped = summarize(&events, &[GroupBy::Model, GroupBy::Template]);
    assert_eq!(flipped.len(), 4);
    assert_eq!(flipped[0].key.joined(), "m/large,answer@1");
    // Three keys: tenant adds nothing here (one tenant), so as many groups.
    let three = summarize(&events, &[GroupBy::Tenant, GroupBy::Template, GroupBy::Model]);
    assert_eq!(three.len(), 4);
    assert_eq!(three[0].key.joined(), "acme,-,m/small");
}

#[test]
fn a_group_of_cache_hits_only_has_no_latency() {
    let hit = CostEvent { prompt_version: Some("cls@1".into()), ..event("h", "acme", 0, 0, true) };
    let rows = summarize(&[hit], &[GroupBy::Template]);
    assert_eq!((rows[0].requests, rows[0].cache_hits), (0, 1));
    assert_eq!(rows[0].latency_p95_ms, None);
}

#[test]
fn json_rows_carry_the_joined_group_and_one_field_per_key() {
    let rows = summarize(
        &[call("1", Some("answer@2"), "small", 10, 70)],
        &[GroupBy::Template, GroupBy::Model],
    );
    let json = serde_json::to_value(&rows[0]).unwrap();
    assert_eq!(json["group"], "answer@2,m/small");
    assert_eq!(json["template"], "answer@2");
    assert_eq!(json["model"], "m/small");
    assert_eq!(json["latency_p99_ms"], 70);
    assert_eq!(json["requests"], 1);
    let text = serde_json::to_string(&rows[0]).unwrap();
    assert!(text.starts_with(r#"{"group":"answer@2,m/small","template":"#), "{text}");
    let hits = summarize(&[event("h", "acme", 0, 0, true)], &[GroupBy::Tenant]);
    assert_eq!(serde_json::to_value(&hits[0]).unwrap()["latency_p50_ms"], serde_json::Value::Null);
}
