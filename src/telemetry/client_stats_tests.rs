use std::collections::BTreeMap;

use super::*;

/// The lag series of `stage` on the registry: (topic, partition) → records.
fn lag_series(stage: &str) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for family in metrics().registry.gather() {
        if family.name() != "sluice_consumer_lag_records" {
            continue;
        }
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label().iter().find(|l| l.name() == name).map(|l| l.value().to_owned())
            };
            if label("stage").as_deref() == Some(stage) {
                let key = (label("topic").expect("topic"), label("partition").expect("partition"));
                out.insert(key, m.get_gauge().get_value() as i64);
            }
        }
    }
    out
}

fn partition(id: i32, desired: bool, lag: i64, lag_stored: i64) -> serde_json::Value {
    serde_json::json!({
        "partition": id, "desired": desired, "consumer_lag": lag,
        "consumer_lag_stored": lag_stored, "fetch_state": "active", "hi_offset": 100
    })
}

fn stats(partitions: &[serde_json::Value]) -> Vec<u8> {
    let by_id: serde_json::Map<String, serde_json::Value> =
        partitions.iter().map(|p| (p["partition"].to_string(), p.clone())).collect();
    serde_json::to_vec(&serde_json::json!({
        "name": "rdkafka#consumer-1", "type": "consumer", "brokers": {},
        "topics": { "in": { "topic": "in", "partitions": by_id } }
    }))
    .expect("json")
}

fn emit(stage: &str, json: &[u8]) {
    ClientStatistics { stage, json, paused: Some(1), producer_queue: Some(7) }.emit();
}

fn key(topic: &str, partition: &str) -> (String, String) {
    (topic.to_owned(), partition.to_owned())
}

#[test]
fn lag_counts_records_not_yet_stored_and_only_of_assigned_partitions() {
    let stage = "stats-lag";
    emit(
        stage,
        &stats(&[
            partition(0, true, 40, 25),  // stored ahead of committed: the stored lag
            partition(1, true, 12, -1),  // nothing stored yet: the committed lag
            partition(2, true, -1, -1),  // no position known yet: no series
            partition(3, false, 50, 50), // another member's partition
            partition(-1, true, 0, 0),   // librdkafka's internal partition
        ]),
    );
    let expected = BTreeMap::from([(key("in", "0"), 25), (key("in", "1"), 12)]);
    assert_eq!(lag_series(stage), expected);
    let g = client_gauges();
    assert_eq!(g.paused.with_label_values(&[stage]).get(), 1);
    assert_eq!(g.producer_queue.with_label_values(&[stage]).get(), 7);
}

#[test]
fn a_partition_no_longer_reported_loses_its_series_and_a_stopped_stage_all() {
    let stage = "stats-revoked";
    emit(stage, &stats(&[partition(0, true, 5, 5), partition(1, true, 9, 9)]));
    assert_eq!(lag_series(stage).len(), 2);
    emit(stage, &stats(&[partition(0, true, 3, 3), partition(1, false, 9, 9)]));
    assert_eq!(lag_series(stage), BTreeMap::from([(key("in", "0"), 3)]));
    partitions_changed(stage, 2);
    stage_stopped(stage);
    assert!(lag_series(stage).is_empty());
    let g = client_gauges();
    assert_eq!(g.assigned.with_label_values(&[stage]).get(), 0);
    assert_eq!(g.producer_queue.with_label_values(&[stage]).get(), 0);
}

#[test]
fn unreadable_statistics_change_no_lag_but_still_report_the_samples() {
    let stage = "stats-garbage";
    emit(stage, &stats(&[partition(0, true, 5, 5)]));
    ClientStatistics { stage, json: b"{not json", paused: Some(4), producer_queue: None }.emit();
    assert_eq!(lag_series(stage), BTreeMap::from([(key("in", "0"), 5)]));
    assert_eq!(client_gauges().paused.with_label_values(&[stage]).get(), 4);
}

#[test]
fn assigned_partitions_follow_rebalances_and_never_go_below_zero() {
    let stage = "stats-assigned";
    stage_started(stage);
    partitions_changed(stage, 3);
    partitions_changed(stage, -1);
    assert_eq!(client_gauges().assigned.with_label_values(&[stage]).get(), 2);
    stage_stopped(stage);
    partitions_changed(stage, -2); // a revocation served while the consumer closes
    assert_eq!(client_gauges().assigned.with_label_values(&[stage]).get(), 0);
}

#[test]
fn statistics_are_enabled_unless_the_settings_chose_an_interval() {
    let mut config = ClientConfig::new();
    enable_statistics(&mut config);
    assert_eq!(config.get("statistics.interval.ms"), Some("5000"));
    let mut config = ClientConfig::new();
    config.set("statistics.interval.ms", "250");
    enable_statistics(&mut config);
    assert_eq!(config.get("statistics.interval.ms"), Some("250"));
}

#[test]
fn a_started_stage_shows_its_alerted_counters_at_zero() {
    let stage = "stats-started";
    stage_started(stage);
    let text = super::super::render();
    for series in [
        format!("sluice_records_deferred_total{{stage=\"{stage}\"}} 0"),
        format!("sluice_commit_failures_total{{stage=\"{stage}\",when=\"handover\"}} 0"),
        format!("sluice_assigned_partitions{{stage=\"{stage}\"}} 0"),
        format!("sluice_records_total{{outcome=\"dead_lettered\",stage=\"{stage}\"}} 0"),
    ] {
        assert!(text.contains(&series), "missing {series}");
    }
}
