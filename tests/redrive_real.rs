//! Issue 18, item 2, on Apache Kafka (`scripts/with-kafka`): a redrive never republishes a letter
//! twice. A `sluice dlq redrive --execute` killed mid-batch leaves nothing a read-committed
//! consumer (every stage) can see, and the next run republishes every letter exactly once; a
//! second redrive of the stage — another CLI process, or the console's redrive, which calls the
//! same library function — is refused while the first holds the stage's redrive lease, naming
//! it; and of two runs that passed the lease check together the newer fences the older.
//! `#[ignore]`d without a real broker:
//! `scripts/with-kafka cargo test --test redrive_real -- --include-ignored --test-threads 1`.

mod common;

use common::letters::{letter, write_letters};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::crash::external_broker;
use common::{document, Harness};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::avro::DeadLetter;
use sluice::kafka::presence::{present, Presence};
use sluice::kafka::{assign_only_config, BrokerKind};
use sluice::ops::dlq::redrive::position::Position;
use sluice::ops::dlq::redrive::route::Republished;
use sluice::ops::dlq::redrive::sink::Sink;
use sluice::ops::{self, DlqError, Filter, RedriveOptions};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const DEADLINE: Duration = Duration::from_secs(120);

/// Stage `work` with a one-rung ladder (redrive republishes to the rung); clients' sessions end
/// 6 s after a crash, so a killed run's lease is gone soon.
fn topology(p: &str) -> String {
    format!(
        r#"
pipeline: {p}
kafka:
  partitions: 1
  properties:
    session.timeout.ms: "6000"
providers:
  sim: {{ kind: simulated, latency: 1ms }}
inputs:
  {p}.docs: {{ partitions: 1 }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [a] }}
    retry: {{ attempts: 1, initial_backoff: 10ms, max_backoff: 50ms, ladder: [1m] }}
"#
    )
}

struct Setup {
    h: Harness,
    _dir: tempfile::TempDir,
    path: PathBuf,
    rung: String,
    group: String,
}

/// The topology on Apache Kafka, written to a file for the CLI, with `letters` dead letters
/// `id-<i>` of stage `work` on its dead-letter topic.
async fn setup(letters: usize) -> Setup {
    let bootstrap = external_broker().expect("needs Apache Kafka: scripts/with-kafka");
    let yaml = topology(&common::unique("rr"));
    let h = Harness::start_on(&yaml, Some(bootstrap)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, &yaml).expect("write topology");
    let (codec, input) = (h.codec().await, h.input());
    let written: Vec<DeadLetter> = (0..letters)
        .map(|i| {
            let id = format!("id-{i}");
            let value = h.encode(&codec, &input, &document(&id, "t", "text"));
            DeadLetter { original_offset: i as i64, ..letter(&h, &id, Some(value)) }
        })
        .collect();
    write_letters(&h, &written).await;
    let rung = h.topology.stages[0].retry.retry_topics()[0].0.clone();
    let group = ops::redrive_group(&h.topology.stages[0]);
    Setup { h, _dir: dir, path, rung, group }
}

