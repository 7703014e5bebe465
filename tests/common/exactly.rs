//! The exactly-once suite's run (`tests/exactly_once.rs`): one classify stage on Apache Kafka
//! calling the mock provider (a priced model, so its ledger says what every call was billed), in
//! either delivery mode, with a read_committed reader of the output, dead-letter and metering
//! topics running from the start. The faults are the test's; the figures and the checks are
//! here: each document's result and each billed call's cost event seen once by a
//! read_committed reader (copies counted, never removed), nothing lost, and the provider's ledger
//! equal to `sluice cost report`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::avro::Codec;
use sluice::config::Price;
use sluice::kafka::registry_settings;
use sluice::metering::{decode_events, CostEvent};
use sluice::mock_provider::{Ledger, MockConfig, MockProvider};

use super::committed::{CommittedReader, Seen};
use super::crash::{is_empty, Scenario};
use super::procs::Worker;
use super::Oracle;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The stage's delivery mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The default: not named in the topology.
    AtLeastOnce,
    /// `delivery: exactly_once`, a transaction every 100 ms or 1000 records.
    ExactlyOnce,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::AtLeastOnce => "at_least_once",
            Self::ExactlyOnce => "exactly_once",
        }
    }

    fn stage_settings(self) -> &'static str {
        match self {
            Self::AtLeastOnce => "",
            Self::ExactlyOnce => {
                "    delivery: exactly_once\n    transaction_interval: 100ms\n    \
                 transaction_max_records: 1000\n"
            }
        }
    }
}

/// Shape of a run: simulated provider latency makes every fault land mid-stream.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub docs: usize,
    pub partitions: i32,
    pub max_in_flight: usize,
    pub per_partition: usize,
    /// The mock provider's latency per call.
    pub call_ms: u64,
}

fn topology(p: &str, mode: Mode, url: &str, s: Shape) -> String {
    let Shape { partitions, max_in_flight, per_partition, .. } = s;
    format!(
        r#"
pipeline: {p}
kafka:
  partitions: {partitions}
  consumer:
    auto.commit.interval.ms: "1000"
  producer:
    linger.ms: "5"
providers:
  sim: {{ kind: openai, base_url: {url}, timeout: 5s }}
prices:
  set_on: 2026-11-01
  models:
    sim/m: {{ input: 0.15, output: 0.6 }}
inputs:
  {p}.docs: {{ partitions: {partitions} }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, technical, other] }}
    concurrency: {{ max_in_flight: {max_in_flight}, per_partition: {per_partition} }}
    retry: {{ attempts: 4, initial_backoff: 5ms, max_backoff: 20ms }}
    shutdown_grace: 5s
{}"#,
        mode.stage_settings()
    )
}

/// A run in progress: documents produced, the mock provider serving, the reader reading.
pub struct Run {
    pub sc: Scenario,
    pub provider: MockProvider,
    pub mode: Mode,
    reader: CommittedReader,
    started: Instant,
}

impl Run {
    /// `SLUICE_EXACTLY_ONCE_AS=at_least_once` runs the exactly-once scenarios in the default mode
    /// instead: their checks must then fail (the proof that they can).
    pub async fn start(mode: Mode, shape: Shape) -> Self {
        let forced = std::env::var("SLUICE_EXACTLY_ONCE_AS").is_ok_and(|v| v == "at_least_once");
        let mode = if forced { Mode::AtLeastOnce } else { mode };
        assert!(
            super::crash::apache_kafka(),
            "needs Apache Kafka: scripts/with-kafka cargo test --test exactly_once -- \
             --include-ignored"
        );
        let price =
            Price { input: 150_000, output: 600_000, cached_input: 150_000, per_request: 0 };
        let provider = super::mock_provider(MockConfig {
            latency: Duration::from_millis(shape.call_ms),
            prices: BTreeMap::from([("m".to_owned(), price)]),
            ..MockConfig::default()
        })
        .await;
        let url = provider.openai_url();
        let sc =
            Scenario::start(shape.docs, shape.partitions, |p| topology(p, mode, &url, shape)).await;
        let stage = &sc.t.stages[0];
        let topics =
            [stage.output.clone(), stage.dead_letter_topic.clone(), sc.t.metering_topic.clone()];
        let reader = CommittedReader::start(&sc.bootstrap, &topics);
        Self { sc, provider, mode, reader, started: Instant::now() }
    }

