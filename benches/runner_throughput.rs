//! Throughput of the runner, measured against baselines in the same run on the same broker
//! (librdkafka's mock cluster, in process) — ratios, not absolute numbers, are the result.
//!
//! 1. Passthrough: the full runner (Avro decode → stage → Avro encode → produce → await → store)
//!    against a raw rdkafka loop (consume → produce the same bytes → await → store offset) with
//!    the same in-flight window, for ~100-byte and ~1 KiB records.
//! 2. I/O-bound: a stage that sleeps a fixed latency per record, against the ideal
//!    partitions × in-flight per partition ÷ latency.
//!
//! `cargo bench --bench runner_throughput` (set SLUICE_BENCH_RECORDS to change the count).

mod common;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{produce, wait_for};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice::avro::{Classification, Codec, Envelope};
use sluice::config::{compile, Topology};
use sluice::devstack::DevStack;
use sluice::kafka::registry_settings;
use sluice::pipeline::schema_pairs;
use sluice::shutdown::Shutdown;
use sluice::stage::{Emit, Stage, StageContext, StageError};
use tokio::sync::Semaphore;

const PARTITIONS: i32 = 4;

/// Passes the document on, optionally after a fixed delay (a model call's latency).
struct Passthrough(Duration);

impl Stage for Passthrough {
    async fn process(
        &self,
        mut input: Envelope,
        _cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        if !self.0.is_zero() {
            tokio::time::sleep(self.0).await;
        }
        input.classification = Some(Classification {
            label: "a".into(),
            confidence: 1.0,
            model: "bench".into(),
            prompt_version: None,
        });
        Ok(vec![Emit::main(input)])
    }
}

fn topology(name: &str, per_partition: usize) -> String {
    format!(
        r#"
pipeline: {name}
kafka:
  partitions: {PARTITIONS}
  consumer: {{ partition.assignment.strategy: cooperative-sticky }}
providers: {{ sim: {{ kind: simulated }} }}
inputs: {{ {name}.in: {{ partitions: {PARTITIONS} }} }}
stages:
  pass:
    kind: classify
    input: {name}.in
    output: {name}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [a] }}
    concurrency: {{ max_in_flight: {}, per_partition: {per_partition} }}
"#,
        per_partition * PARTITIONS as usize
    )
}

/// Sends one warm-up record (the consumer group has joined once it is out), then times `n`
/// records from the start of producing them until all are on the output topic.
async fn measure(
    t: &Topology,
    codec: &Codec,
    input: &str,
    output: &str,
    n: usize,
    size: usize,
) -> f64 {
    let filler = "x".repeat(size.saturating_sub(40));
    produce(t, codec, input, 0..1, |_| filler.clone()).await;
    wait_for(t, output, PARTITIONS, 1).await;
    let started = Instant::now();
    produce(t, codec, input, 1..n + 1, |_| filler.clone()).await;
    wait_for(t, output, PARTITIONS, n as i64 + 1).await;
    n as f64 / started.elapsed().as_secs_f64()
}

/// Records/s of the full runner with a passthrough stage of the given latency.
async fn runner_rate(n: usize, size: usize, latency: Duration, per_partition: usize) -> f64 {
    let name = format!("bench-runner-{size}-{}-{}", latency.as_millis(), std::process::id());
    let mut t =
        compile(Path::new("bench.yaml"), &topology(&name, per_partition)).expect("topology");
    let _stack =
        DevStack::start(&mut t, "127.0.0.1:0".parse().expect("addr")).await.expect("stack");
    let codec =
        Arc::new(Codec::connect(&registry_settings(&t), &schema_pairs(&t)).await.expect("codec"));
    let (spec, input, output) =
        (t.stages[0].clone(), t.inputs[0].name.clone(), t.stages[0].output.clone());
    let shutdown = Shutdown::new();
    let task = {
        let (t, codec, shutdown, spec) = (t.clone(), codec.clone(), shutdown.clone(), spec.clone());
        tokio::spawn(async move {
            sluice::runner::run(
                Passthrough(latency),
                &spec,
                &t,
                codec,
                Arc::new(Semaphore::new(1 << 20)),
                shutdown,
            )
            .await
        })
    };
    let rate = measure(&t, &codec, &input, &output, n, size).await;
    shutdown.request();
    task.await.expect("task").expect("runner");
    rate
}

type Pending = VecDeque<(String, i32, i64, rdkafka::producer::DeliveryFuture)>;

