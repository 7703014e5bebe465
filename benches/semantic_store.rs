//! The semantic cache's memory per entry, the time to rebuild its index from the entries topic at
//! start, and the flat index's lookup latency, at 10,000 and 50,000 entries (or
//! `SLUICE_BENCH_SEMANTIC_SIZES=10000,50000`) of 384-dimension vectors, a one-line question and
//! an answer of about 1 KB.
//!
//! Each size is measured in child processes of its own, so one measurement's freed heap is not
//! another's baseline:
//!
//! - **index**: the entries inserted into a [`SemanticIndex`] directly (no Kafka): the index's
//!   own byte accounting ([`SemanticIndex::bytes`]) and the process's RSS growth, per entry; the
//!   insert time; lookups at threshold 0.93, misses (random vectors) and hits (a stored vector
//!   slightly moved, with its own question), each timed alone.
//! - **store**: the entries produced to a compacted topic (librdkafka's mock cluster in this
//!   process, or the broker of `KAFKA_BOOTSTRAP_SERVERS`), then a fresh [`SemanticStore::open`]
//!   reads them back (64 partitions, see [`PARTITIONS`]): its own rebuild report, the RSS growth it caused (the index plus whatever
//!   the Kafka consumer still holds), and lookups through the store.
//!
//! Every entry lives under one key, with the key's capacity raised to the size: the flat index's
//! worst case (the default capacity per key is 10,000).
//!
//!   cargo bench --bench semantic_store
//!   scripts/with-kafka cargo bench --bench semantic_store   # rebuild from a real broker

#[path = "semantic/entries.rs"]
mod entries;
#[path = "semantic/table.rs"]
#[expect(dead_code, reason = "the cell formats are the threshold bench's")]
mod table;

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sluice::config::KafkaSettings;
use sluice::devstack::MockKafka;
use sluice::policy::semantic::{IndexLimits, Lookup, SemanticEntry, SemanticIndex, SemanticStore};
use table::Table;

const DIMENSIONS: usize = 384;
const THRESHOLD: f32 = 0.93;
const LOOKUPS: usize = 1000;
/// Partitions of the entries topic: librdkafka's mock cluster keeps at most 5 MB per partition
/// (older records are dropped as by retention), and 50,000 records of about 3 KB need 64.
const PARTITIONS: i32 = 64;
const TENANT: &str = "acme";
const DAYS: [&str; 7] =
    ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const ANSWER: &str = "We are sorry the parcel has not reached you yet. Our records show it left \
the warehouse and was handed to the carrier, whose last scan was at the regional sorting centre. \
Parcels that show no movement for three working days are usually delayed by volume rather than \
lost, and most arrive within the following two days without any action on your side. If it has \
not arrived by then, reply to this message with the order number and the delivery address, and \
we will open an investigation with the carrier the same day. While the investigation runs we can \
send a replacement at no cost, or refund the order in full to the original payment method; \
refunds take five to ten working days to appear, depending on your bank. You can follow every \
step on the order page, under Tracking, and you will get an e-mail at each change of status. \
Thank you for your patience, and for shopping with us.";

/// splitmix64: deterministic vectors without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vector(&mut self) -> Vec<f32> {
        (0..DIMENSIONS).map(|_| self.unit()).collect()
    }
}

fn question(i: usize) -> String {
    format!(
        "Where is my order {}? It was due on {} and the tracking page shows no update.",
        100_000 + i,
        DAYS[i % 7]
    )
}

/// Entry `i`: its vector is the `i`-th of the seed's sequence.
fn entry(i: usize, vector: Vec<f32>) -> SemanticEntry {
    let answer = format!("Order {}: {ANSWER}", 100_000 + i);
    entries::entry(
        entries::tenant(TENANT),
        question(i),
        vector,
        format!("doc-{i}"),
        answer,
        i as i64,
    )
}

fn vectors(n: usize) -> impl Iterator<Item = Vec<f32>> {
    let mut rng = Rng(7);
    (0..n).map(move |_| rng.vector())
}

fn limits(n: usize) -> IndexLimits {
    IndexLimits { capacity_per_key: n, max_bytes: usize::MAX }
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    let kb: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB");
    kb * 1024
}

