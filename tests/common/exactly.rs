//! The exactly-once suite's run (`tests/exactly_once.rs`): one classify stage on Apache Kafka
//! calling the mock provider (a priced model, so its ledger says what every call was billed), in
//! either delivery mode, with a read_committed reader ([`super::committed`]) of the output,
//! dead-letter and metering topics running from the start. The faults are the test's; the
//! figures and their checks are in [`super::figures`] and [`super::billing`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sluice::config::Price;
use sluice::mock_provider::{MockConfig, MockProvider};

use super::committed::CommittedReader;
use super::crash::Scenario;
pub use super::figures::Figures;
use super::procs::Worker;

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
    /// The stage's timeout for a model call.
    pub call_timeout_s: u64,
}

fn topology(p: &str, mode: Mode, url: &str, s: Shape) -> String {
    let Shape { partitions, max_in_flight, per_partition, call_timeout_s, .. } = s;
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
  sim: {{ kind: openai, base_url: {url}, timeout: {call_timeout_s}s }}
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
    /// When the mock provider started (at most): the origin of its ledger's clock.
    provider_started: Instant,
    /// Each SIGKILL of a worker, since `provider_started`.
    kills: Mutex<Vec<Duration>>,
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
        let provider_started = Instant::now();
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
        let started = Instant::now();
        Self { sc, provider, mode, reader, started, provider_started, kills: Mutex::default() }
    }

    /// SIGKILLs `worker`, noting when: a call the provider answered just before cannot be
    /// metered (see [`super::billing::Billing`]).
    pub fn kill(&self, worker: &mut Worker) {
        self.kills.lock().expect("kills").push(self.provider_started.elapsed());
        worker.kill_9();
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
    /// it got there; gives up early when every worker has exited.
    async fn done(&self, deadline: Instant, workers: &mut [Worker]) -> bool {
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
            let exited = workers.iter_mut().all(|w| w.0.try_wait().ok().flatten().is_some());
            if Instant::now() >= deadline || exited {
                eprintln!("the run did not finish (every worker exited: {exited})");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the run's work is done (see [`Run::done`]), stops the `workers` still running
    /// with SIGTERM (each must drain, commit and exit 0; none may have exited by itself), reads
    /// on until nothing more arrives, and gathers the figures.
    pub async fn finish(self, deadline: Instant, mut workers: Vec<Worker>) -> Figures {
        self.done(deadline, &mut workers).await;
        let mut exits = Vec::new();
        for mut w in workers {
            let pid = w.0.id();
            if let Ok(Some(status)) = w.0.try_wait() {
                exits.push(format!(
                    "worker {pid} exited by itself ({status}) before it was stopped"
                ));
                continue;
            }
            let clean = tokio::task::spawn_blocking(move || w.terminate()).await.expect("joined");
            if !clean {
                exits.push(format!("worker {pid} did not exit 0 after SIGTERM"));
            }
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let seen = self.reader.finish(Duration::from_secs(3)).await;
        let kills = self.kills.lock().expect("kills").clone();
        let ledger = self.provider.ledger();
        let mut f = Figures::of(&self.sc, self.mode, &seen, &ledger, &kills, seconds).await;
        f.exits = exits;
        f
    }
}
