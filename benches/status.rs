//! Where `sluice status` (and the console's pipeline sample) spends its time on a local broker:
//! `topologies/support-rag.yaml` (5 stages, 6 partitions, 8 retry rungs, budgets) on a fresh
//! Apache Kafka with 600 documents waiting on its input, the whole report timed cold (a new
//! spend tally, as one `sluice status` run) and warm (as the console's sampler keeps it), then
//! each kind of request it makes timed once on its own. Network-bound: the build profile barely
//! matters. Needs a broker with an admin API:
//!
//!   scripts/with-kafka cargo bench --bench status
//!
//! Results in docs/BENCHMARKS.md.

#[expect(dead_code, reason = "this bench produces, and watches no output")]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use sluice::avro::Codec;
use sluice::config::{compile, Topology};
use sluice::kafka::{create_planned_topics, registry_settings, require_admin_api};
use sluice::ops::groups;
use sluice::ops::spend_today::SpendToday;
use sluice::ops::status::{report, report_with};
use sluice::pipeline::schema_pairs;

const RUNS: usize = 5;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and minimum of `RUNS` timings, in ms.
fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!("median {:>7.1} ms  min {:>7.1} ms", ms(v[v.len() / 2]), ms(v[0]))
}

/// Times one blocking call `RUNS` times.
async fn each(what: &str, t: &Topology, f: fn(&Topology)) {
    let mut v = Vec::new();
    for _ in 0..RUNS {
        let t = t.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || f(&t)).await.expect("joins");
        v.push(started.elapsed());
    }
    println!("  {what:<44} {}", summary(v));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok().filter(|s| !s.is_empty())
    else {
        eprintln!("status: needs a real broker: scripts/with-kafka cargo bench --bench status");
        return;
    };
    let registry = sluice::devstack::registry::serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("registry");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/support-rag.yaml");
    let name = format!("status-bench-{}", std::process::id());
    let yaml = std::fs::read_to_string(&path).expect("shipped").replace("support-rag", &name);
    let mut t = compile(&path, &yaml).expect("compiles");
    t.kafka.bootstrap_servers = bootstrap;
    t.schema_registry.url = registry.url();
    create_planned_topics(&t.kafka, &t.topics()).await.expect("topics");
    let settings = registry_settings(&t);
    sluice::avro::register_all(&settings, &schema_pairs(&t)).await.expect("register");
    let codec = Codec::connect(&settings, &schema_pairs(&t)).await.expect("codec");
    let input = t.inputs[0].name.clone();
    common::produce(&t, &codec, &input, 0..600, |i| format!("question {i}")).await;

    let rungs: usize = t.stages.iter().map(|s| s.retry.retry_topics().len()).sum();
    println!(
        "support-rag: {} stages, {} partitions, {rungs} retry rungs, budgets {}",
        t.stages.len(),
        t.kafka.partitions,
        t.budgets.is_some()
    );
    // A fresh broker answers NotCoordinator until its offsets topic is up: wait for a first
    // whole report before timing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = report(&t).await {
        assert!(Instant::now() < deadline, "no status within a minute: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut cold = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        report(&t).await.expect("status");
        cold.push(started.elapsed());
    }
    println!("report, cold (one `sluice status`)             {}", summary(cold));
    let mut spend = SpendToday::new();
    report_with(&t, &mut spend).await.expect("status");
    let mut warm = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        report_with(&t, &mut spend).await.expect("status");
        warm.push(started.elapsed());
    }
    println!("report, warm (the console's sampler)           {}", summary(warm));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("support-rag.yaml");
    let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(&file, yaml.replace("../", &root)).expect("write");
    let mut cli = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["status", "--topology", file.to_str().expect("utf-8")])
            .env("KAFKA_BOOTSTRAP_SERVERS", &t.kafka.bootstrap_servers)
            .env("SCHEMA_REGISTRY_URL", &t.schema_registry.url)
            .output()
            .expect("sluice status runs");
        cli.push(started.elapsed());
        assert!(matches!(out.status.code(), Some(0 | 3)), "{out:?}");
    }
    println!("`sluice status` process, end to end            {}", summary(cli));

    println!("one request of each kind (first stage's topics):");
    let mut probe = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        require_admin_api(&t.kafka, "bench").await.expect("admin api");
        probe.push(started.elapsed());
    }
    println!("  {:<44} {}", "broker probe (cluster id)", summary(probe));
    each("describe group", &t, |t| {
        groups::describe(&t.kafka, &t.stages[0].group).expect("answers");
    })
    .await;
    each("partitions (new client + metadata)", &t, |t| {
        groups::partitions(&t.kafka, &t.stages[0].input).expect("answers");
    })
    .await;
    each("positions of the input (committed + marks)", &t, |t| {
        let s = &t.stages[0];
        groups::positions(&t.kafka, &s.group, &s.input, None).expect("answers");
    })
    .await;
    each("watermarks of the dead-letter topic", &t, |t| {
        groups::watermarks(&t.kafka, &t.stages[0].dead_letter_topic).expect("answers");
    })
    .await;
    each("offsets by time of the dead-letter topic", &t, |t| {
        let parts: Vec<i32> = (0..t.kafka.partitions).collect();
        groups::offsets_at(&t.kafka, &t.stages[0].dead_letter_topic, &parts, 0).expect("answers");
    })
    .await;
    let mut spend_cold = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        SpendToday::new().refresh(&t, sluice::call::now_ms()).await.expect("spend");
        spend_cold.push(started.elapsed());
    }
    println!("  {:<44} {}", "spend today, cold", summary(spend_cold));
}
