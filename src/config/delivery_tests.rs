use std::path::Path;
use std::time::Duration;

use crate::config::{compile, ConfigError, Delivery, Topology, Transactions};

/// A two-stage topology: `top` lines at the top level, `producer` lines (`key: "value"`) under
/// `kafka.producer`, and `first`/`second` lines in each stage.
fn topology(top: &str, producer: &[&str], first: &str, second: &str) -> String {
    let lines: String = producer.iter().map(|l| format!("    {l}\n")).collect();
    let kafka =
        if lines.is_empty() { String::new() } else { format!("kafka:\n  producer:\n{lines}") };
    format!(
        r#"
pipeline: p
{top}
{kafka}
providers: {{ sim: {{ kind: simulated }} }}
inputs: {{ docs: {{}} }}
stages:
  first:
    kind: classify
    input: docs
    output: mid
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [a] }}
{first}
  second:
    kind: classify
    input: mid
    output: out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [a] }}
{second}
"#
    )
}

fn compiled(top: &str, producer: &[&str], first: &str, second: &str) -> Topology {
    let yaml = topology(top, producer, first, second);
    compile(Path::new("t.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn problems(top: &str, producer: &[&str], first: &str, second: &str) -> Vec<ConfigError> {
    match compile(Path::new("t.yaml"), &topology(top, producer, first, second)) {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

/// The one problem found, which must be at `stage` and `field` and say `says`.
fn only(problems: &[ConfigError], stage: Option<&str>, field: &str, says: &str) {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].stage.as_deref(), stage, "{problems:#?}");
    assert_eq!(problems[0].field, field, "{problems:#?}");
    assert!(problems[0].message.contains(says), "{}", problems[0].message);
}

fn exactly_once(interval_ms: u64, max_records: usize) -> Delivery {
    Delivery::ExactlyOnce(Transactions {
        interval: Duration::from_millis(interval_ms),
        max_records,
    })
}

fn deliveries(t: &Topology) -> Vec<Delivery> {
    t.stages.iter().map(|s| s.delivery).collect()
}

#[test]
fn stages_are_at_least_once_unless_the_topology_or_the_stage_says_otherwise() {
    let t = compiled("", &[], "", "");
    assert_eq!(deliveries(&t), [Delivery::AtLeastOnce, Delivery::AtLeastOnce]);
    let t = compiled("", &[], "    delivery: exactly_once", "");
    assert_eq!(deliveries(&t), [exactly_once(100, 1000), Delivery::AtLeastOnce]);
    let t = compiled("delivery: exactly_once", &[], "", "    delivery: at_least_once");
    assert_eq!(deliveries(&t), [exactly_once(100, 1000), Delivery::AtLeastOnce]);
}

#[test]
fn stages_inherit_the_topologys_transaction_settings_and_may_override_each() {
    let top = "delivery: exactly_once\ntransaction_interval: 250ms\ntransaction_max_records: 50";
    let t = compiled(top, &[], "    transaction_interval: 1s", "");
    assert_eq!(deliveries(&t), [exactly_once(1000, 50), exactly_once(250, 50)]);
    let second = "    delivery: exactly_once\n    transaction_max_records: 7";
    let t = compiled("", &[], "", second);
    assert_eq!(deliveries(&t), [Delivery::AtLeastOnce, exactly_once(100, 7)]);
}

#[test]
fn transaction_settings_of_an_at_least_once_stage_are_refused_naming_the_key() {
    let p = problems("", &[], "    transaction_interval: 1s", "");
    only(&p, Some("first"), "transaction_interval", "applies only to `delivery: exactly_once`");
    let p = problems("transaction_max_records: 10", &[], "", "");
    only(&p, None, "transaction_max_records", "the topology's delivery is at_least_once");
    let top = "delivery: exactly_once";
    let p = problems(top, &[], "", "    delivery: at_least_once\n    transaction_max_records: 5");
    only(&p, Some("second"), "transaction_max_records", "this stage's delivery is at_least_once");
}

#[test]
fn an_unknown_delivery_and_out_of_range_transaction_settings_are_all_reported() {
    let first = "    delivery: exactly_twice\n    transaction_interval: 5ms";
    let second = "    delivery: exactly_once\n    transaction_interval: 61s\n    \
                  transaction_max_records: 100001";
    let p = problems("", &[], first, second);
    let found: Vec<(Option<&str>, &str)> =
        p.iter().map(|e| (e.stage.as_deref(), e.field.as_str())).collect();
    assert_eq!(
        found,
        [
            (Some("first"), "delivery"),
            (Some("first"), "transaction_interval"),
            (Some("second"), "transaction_interval"),
            (Some("second"), "transaction_max_records"),
        ],
        "{p:#?}"
    );
    assert!(p[0].message.contains("expected at_least_once, exactly_once"), "{}", p[0].message);
    assert!(p[1].message.contains("between 10ms and 60s"), "{}", p[1].message);
    let p = problems("", &[], "    delivery: exactly_once\n    transaction_max_records: 0", "");
    only(&p, Some("first"), "transaction_max_records", "between 1 and 100000");
}

#[test]
fn exactly_once_refuses_a_producer_without_idempotence_or_with_weaker_acks() {
    let eo = "delivery: exactly_once";
    let p = problems(eo, &[r#"enable.idempotence: "false""#], "", "");
    only(&p, None, "kafka.producer.enable.idempotence", "need an idempotent producer");
    assert!(p[0].message.contains("'first', 'second'"), "{}", p[0].message);
    let p = problems(eo, &[r#"acks: "1""#], "", "");
    only(&p, None, "kafka.producer.acks", "every in-sync replica");
    assert_eq!(problems(eo, &[r#"acks: "-1""#, r#"enable.idempotence: "true""#], "", ""), []);
    // At least once: sluice's producers set both anyway, as before.
    assert_eq!(problems("", &[r#"acks: "1""#, r#"enable.idempotence: "false""#], "", ""), []);
}

#[test]
fn a_transactional_id_in_the_topology_is_refused_in_either_mode() {
    for top in ["", "delivery: exactly_once"] {
        let p = problems(top, &["transactional.id: shared"], "", "");
        only(&p, None, "kafka.producer.transactional.id", "<group>.<instance>");
    }
}

#[test]
fn the_transaction_timeout_must_outlast_two_intervals_and_fit_the_brokers_limit() {
    let eo = "delivery: exactly_once";
    // sluice's default (10 s) holds any interval up to 5 s.
    assert_eq!(problems(eo, &[], "    transaction_interval: 5s", ""), []);
    let p = problems(eo, &[], "    transaction_interval: 6s", "");
    only(&p, Some("first"), "transaction_interval", "sluice's default, 10000 ms");
    let timeout = [r#"transaction.timeout.ms: "60000""#];
    assert_eq!(problems(eo, &timeout, "    transaction_interval: 30s", ""), []);
    let p = problems(eo, &timeout, "    transaction_interval: 31s", "");
    only(&p, Some("first"), "transaction_interval", "kafka.producer.transaction.timeout.ms");
    for ms in ["999", "900001"] {
        let line = format!(r#"transaction.timeout.ms: "{ms}""#);
        let p = problems(eo, &[&line], "", "");
        only(&p, None, "kafka.producer.transaction.timeout.ms", "transaction.max.timeout.ms");
    }
    let p = problems(eo, &[r#"transaction.timeout.ms: "10s""#], "", "");
    only(&p, None, "kafka.producer.transaction.timeout.ms", "not a whole number");
    // Only exactly-once stages have transactions.
    assert_eq!(problems("", &[r#"transaction.timeout.ms: "10s""#], "", ""), []);
}

#[test]
fn producer_timeouts_librdkafka_requires_inside_the_transaction_timeout_are_checked() {
    let eo = "delivery: exactly_once";
    let p = problems(eo, &[r#"message.timeout.ms: "10001""#], "", "");
    only(&p, None, "kafka.producer.message.timeout.ms", "outlive its transaction");
    let p = problems(eo, &[r#"delivery.timeout.ms: "20000""#], "", "");
    only(&p, None, "kafka.producer.delivery.timeout.ms", "outlive its transaction");
    let p = problems(eo, &[r#"socket.timeout.ms: "10101""#], "", "");
    only(&p, None, "kafka.producer.socket.timeout.ms", "+ 100 ms");
    let fits = [r#"message.timeout.ms: "10000""#, r#"socket.timeout.ms: "10100""#];
    assert_eq!(problems(eo, &fits, "", ""), []);
    assert_eq!(problems("", &[r#"message.timeout.ms: "300000""#], "", ""), []);
}
