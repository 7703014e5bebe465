//! `status` and the console's pipeline page on Apache Kafka with one topic missing: the other
//! stages are whole, the missing topic is marked on its stage's row, `sluice status` prints
//! every row and exits 4 (incomplete); and the page answers from a sample taken before the
//! request (it never samples on the request).

use std::time::Duration;

use super::common::crash::external_broker;
use super::common::{self, unique, wait_until, Harness};
use sluice::call::now_ms;
use sluice::ops::status::report;

/// Two classify stages, `a` → `b`; `b`'s dead-letter topic named `dlq` (so a test can name one
/// that was never created).
fn two_stages(p: &str, dlq: &str) -> String {
    format!(
        r#"
pipeline: {p}
kafka: {{ partitions: 2 }}
providers: {{ sim: {{ kind: simulated, latency: 1ms }} }}
inputs: {{ {p}.docs: {{ partitions: 2 }} }}
stages:
  a:
    kind: classify
    input: {p}.docs
    output: {p}.mid
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, other] }}
  b:
    kind: classify
    input: {p}.mid
    output: {p}.out
    dead_letter_topic: {dlq}
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, other] }}
"#
    )
}

/// The `data-taken-ms` of the sample a pipeline table was rendered from.
fn taken_ms(table: &str) -> Option<i64> {
    let at = table.find(r#"data-taken-ms=""#)? + r#"data-taken-ms=""#.len();
    table[at..].split('"').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn a_missing_topic_is_marked_on_its_row_and_the_page_answers_from_its_sample() {
    super::require_real_broker();
    let p = unique("pipe");
    let h = Harness::start_on(&two_stages(&p, &format!("{p}.b.dlq")), external_broker()).await;
    // The same pipeline, its second stage's dead letters on a topic nobody created.
    let gone = format!("{p}.b.nowhere");
    let mut t = h.topology.clone();
    t.stages[1].dead_letter_topic = gone.clone();

    // A broker that just started may not have its group coordinator yet: that is said on the
    // rows too (errors), and goes away.
    let mut r = report(&t).await.expect("a report despite the missing topic");
    for _ in 0..60 {
        if r.stages.iter().all(|s| s.errors.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        r = report(&t).await.expect("a report despite the missing topic");
    }
    let names: Vec<&str> = r.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(r.stages[0].missing_topics.is_empty() && r.stages[0].errors.is_empty());
    assert_eq!(r.stages[1].missing_topics, std::slice::from_ref(&gone));
    assert_eq!(r.incomplete(), [format!("stage 'b': topic '{gone}' does not exist")]);
    assert_eq!(r.problems().len(), 2, "neither stage has members");

    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, two_stages(&p, &gone)).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["status", "--topology", file.to_str().expect("utf-8")])
        .env("KAFKA_BOOTSTRAP_SERVERS", &t.kafka.bootstrap_servers)
        .env("SCHEMA_REGISTRY_URL", &t.schema_registry.url)
        .output()
        .expect("sluice status runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "incomplete: {stdout}{stderr}");
    assert!(stdout.contains(&format!("topic {gone} does not exist")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("a ")), "stage a's row: {stdout}");
    assert!(stderr.contains(&format!("incomplete: stage 'b': topic '{gone}'")), "{stderr}");

    let c =
        sluice::console::start(&t, common::console::options(|_| {})).await.expect("console starts");
    let base = format!("http://{}", c.addr);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            taken_ms(&common::console::pipeline_table(&base).await).is_some()
        })
        .await,
        "a first sample"
    );
    let asked = now_ms();
    let table = common::console::pipeline_table(&base).await;
    let taken = taken_ms(&table).expect("the sample's time");
    assert!(taken <= asked, "served from a sample taken before the request ({taken} > {asked})");
    assert!(table.contains(r#"data-stage="a""#) && table.contains(r#"data-stage="b""#), "{table}");
    assert!(table.contains(&format!("topic {gone} does not exist")), "{table}");
    assert!(table.contains(r#"class="stage trouble" data-stage="b""#), "{table}");
    c.stop().await;
}
