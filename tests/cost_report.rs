//! `sluice cost report` over real cost events: a classify stage on the embedded broker calls the
//! mock provider with prompt `cls@1`, then the topology is rolled out with `cls@2` and some
//! documents come again (answered by the response cache). The report's closed window names the
//! prompt that was live in it, and its p50/p95/p99 are the nearest-rank percentiles of exactly
//! the model calls in that window, cache hits left out.

mod common;

use std::ops::Range;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{unique, Harness};
use serde_json::Value;
use sluice::call::now_ms;
use sluice::config::compile;
use sluice::metering::read_events;
use sluice::metering::report::dedup;
use sluice::mock_provider::MockConfig;
use sluice::time::rfc3339;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn topology(p: &str, url: &str, cache: &Path, prompt: &str) -> String {
    format!(
        r#"
pipeline: {p}
kafka:
  partitions: 2
  consumer:
    auto.commit.interval.ms: "200"
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
providers:
  m: {{ kind: openai, base_url: {url} }}
prices: {{ set_on: 2026-11-01, models: {{ m/cls: {{ input: 0.15, output: 0.6 }} }} }}
cache: {{ path: {cache} }}
prompts:
  cls@1: {{ system: "Pick one of {{{{labels}}}}.", user: "{{{{document}}}}" }}
  cls@2: {{ system: "Classify into one of {{{{labels}}}}; reply in JSON.", user: "{{{{document}}}}" }}
inputs: {{ {p}.docs: {{ partitions: 2 }} }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    model: {{ provider: m, name: cls }}
    classify: {{ labels: [billing, other], prompt: {prompt} }}
"#,
        cache = cache.display()
    )
}

/// Runs the pipeline through `steps`: each produces its documents (now) and waits until the
/// output topic holds that many records in all.
async fn run(h: &Harness, steps: &[(Range<usize>, usize)]) {
    let running = h.start_pipeline();
    let out = h.output();
    for (docs, outputs) in steps {
        h.produce_docs(docs.clone(), None, |_| None).await;
        running
            .until(Duration::from_secs(60), "every document classified", || async {
                h.count(&out).await >= *outputs
            })
            .await;
    }
    running.stop().await.expect("pipeline runs");
}

/// `sluice cost report` against the harness's broker and registry.
async fn report(h: &Harness, topology: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(["cost", "report", "--topology", topology.to_str().expect("utf-8")])
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", &h.topology.kafka.bootstrap_servers)
        .env("SCHEMA_REGISTRY_URL", &h.topology.schema_registry.url)
        .env("RUST_LOG", "warn");
    tokio::task::spawn_blocking(move || command.output().expect("run sluice"))
        .await
        .expect("report thread")
}

async fn json(h: &Harness, topology: &Path, args: &[&str]) -> Vec<Value> {
    let out = report(h, topology, &[args, &["--format", "json"]].concat()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the report is JSON")
}

/// p50, p95 and p99 by nearest rank, computed here from the events themselves.
async fn oracle(h: &Harness, since: i64, until: i64) -> [u64; 3] {
    let mut latencies: Vec<u64> = dedup(read_events(&h.topology).await.expect("events"))
        .into_iter()
        .filter(|e| !e.cached && e.timestamp_ms >= since && e.timestamp_ms < until)
        .map(|e| e.latency_ms as u64)
        .collect();
    latencies.sort_unstable();
    [50, 95, 99].map(|p| latencies[(p * latencies.len()).div_ceil(100) - 1])
}

fn percentiles(row: &Value) -> [u64; 3] {
    ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
        .map(|f| row[f].as_u64().unwrap_or_else(|| panic!("{f} in {row}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_window_names_the_live_prompt_per_model_with_its_percentiles() {
    let server = common::mock_provider(MockConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(40),
        ..MockConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let (p, cache) = (unique("costrep"), dir.path().join("cache"));
    let mut h = Harness::start(&topology(&p, &server.openai_url(), &cache, "cls@1")).await;

    let start = now_ms();
    run(&h, &[(0..8, 8)]).await;
    // A few milliseconds apart, so no event shares the rollout's millisecond (ordering only).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let rollout = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The rollout: the same pipeline, now with cls@2; documents 8..12 then come a second time.
    let v2 = topology(&p, &server.openai_url(), &cache, "cls@2");
    let mut t2 = compile(Path::new("v2.yaml"), &v2).expect("v2 compiles");
    t2.kafka.bootstrap_servers = h.topology.kafka.bootstrap_servers.clone();
    t2.schema_registry.url = h.topology.schema_registry.url.clone();
    h.topology = t2;
    run(&h, &[(8..20, 20), (8..12, 24)]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let end = now_ms();
    let file = dir.path().join("v2.yaml");
    std::fs::write(&file, &v2).expect("write topology");
    let (start_at, rollout_at, end_at) = (rfc3339(start), rfc3339(rollout), rfc3339(end));
    let by = ["--by", "template,model"];

    // Before the rollout: only cls@1 was live, eight calls, no cache hit.
    let before =
        json(&h, &file, &[&["--since", &start_at, "--until", &rollout_at][..], &by].concat()).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let row = &before[0];
    assert_eq!((row["template"].as_str(), row["model"].as_str()), (Some("cls@1"), Some("m/cls")));
    assert_eq!(row["group"], "cls@1,m/cls");
    assert_eq!((row["requests"].as_u64(), row["cache_hits"].as_u64()), (Some(8), Some(0)));
    let [p50, p95, p99] = percentiles(row);
    assert!(20 <= p50 && p50 <= p95 && p95 <= p99, "{row}");
    assert_eq!([p50, p95, p99], oracle(&h, start, rollout).await, "{row}");

    // After it: cls@2, twelve model calls, and four cache hits left out of the percentiles.
    let after =
        json(&h, &file, &[&["--since", &rollout_at, "--until", &end_at][..], &by].concat()).await;
    assert_eq!(after.len(), 1, "{after:?}");
    let row = &after[0];
    assert_eq!(row["group"], "cls@2,m/cls");
    assert_eq!((row["requests"].as_u64(), row["cache_hits"].as_u64()), (Some(12), Some(4)));
    assert_eq!(percentiles(row), oracle(&h, rollout, end).await, "{row}");

    // Both bounds on a real event: its timestamp as --since includes it, as --until excludes it.
    let events = dedup(read_events(&h.topology).await.expect("events"));
    let first_v2 =
        events.iter().filter(|e| e.timestamp_ms >= rollout).map(|e| e.timestamp_ms).min();
    let first_v2 = rfc3339(first_v2.expect("a cls@2 event"));
    let from_it =
        json(&h, &file, &[&["--since", &first_v2, "--until", &end_at][..], &by].concat()).await;
    assert_eq!(from_it[0]["requests"].as_u64(), Some(12), "{from_it:?}");
    let up_to_it =
        json(&h, &file, &[&["--since", &rollout_at, "--until", &first_v2][..], &by].concat()).await;
    assert!(up_to_it.is_empty(), "{up_to_it:?}");

    // The table over the whole run (a relative --since), one line per (template, model).
    let out = report(&h, &file, &["--since", "1h", "--by", "template,model"]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(table.starts_with("TEMPLATE  MODEL  REQUESTS"), "{table}");
    assert!(table.contains("P95 MS") && table.contains("P99 MS"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("cls@1     m/cls")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("cls@2     m/cls")), "{table}");
    assert!(table.contains("cache hits are not model calls"), "{table}");
    assert!(table.trim_end().ends_with(" USD"), "{table}");
    let csv = report(
        &h,
        &file,
        &["--since", &start_at, "--until", &end_at, "--by", "template", "--format", "csv"],
    )
    .await;
    let csv = String::from_utf8_lossy(&csv.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("template,requests,"), "{csv}");
    assert!(lines[1].starts_with("cls@1,8,0,0,") && lines[2].starts_with("cls@2,12,0,4,"), "{csv}");

    // Bad bounds are refused before anything is read.
    let bad = report(&h, &file, &["--since", "last thursday"]).await;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("neither a duration back from now") && stderr.contains("RFC 3339"),
        "{stderr}"
    );
    let inverted = report(&h, &file, &["--since", &end_at, "--until", &start_at]).await;
    assert!(!inverted.status.success());
    let stderr = String::from_utf8_lossy(&inverted.stderr);
    assert!(stderr.contains("the window is empty"), "{stderr}");
}
