//! Scaling a stage's consumer group on a real broker: throughput of 1, 2 and 3 `sluice run`
//! worker processes on the I/O-bound workload (4 partitions, 16 in flight per partition, 50 ms
//! per model call, 20,000 records; each process may have 32 calls in flight, so one worker fills
//! half the partitions' windows and two fill them all), each as a ratio to one worker in the
//! same run and to the ideal for that many workers. Needs a broker with an admin API:
//!
//!   scripts/with-kafka cargo bench --bench scaling
//!
//! Results and method in docs/BENCHMARKS.md.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice::avro::Codec;
use sluice::config::compile;
use sluice::kafka::{create_planned_topics, registry_settings};
use sluice::pipeline::schema_pairs;

const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 16;
const CALL_MS: u64 = 50;
const RECORDS: usize = 20_000;
/// Calls in flight per worker process (`concurrency.max_in_flight`).
const PER_WORKER: usize = 32;

fn topology(pipeline: &str, bootstrap: &str, registry: &str) -> String {
    format!(
        r#"
pipeline: {pipeline}
kafka:
  bootstrap_servers: {bootstrap}
  partitions: {PARTITIONS}
schema_registry: {{ url: "{registry}" }}
providers:
  sim: {{ kind: simulated, latency: {CALL_MS}ms }}
inputs:
  {pipeline}.docs: {{ partitions: {PARTITIONS} }}
stages:
  work:
    kind: classify
    input: {pipeline}.docs
    output: {pipeline}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, technical, other] }}
    concurrency: {{ max_in_flight: {PER_WORKER}, per_partition: {PER_PARTITION} }}
"#
    )
}

struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Records per second with `n` workers on a fresh pipeline in the steady state: from a quarter of
/// the outputs to nine tenths (the group's joins and rebalances are over by then).
async fn run(n: usize, bootstrap: &str, registry: &str) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = format!("scale-{}-{n}", std::process::id());
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, topology(&pipeline, bootstrap, registry)).expect("write");
    let t = compile(&path, &std::fs::read_to_string(&path).expect("read")).expect("compiles");
    create_planned_topics(&t.kafka, &t.topics()).await.expect("topics");
    let settings = registry_settings(&t);
    sluice::avro::register_all(&settings, &schema_pairs(&t)).await.expect("register");
    let codec = Codec::connect(&settings, &schema_pairs(&t)).await.expect("codec");
    let (input, output) = (t.inputs[0].name.clone(), t.stages[0].output.clone());
    common::produce(&t, &codec, &input, 0..RECORDS, |i| format!("invoice {i} billed twice")).await;
    let workers = Workers(
        (0..n)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_sluice"))
                    .args(["run", "--topology", path.to_str().expect("utf-8"), "--stage", "work"])
                    .env("RUST_LOG", "error")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("worker")
            })
            .collect(),
    );
    let (from, to) = (RECORDS as i64 / 4, RECORDS as i64 * 9 / 10);
    common::wait_for(&t, &output, PARTITIONS, from).await;
    let started = Instant::now();
    common::wait_for(&t, &output, PARTITIONS, to).await;
    let elapsed = started.elapsed();
    drop(workers);
    (to - from) as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok().filter(|s| !s.is_empty())
    else {
        eprintln!("scaling: needs a real broker: scripts/with-kafka cargo bench --bench scaling");
        return;
    };
    let registry = sluice::devstack::registry::serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("registry");
    let mut one = None;
    println!("workers  records/s  vs 1 worker  ideal/s  vs ideal");
    for n in 1..=3 {
        // Calls in flight: each worker's limit, at most every partition's window full.
        let in_flight = (n * PER_WORKER).min(PARTITIONS as usize * PER_PARTITION);
        let ideal = in_flight as f64 * 1000.0 / CALL_MS as f64;
        let rate = run(n, &bootstrap, &registry.url()).await;
        let base = *one.get_or_insert(rate);
        println!(
            "{n:>7}  {rate:>9.0}  {:>10.2}x  {ideal:>7.0}  {:>7.1}%",
            rate / base,
            100.0 * rate / ideal
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