impl Setup {
    /// `sluice dlq redrive --execute` as a process of its own, with more arguments.
    fn cli(&self, args: &[&str]) -> Child {
        Command::new(BIN)
            .args(["dlq", "redrive", "--stage", "work", "--execute", "--format", "json"])
            .arg("--topology")
            .arg(&self.path)
            .args(args)
            .env("KAFKA_BOOTSTRAP_SERVERS", self.h.stack.kafka.bootstrap_servers())
            .env("SCHEMA_REGISTRY_URL", &self.h.topology.schema_registry.url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice dlq redrive")
    }

    /// The keys on the rung as a consumer with `isolation` reads them, to the end.
    async fn keys_on_rung(&self, isolation: &str) -> Vec<String> {
        let (bootstrap, topic) =
            (self.h.stack.kafka.bootstrap_servers().to_owned(), self.rung.clone());
        let isolation = isolation.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "redrive-real-reader")
                .set("enable.partition.eof", "true")
                .set("isolation.level", &isolation)
                .create()
                .expect("reader");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Beginning).expect("partition");
            consumer.assign(&tpl).expect("assign");
            let (mut keys, started) = (Vec::new(), Instant::now());
            while started.elapsed() < DEADLINE {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        use rdkafka::message::Message;
                        keys.push(String::from_utf8_lossy(m.key().unwrap_or_default()).into());
                    }
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return keys,
                    _ => {}
                }
            }
            panic!("the rung was not read to its end within {DEADLINE:?}");
        })
        .await
        .expect("reader thread")
    }

    /// The roles holding the stage's redrive lease.
    async fn holders(&self) -> Vec<String> {
        let (kafka, group) = (self.h.topology.kafka.clone(), self.group.clone());
        tokio::task::spawn_blocking(move || present(&kafka, &group).expect("describe"))
            .await
            .expect("presence thread")
            .into_iter()
            .map(|h| h.role)
            .collect()
    }

    async fn redrive(&self) -> Result<ops::RedriveReport, DlqError> {
        let opts =
            RedriveOptions { execute: true, filter: Filter::default(), ..Default::default() };
        ops::redrive(&self.h.topology, "work", &opts, |_| {}).await
    }
}

async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(common::wait_until(DEADLINE, &mut condition).await, "not within {DEADLINE:?}: {what}");
}