    /// A `sluice run --stage work` worker process, its log at warnings (`SLUICE_WORKER_LOG`
    /// overrides) less the dead letters of the empty documents, which are expected.
    pub fn worker(&self) -> Worker {
        let log = std::env::var("SLUICE_WORKER_LOG")
            .unwrap_or_else(|_| "warn,sluice::telemetry::record_events=error".into());
        let child = std::process::Command::new(BIN)
            .args(["run", "--topology", self.sc.path.to_str().expect("utf-8"), "--stage", "work"])
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.sc.bootstrap)
            .env("SCHEMA_REGISTRY_URL", &self.sc.t.schema_registry.url)
            .env("RUST_LOG", log)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start worker");
        Worker(child)
    }

    /// Waits (until `deadline`) until the read_committed reader has seen every document end
    /// and the group has committed every input record: the run's work is done. Returns whether
    /// it got there; the checks say what is missing if not.
    pub async fn done(&self, deadline: Instant) -> bool {
        let stage = &self.sc.t.stages[0];
        let docs = self.sc.docs;
        loop {
            let seen = self.reader.seen();
            let ended: BTreeSet<String> = seen
                .keys(&stage.output)
                .into_iter()
                .chain(seen.keys(&stage.dead_letter_topic))
                .collect();
            let all = (0..docs).all(|i| ended.contains(&format!("d{i}")));
            if all && self.sc.positions().await.iter().sum::<i64>() == docs as i64 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the `workers` still running with SIGTERM (each must drain, commit and exit 0),
    /// reads on until nothing more arrives, and gathers the figures.
    pub async fn finish(self, workers: Vec<Worker>) -> Figures {
        for mut w in workers {
            let pid = w.0.id();
            let clean = tokio::task::spawn_blocking(move || w.terminate()).await.expect("joined");
            assert!(clean, "worker {pid}: a SIGTERMed worker drains, commits and exits 0");
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let seen = self.reader.finish(Duration::from_secs(3)).await;
        Figures::of(&self.sc, self.mode, &seen, self.provider.ledger(), seconds).await
    }
}

/// What a run left, as a read_committed reader and the provider's ledger see it.
pub struct Figures {
    pub mode: Mode,
    pub docs: usize,
    pub oracle: Oracle,
    /// Copies of each cost event on the metering topic, by event id (the record key).
    pub metering: BTreeMap<String, usize>,
    /// The cost events read (every copy).
    pub events: Vec<CostEvent>,
    pub ledger: Ledger,
    /// `sluice cost report --by stage`: (requests, failed, cost in micro-dollars).
    pub report: (u64, u64, u64),
    pub seconds: f64,
}

impl Figures {
    async fn of(sc: &Scenario, mode: Mode, seen: &Seen, ledger: Ledger, seconds: f64) -> Self {
        let stage = &sc.t.stages[0];
        let ids = (0..sc.docs).map(|i| format!("d{i}"));
        let oracle =
            Oracle::new(ids, seen.keys(&stage.output), seen.keys(&stage.dead_letter_topic));
        let mut metering = BTreeMap::new();
        for key in seen.keys(&sc.t.metering_topic) {
            *metering.entry(key).or_insert(0) += 1;
        }
        let codec = Codec::connect(&registry_settings(&sc.t), &[]).await.expect("codec");
        let decoded = decode_events(&codec, seen.of(&sc.t.metering_topic)).await.expect("decode");
        assert_eq!(decoded.skipped.count, 0, "metering records that are not cost events");
        let report = cost_report(sc).await;
        Self {
            mode,
            docs: sc.docs,
            oracle,
            metering,
            events: decoded.events,
            ledger,
            report,
            seconds,
        }
    }

    pub fn duplicates(&self) -> usize {
        self.oracle.duplicates()
    }

    pub fn lost(&self) -> usize {
        self.oracle.missing().len()
    }

    /// Extra copies of cost events, by event id.
    pub fn metering_duplicates(&self) -> usize {
        self.metering.values().map(|c| c - 1).sum()
    }

    /// Billed model calls as the metering topic has them, every copy counted: (calls, cost).
    pub fn metered(&self) -> (u64, u64) {
        let billed = self.events.iter().filter(|e| !e.cached && e.outcome == "ok");
        billed.fold((0, 0), |(n, c), e| (n + 1, c + e.cost_micro_usd.max(0) as u64))
    }

    /// One line for the log: what the run is, and its figures.
    pub fn line(&self, what: &str) -> String {
        let (calls, cost) = self.metered();
        format!(
            "{what} [{}]: {} documents, duplicates {} (most copies of one {}), lost {}, cost \
             events {} (duplicates {}), billed calls: ledger {} / metered {} / cost report {}; \
             micro-USD: ledger {} / metered {} / cost report {}; {:.1} s",
            self.mode.name(),
            self.docs,
            self.duplicates(),
            self.oracle.max_copies(),
            self.lost(),
            self.events.len(),
            self.metering_duplicates(),
            self.ledger.billed_calls(),
            calls,
            self.report.0 - self.report.1,
            self.ledger.billed_micro_usd(),
            cost,
            self.report.2,
            self.seconds,
        )
    }

    /// What holds in both modes: every document ended, nowhere it should not, exactly the
    /// empty ones dead-lettered.
    pub fn assert_nothing_lost(&self, what: &str) {
        assert_eq!(
            self.lost(),
            0,
            "{what}: documents that never ended: {:?}",
            self.oracle.missing()
        );
        self.oracle.check();
        let empty: BTreeSet<String> =
            (0..self.docs).filter(|i| is_empty(*i)).map(|i| format!("d{i}")).collect();
        assert_eq!(
            self.oracle.dead_lettered(),
            empty.iter().map(String::as_str).collect(),
            "{what}: exactly the empty documents are dead-lettered"
        );
    }

    /// Exactly once, as a read_committed reader sees it: one copy of every result and every
    /// cost event, and the provider billed exactly what the metering (and the cost report) says.
    pub fn assert_exactly_once(&self, what: &str) {
        self.assert_nothing_lost(what);
        assert_eq!(
            self.oracle.max_copies(),
            1,
            "{what}: a read_committed reader saw {} duplicate results (extra copies by id, first \
             20: {:?})",
            self.duplicates(),
            self.oracle.duplicated().into_iter().take(20).collect::<Vec<_>>()
        );
        let doubled: Vec<_> = self.metering.iter().filter(|(_, c)| **c > 1).take(20).collect();
        assert!(
            doubled.is_empty(),
            "{what}: {} duplicate cost events on the metering topic (event id, copies): {doubled:?}",
            self.metering_duplicates()
        );
        self.assert_ledger_is_metered(what);
    }

    /// The provider's ledger equals the metering topic read committed, and `sluice cost report`.
    pub fn assert_ledger_is_metered(&self, what: &str) {
        let ledger = (self.ledger.billed_calls(), self.ledger.billed_micro_usd());
        assert_eq!(
            self.metered(),
            ledger,
            "{what}: billed calls and micro-USD on the metering topic (read committed, every \
             copy) against the provider's ledger"
        );
        let (requests, failed, cost) = self.report;
        assert_eq!(
            (requests - failed, cost),
            ledger,
            "{what}: `sluice cost report` (calls, micro-USD) against the provider's ledger"
        );
    }
}

/// `sluice cost report --by stage --format json`, summed over its rows.
async fn cost_report(sc: &Scenario) -> (u64, u64, u64) {
    let mut command = std::process::Command::new(BIN);
    command
        .args(["cost", "report", "--topology", sc.path.to_str().expect("utf-8")])
        .args(["--by", "stage", "--format", "json"])
        .env("KAFKA_BOOTSTRAP_SERVERS", &sc.bootstrap)
        .env("SCHEMA_REGISTRY_URL", &sc.t.schema_registry.url)
        .env("RUST_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || command.output().expect("run sluice"))
        .await
        .expect("report thread");
    assert!(out.status.success(), "cost report: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("the report is JSON");
    let field = |r: &Value, f: &str| r[f].as_u64().unwrap_or_else(|| panic!("{f} in {r}"));
    rows.iter().fold((0, 0, 0), |(a, b, c), r| {
        (a + field(r, "requests"), b + field(r, "failed"), c + field(r, "cost_micro_usd"))
    })
}