/// Awaits the oldest produce, then stores its input offset (raw loop).
async fn settle_oldest(consumer: &StreamConsumer, pending: &mut Pending) {
    let (topic, p, o, fut) = pending.pop_front().expect("non-empty");
    fut.await.expect("delivery").expect("delivered");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, p, Offset::Offset(o + 1)).expect("offset");
    consumer.store_offsets(&tpl).expect("store");
}

/// Records/s of a raw rdkafka loop: consume, produce the same bytes, store the offset once the
/// produce is acknowledged (in order), with `window` records in flight.
async fn raw_rate(n: usize, size: usize, window: usize) -> f64 {
    let name = format!("bench-raw-{size}-{}", std::process::id());
    let mut t = compile(Path::new("bench.yaml"), &topology(&name, 1)).expect("topology");
    let _stack =
        DevStack::start(&mut t, "127.0.0.1:0".parse().expect("addr")).await.expect("stack");
    let codec = Codec::connect(&registry_settings(&t), &schema_pairs(&t)).await.expect("codec");
    let (input, output) = (t.inputs[0].name.clone(), t.stages[0].output.clone());
    let consumer: StreamConsumer =
        sluice::kafka::consumer_config(&t.kafka, "raw").create().expect("consumer");
    consumer.subscribe(&[&input]).expect("subscribe");
    let producer: FutureProducer =
        sluice::kafka::producer_config(&t.kafka).create().expect("producer");
    let shutdown = Shutdown::new();
    let loop_task = {
        let (output, shutdown) = (output.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut pending = Pending::new();
            loop {
                if pending.len() >= window
                    || (!pending.is_empty() && shutdown.phase() != sluice::shutdown::Phase::Running)
                {
                    settle_oldest(&consumer, &mut pending).await;
                    continue;
                }
                let m = tokio::select! {
                    m = consumer.recv() => m.expect("message"),
                    _ = shutdown.reached(sluice::shutdown::Phase::Draining), if pending.is_empty() => break,
                    _ = tokio::time::sleep(Duration::from_millis(5)), if !pending.is_empty() => {
                        // Idle: settle the oldest delivery so offsets keep moving.
                        settle_oldest(&consumer, &mut pending).await;
                        continue;
                    }
                };
                let mut record = FutureRecord::to(&output).payload(m.payload().unwrap_or_default());
                if let Some(k) = m.key() {
                    record = record.key(k);
                }
                let fut = producer.send_result(record).map_err(|(e, _)| e).expect("enqueue");
                pending.push_back((m.topic().to_owned(), m.partition(), m.offset(), fut));
            }
        })
    };
    let rate = measure(&t, &codec, &input, &output, n, size).await;
    shutdown.request();
    loop_task.await.expect("raw loop");
    rate
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let n: usize =
        std::env::var("SLUICE_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    runtime.block_on(async {
        println!("runner throughput, {n} records, {PARTITIONS} partitions, embedded broker");
        println!(
            "\n{:<34} {:>12} {:>12} {:>8}",
            "passthrough", "raw rec/s", "runner rec/s", "ratio"
        );
        for size in [100, 1024] {
            let window = 64 * PARTITIONS as usize;
            let raw = raw_rate(n, size, window).await;
            let runner = runner_rate(n, size, Duration::ZERO, 64).await;
            println!(
                "{:<34} {raw:>12.0} {runner:>12.0} {:>7.1}%",
                format!("{size} B records"),
                100.0 * runner / raw
            );
        }
        println!(
            "\n{:<34} {:>12} {:>12} {:>8}",
            "I/O-bound stage", "ideal rec/s", "runner rec/s", "ratio"
        );
        for (latency_ms, per_partition) in [(20u64, 16usize), (50, 32)] {
            let ideal = (PARTITIONS as usize * per_partition) as f64 / (latency_ms as f64 / 1000.0);
            let m = n.min((ideal * 4.0) as usize);
            let runner =
                runner_rate(m, 100, Duration::from_millis(latency_ms), per_partition).await;
            let label = format!("{latency_ms} ms × {PARTITIONS}p × {per_partition} in flight");
            println!("{label:<34} {ideal:>12.0} {runner:>12.0} {:>7.1}%", 100.0 * runner / ideal);
        }
        if std::env::var("SLUICE_BENCH_METRICS").is_ok() {
            for line in sluice::telemetry::render().lines().filter(|l| {
                l.contains("record_duration_seconds_sum")
                    || l.contains("record_duration_seconds_count")
                    || l.contains("pauses")
            }) {
                println!("{line}");
            }
        }
    });
}
