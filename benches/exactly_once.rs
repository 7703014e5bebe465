//! Exactly once against at least once on a real broker: one `sluice run` worker of one classify
//! stage on a fresh pipeline per row, for two workloads — passthrough (the simulated provider's
//! smallest latency, 4 partitions × 64 in flight) and I/O-bound (50 ms per call, 4 partitions ×
//! 16 in flight) — each at least once, and exactly once with two transaction intervals.
//!
//! 1. Throughput: the input is produced first, then the worker starts; a consumer that reads
//!    committed (high watermarks would count transaction markers) timestamps every output, and
//!    the steady state runs from a quarter of the outputs to nine tenths.
//! 2. End-to-end latency: once the backlog is out, documents are produced at a steady rate well
//!    below capacity (a quarter of the at-least-once throughput of the workload, at most half
//!    the row's own) for a few seconds, and each one's time from send to receipt at that
//!    consumer is taken (an output's key is its document's id; checked by decoding a sample).
//!
//! The worker logs its commits (`transaction committed`, debug): the median records per
//! transaction and the median time a commit took are printed beside the exactly-once rows.
//!
//! Needs a broker with transactions and an admin API:
//!
//!   scripts/with-kafka cargo bench --bench exactly_once
//!
//! Results and method in docs/BENCHMARKS.md.

#[expect(dead_code, reason = "this bench reads its outputs with a consumer of its own")]
mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::avro::{Codec, Document, Envelope, SchemaKind};
use sluice::config::{compile, Topology};
use sluice::kafka::{create_planned_topics, registry_settings};
use sluice::pipeline::schema_pairs;

const PARTITIONS: i32 = 4;
/// How long the latency phase produces.
const LATENCY_SECS: f64 = 3.0;
/// The exactly-once rows' `transaction_interval`s.
const INTERVALS_MS: [u64; 2] = [100, 20];

struct Workload {
    name: &'static str,
    latency: &'static str,
    per_partition: usize,
    records: usize,
}

const WORKLOADS: [Workload; 2] = [
    // Zero is refused; tokio's timer makes 1 ns about a millisecond, far from the limit here.
    Workload { name: "passthrough", latency: "1ns", per_partition: 64, records: 200_000 },
    Workload { name: "I/O 50 ms", latency: "50ms", per_partition: 16, records: 16_000 },
];

/// `None`: at least once; `Some(ms)`: exactly once with that transaction interval.
type Mode = Option<u64>;
/// Records by key: when each arrived, or the payloads of the first few.
type Seen<T> = Arc<Mutex<Vec<(String, T)>>>;

fn topology(pipeline: &str, bootstrap: &str, registry: &str, w: &Workload, mode: Mode) -> String {
    let delivery = match mode {
        None => "delivery: at_least_once".to_string(),
        Some(ms) => format!("delivery: exactly_once\ntransaction_interval: {ms}ms"),
    };
    let (latency, per_partition) = (w.latency, w.per_partition);
    let in_flight = per_partition * PARTITIONS as usize;
    format!(
        r#"
pipeline: {pipeline}
{delivery}
kafka:
  bootstrap_servers: {bootstrap}
  partitions: {PARTITIONS}
schema_registry: {{ url: "{registry}" }}
providers:
  sim: {{ kind: simulated, latency: {latency} }}
inputs:
  {pipeline}.docs: {{ partitions: {PARTITIONS} }}
stages:
  work:
    kind: classify
    input: {pipeline}.docs
    output: {pipeline}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, technical, other] }}
    concurrency: {{ max_in_flight: {in_flight}, per_partition: {per_partition} }}
"#
    )
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads every partition of the output topic from the start, read committed, and notes each
/// record's key and when it arrived (and the first few payloads, to check the keys).
struct Reader {
    seen: Seen<Instant>,
    samples: Seen<Vec<u8>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    fn start(bootstrap: &str, topic: &str) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}.bench-reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            // Bounds the reader's own share of a latency: an idle fetch returns within 10 ms.
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let (seen, samples, stop) =
            (Arc::default(), Arc::default(), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (seen, samples, stop): (Seen<_>, Seen<_>, Arc<AtomicBool>) =
                (Arc::clone(&seen), Arc::clone(&samples), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else { continue };
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    let mut samples = samples.lock().expect("samples");
                    if samples.len() < 16 {
                        samples.push((key.clone(), m.payload().unwrap_or_default().to_vec()));
                    }
                    seen.lock().expect("seen").push((key, Instant::now()));
                }
            })
        };
        Reader { seen, samples, stop, thread: Some(thread) }
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("seen").len()
    }

    /// Waits (up to five minutes) until `n` outputs have been read.
    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.count() < n {
            assert!(Instant::now() < deadline, "timed out waiting for {n} outputs");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn encode(codec: &Codec, topic: &str, i: usize) -> (String, Vec<u8>) {
    let id = format!("r{i}");
    let doc = Document {
        id: id.clone(),
        tenant: "t".into(),
        content: format!("invoice {i} billed twice"),
        metadata: Default::default(),
    };
    let value = Envelope::new(doc).to_value(SchemaKind::Document).expect("value");
    (id, codec.encode(topic, &value).expect("encode"))
}

/// Produces documents `from..from + rate × LATENCY_SECS` at `rate` per second; when each was
/// handed to the client, by id.
async fn produce_steadily(
    t: &Topology,
    codec: &Codec,
    topic: &str,
    from: usize,
    rate: f64,
) -> HashMap<String, Instant> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &t.kafka.bootstrap_servers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let n = (rate * LATENCY_SECS) as usize;
    let records: Vec<_> = (from..from + n).map(|i| encode(codec, topic, i)).collect();
    let (mut sent, mut acks) = (HashMap::new(), Vec::with_capacity(n));
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let started = Instant::now();
    while sent.len() < n {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(n);
        for (id, value) in &records[sent.len()..due] {
            sent.insert(id.clone(), Instant::now());
            let record = FutureRecord::to(topic).key(id).payload(value);
            acks.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
        }
    }
    for ack in acks {
        ack.await.expect("delivery").map_err(|(e, _)| e).expect("produce");
    }
    sent
}