/// p50 and p99 in µs of `lookup` over `LOOKUPS` misses and as many hits: misses query random
/// vectors, hits a stored entry's vector moved by a little noise, with its question.
fn latencies(n: usize, mut lookup: impl FnMut(&[f32], &str) -> Lookup) -> Value {
    let stored: Vec<Vec<f32>> = vectors(n).step_by((n / LOOKUPS).max(1)).take(LOOKUPS).collect();
    let mut rng = Rng(99);
    let mut time = |hit: bool| {
        let mut v = Vec::with_capacity(LOOKUPS);
        for (k, s) in stored.iter().enumerate() {
            let (query, text) = if hit {
                let q: Vec<f32> = s.iter().map(|x| x + 0.05 * rng.unit()).collect();
                (q, question(k * (n / LOOKUPS).max(1)))
            } else {
                (rng.vector(), "Can I pay by bank transfer?".to_owned())
            };
            let started = Instant::now();
            let found = lookup(&query, &text);
            v.push(started.elapsed());
            assert_eq!(found.hit.is_some(), hit, "a {} lookup", if hit { "hit" } else { "miss" });
        }
        v.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        json!([us(v[v.len() / 2]), us(v[v.len() * 99 / 100])])
    };
    json!({ "miss": time(false), "hit": time(true) })
}

fn child_index(n: usize) -> Value {
    let before = rss();
    let mut index = SemanticIndex::new(limits(n));
    let started = Instant::now();
    for (i, v) in vectors(n).enumerate() {
        index.insert(entry(i, v), n as i64).expect("an entry");
    }
    let insert = started.elapsed();
    let grown = rss() - before;
    assert_eq!(index.len(), n);
    let key = entries::tenant(TENANT);
    let lookups = latencies(n, |q, text| index.lookup(&key, q, text, THRESHOLD, n as i64));
    json!({
        "bytes": index.bytes(), "rss": grown, "insert_s": insert.as_secs_f64(), "lookups": lookups,
    })
}

