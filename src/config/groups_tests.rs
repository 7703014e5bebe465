use std::path::Path;

use crate::config::{compile, ConfigError};

/// A one-stage topology with `kafka` lines (indented by four) under `kafka:` and the stage's
/// `shutdown_grace`.
fn topology(kafka: &str, grace: &str) -> String {
    format!(
        r#"
pipeline: p
kafka:
{kafka}
providers: {{ sim: {{ kind: simulated }} }}
inputs: {{ docs: {{}} }}
stages:
  work:
    kind: classify
    input: docs
    output: out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [a] }}
    shutdown_grace: {grace}
"#
    )
}

/// The problems of a topology with these consumer settings (`key: "value"` lines).
fn problems_with(consumer: &[&str], grace: &str) -> Vec<ConfigError> {
    let lines: String = consumer.iter().map(|l| format!("    {l}\n")).collect();
    let kafka = if lines.is_empty() { String::new() } else { format!("  consumer:\n{lines}") };
    match compile(Path::new("t.yaml"), &topology(&kafka, grace)) {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

fn problems(consumer: &[&str]) -> Vec<ConfigError> {
    problems_with(consumer, "30s")
}

/// The one problem found, which must be at `field` and say `says`.
fn only(problems: &[ConfigError], field: &str, says: &str) {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].field, field, "{problems:#?}");
    assert!(problems[0].message.contains(says), "{}", problems[0].message);
}

#[test]
fn sound_settings_and_none_at_all_compile() {
    assert!(problems(&[]).is_empty());
    let classic = [
        r#"session.timeout.ms: "6000""#,
        r#"heartbeat.interval.ms: "2000""#,
        r#"partition.assignment.strategy: cooperative-sticky"#,
        r#"max.poll.interval.ms: "31000""#,
    ];
    assert_eq!(problems(&classic), []);
    assert_eq!(problems(&["group.protocol: consumer", r#"max.poll.interval.ms: "31000""#]), []);
}

#[test]
fn session_and_heartbeat_must_be_whole_milliseconds() {
    let p = problems(&[r#"session.timeout.ms: "10s""#, r#"heartbeat.interval.ms: "1.5""#]);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p.iter().all(|e| e.message.contains("not a whole number of milliseconds")), "{p:#?}");
}

#[test]
fn a_session_timeout_the_default_broker_refuses_is_rejected() {
    for ms in ["5999", "1800001"] {
        let line = format!(r#"session.timeout.ms: "{ms}""#);
        only(&problems(&[&line]), "kafka.consumer.session.timeout.ms", "group.min.session");
    }
    let p = problems(&[r#"session.timeout.ms: "1800000""#, r#"max.poll.interval.ms: "1800000""#]);
    assert_eq!(p, []);
}

#[test]
fn fewer_than_three_heartbeats_per_session_is_rejected() {
    let p = problems(&[r#"session.timeout.ms: "6000""#, r#"heartbeat.interval.ms: "2001""#]);
    only(&p, "kafka.consumer.heartbeat.interval.ms", "fewer than three heartbeats");
    // Against sluice's default session timeout when only the heartbeat is set.
    let p = problems(&[r#"heartbeat.interval.ms: "3334""#]);
    only(&p, "kafka.consumer.heartbeat.interval.ms", "(10000 ms)");
    assert_eq!(problems(&[r#"heartbeat.interval.ms: "3333""#]), []);
}

#[test]
fn the_consumer_block_wins_over_properties_and_errors_name_where_the_value_is() {
    let kafka = "  properties:\n    heartbeat.interval.ms: \"5000\"\n  \
                 consumer:\n    heartbeat.interval.ms: \"1000\"\n";
    assert!(compile(Path::new("t.yaml"), &topology(kafka, "30s")).is_ok());
    let kafka = "  properties:\n    heartbeat.interval.ms: \"5000\"\n";
    let p = compile(Path::new("t.yaml"), &topology(kafka, "30s")).unwrap_err().0;
    only(&p, "kafka.properties.heartbeat.interval.ms", "fewer than three");
}

#[test]
fn group_instance_id_in_the_topology_is_rejected_pointing_to_the_flag() {
    let p = problems(&["group.instance.id: worker-0"]);
    only(&p, "kafka.consumer.group.instance.id", "--instance-id");
    assert!(p[0].message.contains("SLUICE_GROUP_INSTANCE_ID"), "{}", p[0].message);
}

#[test]
fn eager_assignors_are_rejected_and_so_is_mixing_them_with_cooperative_sticky() {
    let field = "kafka.consumer.partition.assignment.strategy";
    for eager in ["range", "roundrobin", "range,roundrobin"] {
        let p = problems(&[&format!("partition.assignment.strategy: \"{eager}\"")]);
        only(&p, field, "eager assignor");
    }
    let p = problems(&["partition.assignment.strategy: \"cooperative-sticky, range\""]);
    only(&p, field, "different rebalance protocols");
    let p = problems(&["partition.assignment.strategy: sticky"]);
    only(&p, field, "unknown assignor(s) sticky");
}

#[test]
fn an_unknown_group_protocol_is_rejected() {
    only(&problems(&["group.protocol: kip848"]), "kafka.consumer.group.protocol", "unknown group");
    assert_eq!(problems(&["group.protocol: classic"]), []);
}

#[test]
fn max_poll_interval_must_outlast_every_shutdown_grace() {
    let p = problems_with(&[r#"max.poll.interval.ms: "20000""#], "20s");
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].stage.as_deref(), p[0].field.as_str()), (Some("work"), "shutdown_grace"));
    assert!(p[0].message.contains("rebalance timeout"), "{}", p[0].message);
    assert_eq!(problems_with(&[r#"max.poll.interval.ms: "20001""#], "20s"), []);
    // librdkafka's default (300 s) when the topology does not set it; in KIP-848 groups too.
    let p = problems_with(&["group.protocol: consumer"], "5m");
    only(&p, "shutdown_grace", "librdkafka's default, 300000 ms");
    let p = problems_with(&[r#"max.poll.interval.ms: "0""#], "1s");
    only(&p, "kafka.consumer.max.poll.interval.ms", "librdkafka refuses it");
}

#[test]
fn max_poll_interval_below_the_classic_session_timeout_is_rejected() {
    let p = problems_with(&[r#"max.poll.interval.ms: "9999""#], "1s");
    only(&p, "kafka.consumer.max.poll.interval.ms", "shorter than session.timeout.ms (10000 ms)");
    let p = problems_with(&[r#"session.timeout.ms: "600000""#], "1s");
    only(&p, "kafka.consumer.session.timeout.ms", "librdkafka's default, 300000 ms");
    // KIP-848 groups have no client-side session timeout to compare with.
    assert_eq!(
        problems_with(&["group.protocol: consumer", r#"max.poll.interval.ms: "9999""#], "1s"),
        []
    );
}

#[test]
fn a_kip848_topology_with_classic_settings_is_rejected_naming_each_and_nothing_else() {
    let p = problems(&[
        "group.protocol: consumer",
        r#"session.timeout.ms: "1""#,
        r#"heartbeat.interval.ms: "5000""#,
        "partition.assignment.strategy: range",
        "group.protocol.type: consumer",
    ]);
    let fields: Vec<&str> = p.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "kafka.consumer.session.timeout.ms",
            "kafka.consumer.heartbeat.interval.ms",
            "kafka.consumer.partition.assignment.strategy",
            "kafka.consumer.group.protocol.type",
        ]
    );
    assert!(
        p.iter().all(|e| e.message.contains("belongs to the classic group protocol")),
        "{p:#?}"
    );
}
