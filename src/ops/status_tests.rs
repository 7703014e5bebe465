//! Unit tests of `status.rs`: the lag-growth rule, what counts as a problem, and what makes a
//! report incomplete.

use super::*;

#[test]
fn lag_fails_the_watch_only_after_growing_on_consecutive_samples() {
    let mut trend = LagTrend::new(3);
    let lags = [10, 20, 30, 30, 40, 50, 60];
    let tripped: Vec<(usize, bool)> = lags.iter().map(|l| trend.push("s", *l)).collect();
    assert_eq!(
        tripped,
        vec![(0, false), (1, false), (2, false), (0, false), (1, false), (2, false), (3, true)]
    );
    assert_eq!(trend.push("other", 1_000), (0, false), "stages are counted apart");
    assert_eq!(trend.push("s", 10), (0, false), "a fall resets the count");
}

#[test]
fn stages_without_members_are_problems() {
    let stage = |name: &str, members: Vec<Member>| StageStatus {
        stage: name.into(),
        group: format!("g-{name}"),
        state: if members.is_empty() { "Empty".into() } else { "Stable".into() },
        members,
        members_known: true,
        input: "in".into(),
        lag: 7,
        position: 0,
        worst_partition: Some(0),
        worst_partition_lag: 7,
        oldest_unprocessed_ms: None,
        oldest_unprocessed_age_s: None,
        retry_backlog: vec![],
        deferred_backlog: None,
        dead_letter_topic: "dlq".into(),
        dead_letters_last_hour: 0,
        dead_letters_last_day: 0,
        spend_today_micro_usd: 0,
        spend_today_usd: usd(0),
        spend_today_by_tenant: BTreeMap::new(),
        missing_topics: vec![],
        errors: vec![],
    };
    let member = Member {
        member_id: "m".into(),
        client_id: "sluice".into(),
        host: "/127.0.0.1".into(),
        assigned: vec![],
    };
    let report = Report {
        pipeline: "p".into(),
        taken_ms: 0,
        stages: vec![stage("a", vec![member]), stage("b", vec![]), stage("c", vec![])],
        metering_skipped: Skipped::default(),
        spend_error: None,
    };
    let mut report = report;
    report.stages[2].members_known = false;
    let kip848_unknown_is_no_problem = vec!["stage 'b': group 'g-b' has no members (Empty); lag 7"];
    assert_eq!(report.problems(), kip848_unknown_is_no_problem);
}

#[test]
fn missing_topics_and_failed_reads_make_a_report_incomplete_row_by_row() {
    let whole = Report {
        pipeline: "p".into(),
        taken_ms: 0,
        stages: vec![],
        metering_skipped: Skipped::default(),
        spend_error: None,
    };
    assert!(whole.incomplete().is_empty());
    let json = r#"{"stage":"b","group":"g","state":"?","members":[],"members_known":false,
        "input":"in","lag":0,"position":0,"worst_partition":null,"worst_partition_lag":0,
        "oldest_unprocessed_ms":null,"oldest_unprocessed_age_s":null,"retry_backlog":[],
        "deferred_backlog":null,"dead_letter_topic":"b.dlq","dead_letters_last_hour":0,
        "dead_letters_last_day":0,"spend_today_micro_usd":0,"spend_today_usd":"0.000000",
        "spend_today_by_tenant":{},"missing_topics":["b.dlq"],"errors":["group 'g': timed out"]}"#;
    let row: serde_json::Value = serde_json::from_str(json).expect("json");
    let mut report = whole;
    report.stages.push(StageStatus {
        stage: "b".into(),
        group: "g".into(),
        state: "?".into(),
        members: vec![],
        members_known: false,
        input: "in".into(),
        lag: 0,
        position: 0,
        worst_partition: None,
        worst_partition_lag: 0,
        oldest_unprocessed_ms: None,
        oldest_unprocessed_age_s: None,
        retry_backlog: vec![],
        deferred_backlog: None,
        dead_letter_topic: "b.dlq".into(),
        dead_letters_last_hour: 0,
        dead_letters_last_day: 0,
        spend_today_micro_usd: 0,
        spend_today_usd: usd(0),
        spend_today_by_tenant: BTreeMap::new(),
        missing_topics: vec!["b.dlq".into()],
        errors: vec!["group 'g': timed out".into()],
    });
    report.spend_error = Some("spend today: kafka: down".into());
    assert_eq!(serde_json::to_value(&report.stages[0]).expect("json"), row, "the JSON row says it");
    assert!(report.stages[0].incomplete());
    assert_eq!(
        report.incomplete(),
        [
            "stage 'b': topic 'b.dlq' does not exist",
            "stage 'b': group 'g': timed out",
            "spend today: kafka: down"
        ]
    );
    assert!(report.problems().is_empty(), "members unknown is not \"no members\"");
}