fn exactly_once(mut keys: Vec<String>, letters: usize) {
    keys.sort();
    let mut want: Vec<String> = (0..letters).map(|i| format!("id-{i}")).collect();
    want.sort();
    assert_eq!(keys, want, "every letter republished exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka"]
async fn a_redrive_killed_mid_batch_leaves_nothing_visible_and_the_next_run_sends_each_once() {
    let s = setup(30).await;
    // One record a second, so the test can see an open batch: records in the log that a
    // read-committed consumer does not see yet.
    let mut first = s.cli(&["--rate", "1/s"]);
    let started = Instant::now();
    loop {
        let committed = s.keys_on_rung("read_committed").await.len();
        if s.keys_on_rung("read_uncommitted").await.len() >= committed + 2 {
            break;
        }
        if let Some(status) = first.try_wait().expect("status") {
            let mut stderr = String::new();
            std::io::Read::read_to_string(first.stderr.as_mut().expect("piped"), &mut stderr)
                .expect("stderr");
            panic!("the run ended ({status}) before the test saw an open batch: {stderr}");
        }
        assert!(started.elapsed() < DEADLINE, "no open batch within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let visible = s.keys_on_rung("read_committed").await;
    wait_for("the killed run's lease expired", || async { s.holders().await.is_empty() }).await;

    let next = s.redrive().await.expect("redrive");
    assert_eq!((next.stopped.as_deref(), next.transactional), (None, true));
    assert_eq!(next.done_before, visible.len(), "what the stages saw is what the position says");
    assert_eq!(next.redriven, 30 - visible.len(), "the open batch is sent again, once");
    exactly_once(s.keys_on_rung("read_committed").await, 30);
    let written = s.keys_on_rung("read_uncommitted").await.len();
    assert!(written >= 32, "the aborted records exist ({written}) but no stage sees them");
    let position = common::committed(s.h.stack.kafka.bootstrap_servers(), &s.group, &s.h.dlq(), 1);
    assert_eq!(position, [30]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka"]
async fn a_second_redrive_of_a_stage_is_refused_while_the_first_runs_naming_it() {
    let s = setup(40).await;
    // Two records a second: the first run holds the lease for about 20 s.
    let first = s.cli(&["--rate", "2/s"]);
    wait_for("the first run holds the lease", || async { !s.holders().await.is_empty() }).await;
    assert_eq!(s.holders().await, ["redrive"]);

    let second = s.cli(&[]).wait_with_output().expect("second run");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second CLI run is refused");
    assert!(stderr.contains("another redrive or discard of stage 'work' is running"), "{stderr}");
    assert!(stderr.contains("redrive on "), "the holder is named: {stderr}");
    // The console's redrive button calls the library function: refused the same way.
    let console = s.redrive().await.expect_err("refused");
    assert!(matches!(&console, DlqError::Busy { holders, .. } if holders.contains("redrive")));
    let discard = ops::discard(
        &s.h.topology,
        "work",
        &RedriveOptions { execute: true, ..Default::default() },
        |_| {},
    )
    .await
    .expect_err("a discard is refused too");
    assert!(matches!(discard, DlqError::Busy { .. }), "{discard}");

    let out = first.wait_with_output().expect("first run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(
        (report["redriven"].as_u64(), report["transactional"].as_bool()),
        (Some(40), Some(true))
    );
    exactly_once(s.keys_on_rung("read_committed").await, 40);
    let again = s.redrive().await.expect("redrive");
    assert_eq!((again.redriven, again.done_before), (0, 40), "nothing is sent twice");
}

/// Two runs that passed the lease check at the same instant: the newer one's producer fences the
/// older, whose open batch is aborted and whose commit fails with [`DlqError::TakenOver`]; the
/// newer commits its position with the done-set metadata inside its transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka"]
async fn of_two_runs_past_the_lease_the_newer_fences_the_older() {
    let s = setup(2).await;
    let (kafka, dlq) = (&s.h.topology.kafka, s.h.dlq());
    let consumer = || -> Arc<StreamConsumer> {
        Arc::new(assign_only_config(kafka, &s.group).create().expect("consumer"))
    };
    let record = |id: &str| Republished {
        topic: s.rung.clone(),
        partition: None,
        key: Some(id.as_bytes().to_vec()),
        value: b"v".to_vec(),
        headers: vec![],
    };
    let (older_c, newer_c) = (consumer(), consumer());
    let mut older =
        Sink::open(kafka, BrokerKind::Kafka, "work", &s.group, &older_c).await.expect("open");
    let mut older_pos = Position::load(older_c.clone(), &dlq, &s.group).await.expect("position");
    older.send(&record("id-0")).expect("send").await.expect("delivered").expect("acked");
    older_pos.parts.get_mut(&0).expect("partition 0").done.insert(0);

    let mut newer =
        Sink::open(kafka, BrokerKind::Kafka, "work", &s.group, &newer_c).await.expect("open");
    let error = older.commit(&mut older_pos).await.expect_err("fenced");
    assert!(matches!(&error, DlqError::TakenOver { stage } if stage == "work"), "{error}");
    assert!(error.to_string().contains("took over"));

    let mut newer_pos = Position::load(newer_c.clone(), &dlq, &s.group).await.expect("position");
    assert_eq!(newer_pos.parts[&0].done.next(), 0, "the older run's commit did not happen");
    newer.send(&record("id-1")).expect("send").await.expect("delivered").expect("acked");
    // Letter 1 finished, letter 0 left in place: the gap travels in the transaction's metadata.
    newer_pos.parts.get_mut(&0).expect("partition 0").done.insert(1);
    newer.commit(&mut newer_pos).await.expect("the newer run commits");
    assert_eq!(s.keys_on_rung("read_committed").await, ["id-1"], "the older batch was aborted");
    let back = Position::load(consumer(), &dlq, &s.group).await.expect("position");
    let done = &back.parts[&0].done;
    assert_eq!((done.next(), done.metadata().as_str()), (0, "redriven:1"));
}

/// Review #2: a batch the broker aborts for its age (`transaction.timeout.ms`, here 1 s) while
/// this run alone holds the lease is reported as such — nothing of it published, run again —
/// and not as another run taking over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka"]
async fn a_batch_the_broker_timed_out_is_not_reported_as_a_take_over() {
    let s = setup(1).await;
    let mut kafka = s.h.topology.kafka.clone();
    kafka.producer.insert("transaction.timeout.ms".into(), "1000".into());
    let dlq = s.h.dlq();
    let c: Arc<StreamConsumer> =
        Arc::new(assign_only_config(&kafka, &s.group).create().expect("consumer"));
    let (k, g, t) = (kafka.clone(), s.group.clone(), dlq.clone());
    let lease = tokio::task::spawn_blocking(move || Presence::announce(&k, &g, &t, "redrive"))
        .await
        .expect("presence thread")
        .expect("lease");
    let mut sink = Sink::open(&kafka, BrokerKind::Kafka, "work", &s.group, &c).await.expect("open");
    let mut pos = Position::load(c.clone(), &dlq, &s.group).await.expect("position");
    let record = Republished {
        topic: s.rung.clone(),
        partition: Some(0),
        key: Some(b"id-0".to_vec()),
        value: b"v".to_vec(),
        headers: vec![],
    };
    sink.send(&record).expect("send").await.expect("delivered").expect("acked");
    pos.parts.get_mut(&0).expect("partition 0").done.insert(0);
    // The broker's abort writes a marker after the record.
    let (bootstrap, rung) = (s.h.stack.kafka.bootstrap_servers().to_owned(), s.rung.clone());
    wait_for("the broker aborted the open transaction", || {
        let (bootstrap, rung) = (bootstrap.clone(), rung.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let c: BaseConsumer =
                    ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
                c.fetch_watermarks(&rung, 0, Duration::from_secs(10)).is_ok_and(|(_, h)| h >= 2)
            })
            .await
            .expect("watermark thread")
        }
    })
    .await;
    let error = sink.commit(&mut pos).await.expect_err("the transaction is gone");
    assert!(
        matches!(&error, DlqError::TransactionAborted { stage, .. } if stage == "work"),
        "{error}"
    );
    assert!(!error.to_string().contains("took over"), "{error}");
    assert_eq!(s.keys_on_rung("read_committed").await, Vec::<String>::new());
    tokio::task::spawn_blocking(move || lease.leave()).await.expect("leave");
}

/// Issue 24 #4 on Apache Kafka: `sluice status` counts only the dead letters still outstanding,
/// and a letter redriven to the stage's rung says it waits there until the stage reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka"]
async fn status_counts_outstanding_letters_and_a_redriven_one_waits_on_the_rung() {
    use sluice::ops::dlq::{At, Fate};
    let s = setup(3).await;
    let t = &s.h.topology;
    // A fresh broker may not have elected the group's coordinator yet: asked again until then.
    let status = || async {
        let started = Instant::now();
        loop {
            match ops::status::report(t).await {
                Ok(r) => {
                    break (r.stages[0].dead_letters_last_hour, r.stages[0].dead_letters_last_day)
                }
                Err(e) if started.elapsed() < DEADLINE => eprintln!("status not yet: {e}"),
                Err(e) => panic!("status: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    assert_eq!(status().await, (3, 3));
    let filter = Filter { at: vec![(0, 1)], ..Filter::default() };
    let one = RedriveOptions { execute: true, filter, ..Default::default() };
    let report = ops::redrive(t, "work", &one, |_| {}).await.expect("redrive");
    assert_eq!((report.redriven, report.stopped), (1, None));
    assert_eq!(status().await, (2, 2), "the redriven letter is no longer counted");
    let codec = s.h.codec().await;
    let records = ops::dlq::read::read_all(t, &codec, &s.h.dlq()).await.expect("read");
    let fates = ops::dlq::fates(t, &t.stages[0], &records).await.expect("fates");
    let waiting = &fates[&At::new(0, 1)];
    assert!(matches!(waiting, Fate::Waiting { topic, .. } if *topic == s.rung), "{fates:?}");
    assert_eq!(fates[&At::new(0, 0)], Fate::Outstanding);
}