async fn create_compacted(bootstrap: &str, topic: &str) {
    let admin: AdminClient<_> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    let created = admin.create_topics([&new], &AdminOptions::new()).await.expect("create topics");
    for r in created {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

async fn fill(bootstrap: &str, topic: &str, n: usize) -> (u64, Duration) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()
        .expect("producer");
    let started = Instant::now();
    let mut bytes = 0u64;
    let records = vectors(n).enumerate().map(|(i, v)| {
        let e = entry(i, v);
        let (key, value) = (e.record_key(), e.encode());
        bytes += value.len() as u64;
        let producer = producer.clone();
        let topic = topic.to_owned();
        async move {
            let record = FutureRecord::to(&topic).key(&key).payload(&value);
            producer.send(record, Timeout::Never).await.map(|_| ()).map_err(|(e, _)| e)
        }
    });
    let mut sends = futures::stream::iter(records).buffer_unordered(4096);
    while let Some(r) = sends.next().await {
        r.expect("produced");
    }
    drop(sends);
    (bytes, started.elapsed())
}

fn child_store(n: usize) -> Value {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let topic = format!("sluice.semantic-bench-{}-{n}", std::process::id());
    let real = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok().filter(|s| !s.is_empty());
    let mock = match real {
        Some(_) => None,
        None => Some(MockKafka::start(1).expect("mock cluster")),
    };
    let bootstrap = match (&real, &mock) {
        (Some(b), _) => b.clone(),
        (None, Some(m)) => {
            m.create_topic(&topic, PARTITIONS).expect("topic");
            m.bootstrap_servers().to_owned()
        }
        (None, None) => unreachable!("one broker or the other"),
    };
    runtime.block_on(async {
        if real.is_some() {
            create_compacted(&bootstrap, &topic).await;
        }
        let (bytes, filled) = fill(&bootstrap, &topic, n).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let settings = KafkaSettings::single_broker(bootstrap.clone(), PARTITIONS);
        let before = rss();
        let started = Instant::now();
        let store = SemanticStore::open(&settings, &topic, limits(n)).await.expect("store");
        let open = started.elapsed();
        let grown = rss() - before;
        let rebuild = store.rebuild();
        let (entries, index_bytes) = store.size();
        assert_eq!((rebuild.records, entries), (n as u64, n), "every entry read back");
        let key = entries::tenant(TENANT);
        let lookups = latencies(n, |q, text| store.lookup(&key, q, text, THRESHOLD));
        store.stop();
        json!({
            "broker": if real.is_some() { "real" } else { "mock" },
            "record_bytes": bytes / n as u64, "fill_s": filled.as_secs_f64(),
            "rebuild_s": rebuild.elapsed.as_secs_f64(), "open_s": open.as_secs_f64(),
            "bytes": index_bytes, "rss": grown, "lookups": lookups,
        })
    })
}

/// Runs this binary as `--child <mode> <n>` and reads its one JSON line.
fn child(mode: &str, n: usize) -> Value {
    let exe = std::env::current_exe().expect("this binary");
    let out = Command::new(exe).args(["--child", mode, &n.to_string()]).output().expect("child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{mode} {n}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("a result line");
    serde_json::from_str(line).expect("JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let n: usize = args[at + 2].parse().expect("a size");
        let result = match args[at + 1].as_str() {
            "index" => child_index(n),
            "store" => child_store(n),
            other => panic!("no child mode {other}"),
        };
        println!("RESULT {result}");
        return;
    }
    let sizes: Vec<usize> = std::env::var("SLUICE_BENCH_SEMANTIC_SIZES")
        .unwrap_or_else(|_| "10000,50000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("SLUICE_BENCH_SEMANTIC_SIZES: sizes separated by commas"))
        .collect();
    let mut memory = Table::new(
        "Memory per entry (384 dimensions, one-line question, ~1 KB answer)",
        &[
            "entries",
            "index's accounting",
            "RSS growth, index built directly",
            "RSS growth, store rebuilt from the topic",
            "record on the topic",
        ],
    );
    let mut rebuild = Table::new(
        "Rebuild at start: a fresh SemanticStore::open reading the whole topic",
        &[
            "entries",
            "broker",
            "rebuild (store's report)",
            "open, total",
            "entries/s",
            "baseline: inserts alone",
            "rebuild ÷ inserts",
        ],
    );
    let mut lookup = Table::new(
        "Lookup latency, flat index, every entry under one key (threshold 0.93; µs)",
        &[
            "entries",
            "index: miss p50",
            "p99",
            "hit p50",
            "p99",
            "store: miss p50",
            "p99",
            "hit p50",
            "p99",
        ],
    );
    for n in sizes {
        let index = child("index", n);
        let store = child("store", n);
        let per = |v: &Value| format!("{:.0} B", f(v) / n as f64);
        memory.row(vec![
            n.to_string(),
            per(&index["bytes"]),
            per(&index["rss"]),
            per(&store["rss"]),
            format!("{} B", store["record_bytes"]),
        ]);
        let (rebuilt, inserts) = (f(&store["rebuild_s"]), f(&index["insert_s"]));
        rebuild.row(vec![
            n.to_string(),
            store["broker"].as_str().unwrap_or("?").to_owned(),
            format!("{rebuilt:.2} s"),
            format!("{:.2} s", f(&store["open_s"])),
            format!("{:.0}", n as f64 / rebuilt),
            format!("{inserts:.2} s"),
            format!("{:.1}×", rebuilt / inserts),
        ]);
        let us = |v: &Value| format!("{:.0}", f(v));
        let (i, s) = (&index["lookups"], &store["lookups"]);
        lookup.row(vec![
            n.to_string(),
            us(&i["miss"][0]),
            us(&i["miss"][1]),
            us(&i["hit"][0]),
            us(&i["hit"][1]),
            us(&s["miss"][0]),
            us(&s["miss"][1]),
            us(&s["hit"][0]),
            us(&s["hit"][1]),
        ]);
    }
    for t in [&memory, &rebuild, &lookup] {
        println!("\n{}", t.text());
    }
    println!("\n----- Markdown -----\n");
    for t in [&memory, &rebuild, &lookup] {
        println!("{}", t.markdown());
    }
}