struct Row {
    rate: f64,
    sent_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    duplicates: usize,
    /// Exactly once: the median records per transaction and milliseconds per commit.
    commits: Option<(u64, u64)>,
}

/// Medians of the worker's `transaction committed` log lines: records, and the commit's time.
fn commits(log: &std::path::Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(log).expect("worker log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains("transaction committed"))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let median = |field: &str| {
        let mut v: Vec<u64> = lines.iter().filter_map(|l| l["fields"][field].as_u64()).collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    Some((median("records")?, median("elapsed_ms")?))
}

/// One worker on a fresh pipeline: its steady-state throughput, then latencies at `send_rate`
/// (a quarter of its own throughput if `None`; at most half of it).
async fn run(
    w: &Workload,
    mode: Mode,
    send_rate: Option<f64>,
    bootstrap: &str,
    registry: &str,
) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = mode.map_or("alo".into(), |ms| format!("eo{ms}"));
    let pipeline = format!("eo-{}-{}-{tag}", std::process::id(), w.per_partition);
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, topology(&pipeline, bootstrap, registry, w, mode)).expect("write");
    let t = compile(&path, &std::fs::read_to_string(&path).expect("read")).expect("compiles");
    create_planned_topics(&t.kafka, &t.topics()).await.expect("topics");
    let settings = registry_settings(&t);
    sluice::avro::register_all(&settings, &schema_pairs(&t)).await.expect("register");
    let codec = Codec::connect(&settings, &schema_pairs(&t)).await.expect("codec");
    let (input, output) = (t.inputs[0].name.clone(), t.stages[0].output.clone());
    let n = w.records;
    common::produce(&t, &codec, &input, 0..n, |i| format!("invoice {i} billed twice")).await;
    let reader = Reader::start(bootstrap, &output);
    let log = dir.path().join("worker.log");
    let worker = Worker(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--topology", path.to_str().expect("utf-8"), "--stage", "work"])
            .env("RUST_LOG", "error,sluice::telemetry::transaction_events=debug")
            .env("SLUICE_LOG_JSON", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("worker"),
    );

    let (from, to) = (n / 4, n * 9 / 10);
    reader.wait_for(to).await;
    let rate = {
        let seen = reader.seen.lock().expect("seen");
        (to - from) as f64 / (seen[to - 1].1 - seen[from - 1].1).as_secs_f64()
    };
    reader.wait_for(n).await;
    let send_rate = send_rate.map_or(rate / 4.0, |r| r.min(rate / 2.0));
    let sent = produce_steadily(&t, &codec, &input, n, send_rate).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let received = loop {
        let mut first = HashMap::new();
        for (k, at) in reader.seen.lock().expect("seen").iter() {
            if sent.contains_key(k) {
                first.entry(k.clone()).or_insert(*at);
            }
        }
        if first.len() == sent.len() {
            break first;
        }
        assert!(Instant::now() < deadline, "{} of {} sent ids arrived", first.len(), sent.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(worker);
    let samples = reader.samples.lock().expect("samples").clone();
    for (key, payload) in &samples {
        let d = codec.decode(Some(payload)).await.expect("decode");
        let env = Envelope::from_value(d.kind, d.value).expect("envelope");
        assert_eq!(&env.document.id, key, "an output's key is its document's id");
    }
    let mut ms: Vec<f64> =
        sent.iter().map(|(k, at)| (received[k] - *at).as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    let seen = reader.seen.lock().expect("seen");
    let distinct: std::collections::HashSet<&String> = seen.iter().map(|(k, _)| k).collect();
    Row {
        rate,
        sent_rate: send_rate,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        duplicates: seen.len() - distinct.len(),
        commits: mode.and_then(|_| commits(&log)),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok().filter(|s| !s.is_empty())
    else {
        eprintln!(
            "exactly_once: needs a real broker: scripts/with-kafka cargo bench --bench exactly_once"
        );
        return;
    };
    let registry = sluice::devstack::registry::serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("registry");
    let started = Instant::now();
    println!(
        "workload     delivery              records/s  vs ALO  sent/s  p50 ms  p99 ms  dup  \
         rec/txn  commit ms"
    );
    for w in &WORKLOADS {
        let mut base: Option<f64> = None;
        let modes = std::iter::once(None).chain(INTERVALS_MS.map(Some));
        for mode in modes {
            let row = run(w, mode, base.map(|b| b / 4.0), &bootstrap, &registry.url()).await;
            let alo = *base.get_or_insert(row.rate);
            let delivery =
                mode.map_or("at least once".into(), |ms| format!("exactly once {ms} ms"));
            let (per_txn, commit_ms) = row
                .commits
                .map_or(("-".into(), "-".into()), |(r, ms)| (r.to_string(), ms.to_string()));
            println!(
                "{:<11}  {delivery:<20}  {:>9.0}  {:>5.2}x  {:>6.0}  {:>6.1}  {:>6.1}  {:>3}  \
                 {per_txn:>7}  {commit_ms:>9}",
                w.name,
                row.rate,
                row.rate / alo,
                row.sent_rate,
                row.p50_ms,
                row.p99_ms,
                row.duplicates
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
}
