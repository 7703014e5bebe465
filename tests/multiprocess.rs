//! The `sluice` binary as separate worker processes against a broker outside them: the embedded
//! broker hosted by this test, or any real broker given by `KAFKA_BOOTSTRAP_SERVERS` (CI also runs
//! this suite against Apache Kafka through `scripts/with-kafka`). A worker is killed with SIGKILL mid-stream and restarted; every
//! input id must end in the output, or in the dead-letter topic if (and only if) it is empty, and
//! duplicates are bounded by what was uncommitted at each group event.

mod common;

use common::crash::Scenario;
use common::oracle::ReplayBound;

use std::time::{Duration, Instant};

const PARTITIONS: i32 = 3;
const DOCS: usize = 3000;
/// The stage's window and commit settings, as in [`topology_yaml`], for the duplicate bound.
const MAX_IN_FLIGHT: usize = 24;
const PER_PARTITION: usize = 8;
const BUFFER_PER_PARTITION: usize = 8;
const COMMIT_INTERVAL_MS: u64 = 100;
const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// The simulated provider's fastest answer (latency − jitter).
const MIN_CALL_MS: u64 = 20;

fn topology_yaml(pipeline: &str) -> String {
    format!(
        r#"
pipeline: {pipeline}
kafka:
  partitions: {PARTITIONS}
  consumer:
    auto.commit.interval.ms: "{COMMIT_INTERVAL_MS}"
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "{HEARTBEAT_INTERVAL_MS}"
    # The rebalance timeout: how long a broker may wait for a killed member to rejoin.
    max.poll.interval.ms: "12000"
  producer:
    linger.ms: "2"
providers:
  sim: {{ kind: simulated, latency: 30ms, jitter: 10ms, failure_rate: 0.05 }}
inputs:
  {pipeline}.docs: {{ partitions: {PARTITIONS} }}
stages:
  work:
    kind: classify
    input: {pipeline}.docs
    output: {pipeline}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, technical, other] }}
    concurrency: {{ max_in_flight: {MAX_IN_FLIGHT}, per_partition: {PER_PARTITION}, buffer_per_partition: {BUFFER_PER_PARTITION} }}
    retry: {{ attempts: 4, initial_backoff: 5ms, max_backoff: 20ms }}
    shutdown_grace: 5s
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_mid_stream_loses_nothing_and_bounds_duplicates() {
    let sc = Scenario::start(DOCS, PARTITIONS, topology_yaml).await;
    let mut a = sc.worker();
    let _b = sc.worker();
    let deadline = Instant::now() + Duration::from_secs(120);
    sc.progress(0.25, deadline).await;
    if std::env::var("SLUICE_BROKER_KEEPS_DEAD_MEMBERS").is_ok_and(|v| v == "1") {
        // A broker that never expires a dead member (tansu 0.6) would keep assigning it
        // partitions after a SIGKILL, and they would stall forever; stop the worker with SIGTERM
        // (drain, commit, leave the group) instead. The SIGKILL run needs member expiry.
        eprintln!(
            "broker keeps dead group members: stopping the worker with SIGTERM instead of SIGKILL"
        );
        a.terminate();
    } else {
        a.kill_9();
    }
    // The killed member can commit nothing more: these are the positions its partitions resume from.
    let resume_at = sc.positions().await;
    assert!(
        resume_at.iter().sum::<i64>() < DOCS as i64,
        "the kill must land mid-stream: {resume_at:?}"
    );
    let _a2 = sc.worker();
    let oracle = sc.settle(deadline).await;

    // Every group event replays at most what was uncommitted then. The events: the second
    // member joins (the first revokes), the kill (the killed member's uncommitted records), its
    // expiry from the group and the restarted member's join (the survivor revokes each time).
    const EVENTS: usize = 4;
    let per_event = ReplayBound {
        partitions: PARTITIONS as usize,
        per_partition: PER_PARTITION,
        buffer_per_partition: BUFFER_PER_PARTITION,
        members: 1,
        max_in_flight: MAX_IN_FLIGHT,
        commit_interval_ms: COMMIT_INTERVAL_MS,
        heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        min_record_ms: MIN_CALL_MS,
    }
    .per_event();
    // By input offset: at or past the partition's committed position at the kill, or before it.
    let (mut after_kill_position, mut before) = (0, 0);
    for (id, extra) in oracle.duplicated() {
        let (partition, offset) = sc.placed[id];
        if offset >= resume_at[partition as usize] {
            after_kill_position += extra;
        } else {
            before += extra;
        }
    }
    eprintln!(
        "multi-process crash suite ({}): {DOCS} documents; duplicates: {after_kill_position} at or past the committed position at the kill, {before} before it (bound {}); committed at kill: {resume_at:?}",
        if sc.on_external_broker() { "external broker" } else { "embedded broker" },
        EVENTS * per_event,
    );
    assert!(
        oracle.duplicates() <= EVENTS * per_event,
        "{} duplicates, more than {EVENTS} events × {per_event} uncommitted records",
        oracle.duplicates()
    );
    assert!(oracle.max_copies() <= 1 + EVENTS, "a record replayed more often than events happened");
}
