//! Scaling a stage on Apache Kafka as an operator does (`scripts/with-kafka`, in the Kafka step):
//! one `sluice run` worker, two more join, one is SIGKILLed 6 s later and another SIGTERMed 3 s
//! after that, mid-stream, with the topology's own group defaults. For each group protocol:
//! nothing is lost, the duplicates are within what the events can replay, and no input partition
//! goes without progress for longer than the group's session timeout (what a crash needs) plus a
//! few seconds. The stalls are read from the outputs' timestamps ([`common::stalls`]), never from
//! the workers.
//!
//! `scripts/with-kafka cargo test --test scale_events -- --include-ignored --nocapture`
//! (`SLUICE_SCALE_DEBUG=1` adds librdkafka's `cgrp` debug log to the workers' stderr, with
//! `SLUICE_WORKER_LOG="info,librdkafka=debug"`; `SLUICE_WORKER_LOG_DIR=DIR` writes each worker's
//! log to a file of its own there).

mod common;

use std::time::{Duration, Instant};

use common::crash::{external_broker, Scenario};
use common::oracle::ReplayBound;
use common::stalls::Stalls;
use sluice::kafka::group_description::{self, GroupType};

const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 16;
const MAX_IN_FLIGHT: usize = 64;
const CALL_MS: u64 = 50;
/// 26,000 documents: 20 s of work for all 64 slots at 50 ms a call, so every event is mid-stream.
const DOCS: usize = 26_000;
/// Beyond the session timeout, what a partition may wait after an event: a heartbeat, and two
/// rebalances with a drain each. Two, because a crash that lands in a rebalance can hand the dead
/// member's partitions to a member that is itself stopping (a classic group's assignor cannot
/// know): they move once more when it leaves. Measured on 2 cores with a CPU hog: 15.3 s for
/// a 10 s session (docs/RELIABILITY.md, "Scaling a stage").
const SLACK: Duration = Duration::from_secs(8);
/// What an operator can accept for a crash, whatever the settings: seconds, not the 45 s of
/// librdkafka's and Kafka's default session timeouts (a lag alert fires, work piles up).
const OPERATOR_LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug)]
enum Protocol {
    /// Named in the topology: `group.protocol: classic`, with sluice's classic defaults.
    Classic,
    /// The topology's default on Apache Kafka 4.x: KIP-848.
    Consumer,
}

fn topology(pipeline: &str, protocol: Protocol) -> String {
    topology_with(pipeline, protocol, PARTITIONS)
}

fn topology_with(pipeline: &str, protocol: Protocol, partitions: i32) -> String {
    // KIP-848 is the default where the broker offers it (Apache Kafka 4.1 here): not named.
    let group = match protocol {
        Protocol::Classic => "\n    group.protocol: classic",
        Protocol::Consumer => "",
    };
    let debug =
        if std::env::var_os("SLUICE_SCALE_DEBUG").is_some() { "\n    debug: cgrp" } else { "" };
    format!(
        r#"
pipeline: {pipeline}
kafka:
  partitions: {partitions}
  consumer:
    auto.commit.interval.ms: "1000"{group}{debug}
providers:
  sim: {{ kind: simulated, latency: {CALL_MS}ms }}
inputs:
  {pipeline}.docs: {{ partitions: {partitions} }}
stages:
  work:
    kind: classify
    input: {pipeline}.docs
    output: {pipeline}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, technical, other] }}
    concurrency: {{ max_in_flight: {MAX_IN_FLIGHT}, per_partition: {PER_PARTITION} }}
"#
    )
}

/// The group's session timeout and heartbeat interval as this run has them: the consumer's own
/// settings in the classic protocol, the broker's in KIP-848's.
fn session(sc: &Scenario, protocol: Protocol) -> (Duration, Duration) {
    let ms = |v: Option<String>, what: &str| {
        Duration::from_millis(v.unwrap_or_else(|| panic!("{what}")).parse().expect(what))
    };
    match protocol {
        Protocol::Classic => {
            let config = sluice::kafka::consumer_config(&sc.t.kafka, "g");
            // What the consumer sets, else librdkafka's documented defaults.
            let get = |k: &str, default: &str| Some(config.get(k).unwrap_or(default).to_owned());
            let session = get("session.timeout.ms", "45000");
            (ms(session, "session"), ms(get("heartbeat.interval.ms", "3000"), "heartbeat"))
        }
        Protocol::Consumer => {
            let b = sluice::kafka::group_protocol::broker_configs(&sc.t.kafka).expect("configs");
            let get = |k: &str| b.get(k).cloned();
            (
                ms(get("group.consumer.session.timeout.ms"), "session"),
                ms(get("group.consumer.heartbeat.interval.ms"), "heartbeat"),
            )
        }
    }
}

fn expected(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Classic => "classic",
        Protocol::Consumer => "consumer",
    }
}

fn group_type(protocol: Protocol) -> GroupType {
    match protocol {
        Protocol::Classic => GroupType::Classic,
        Protocol::Consumer => GroupType::Consumer,
    }
}

fn epoch_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.expect("after 1970").as_millis() as i64
}

async fn scale_1_3_1(protocol: Protocol) {
    assert!(external_broker().is_some(), "needs Apache Kafka: scripts/with-kafka");
    let sc = Scenario::start(DOCS, PARTITIONS, |p| topology(p, protocol)).await;
    let chosen = sluice::kafka::group_protocol::choose(&sc.t.kafka);
    assert_eq!(chosen.protocol.as_str(), expected(protocol), "{}", chosen.reason);
    let (session_timeout, heartbeat) = session(&sc, protocol);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut events = Vec::new();
    let _a = sc.worker();
    sc.progress(0.05, deadline).await;
    // The worker joined the group in the protocol expected: its own decision at start.
    let (kafka, group) = (sc.t.kafka.clone(), sc.t.stages[0].group.clone());
    let described = tokio::task::spawn_blocking(move || {
        group_description::describe(&kafka, &group, Duration::from_secs(5))
    });
    let described = described.await.expect("joined").expect("described");
    assert_eq!(described.group_type, group_type(protocol), "{described:?}");
    events.push(("two join", epoch_ms()));
    let mut b = sc.worker();
    let mut c = sc.worker();
    tokio::time::sleep(Duration::from_secs(6)).await;
    events.push(("SIGKILL", epoch_ms()));
    b.kill_9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    events.push(("SIGTERM", epoch_ms()));
    let stopped = tokio::task::spawn_blocking(move || c.terminate());
    assert!(stopped.await.expect("joined"), "a SIGTERMed worker drains, commits and exits");
    events.push(("it exited", epoch_ms()));
    let oracle = sc.settle(deadline).await;
    let stalls = Stalls::of(&sc.ended_at().await, &sc.placed);
    // Two joins, a kill, a departure.
    let bound = 4 * ReplayBound {
        partitions: PARTITIONS as usize,
        per_partition: PER_PARTITION,
        buffer_per_partition: PER_PARTITION,
        members: 1,
        max_in_flight: MAX_IN_FLIGHT,
        commit_interval_ms: 1000,
        heartbeat_interval_ms: heartbeat.as_millis() as u64,
        min_record_ms: CALL_MS,
    }
    .per_event();
    let events: Vec<String> = events
        .iter()
        .map(|(what, at)| format!("{what} at {:.1} s", (at - stalls.start_ms) as f64 / 1000.0))
        .collect();
    let ideal = DOCS as f64 * CALL_MS as f64 / MAX_IN_FLIGHT as f64 / 1000.0;
    eprintln!(
        "scale 1→3→1 on Apache Kafka, {protocol:?} protocol (session timeout {session_timeout:?}): \
         {DOCS} documents, ideal {ideal:.1} s; {}; duplicates {} (bound {bound})\n  {}\n{}",
        stalls.summary(),
        oracle.duplicates(),
        events.join(", "),
        stalls.timeline(),
    );
    assert!(oracle.duplicates() <= bound, "{} duplicates", oracle.duplicates());
    let worst = Duration::from_millis(stalls.worst_partition_ms() as u64);
    assert!(
        worst <= (session_timeout + SLACK).min(OPERATOR_LIMIT),
        "a partition went {worst:?} without an owner making progress; a crash needs at most the \
         session timeout {session_timeout:?} (and an operator {OPERATOR_LIMIT:?}): {}",
        stalls.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn a_classic_group_scaled_1_3_1_with_a_kill_and_a_stop_never_strands_a_partition() {
    scale_1_3_1(Protocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn a_kip848_group_scaled_1_3_1_with_a_kill_and_a_stop_never_strands_a_partition() {
    scale_1_3_1(Protocol::Consumer).await;
}

/// A member stopped while its group rebalances: a worker is SIGKILLed, another joins (a classic
/// group's rebalance now waits for the dead member's session to end) and a survivor is SIGTERMed
/// inside that rebalance (classic: once the coordinator reports it, and a heartbeat later;
/// KIP-848: 2 s after the join). Nothing is lost, and no partition waits longer than the crash requires. In a
/// KIP-848 group the stopped member leaves at once. In a classic group it cannot: it is waiting
/// in the rebalance's JoinGroup, and the coordinator answers one request per connection at a
/// time, so its commit and its LeaveGroup are answered only when the rebalance completes — its
/// partitions wait for the dead member's session like the dead member's own (measured and
/// explained in docs/RELIABILITY.md, "Scaling a stage").
async fn stopped_mid_rebalance(protocol: Protocol) {
    assert!(external_broker().is_some(), "needs Apache Kafka: scripts/with-kafka");
    let sc = Scenario::start(DOCS / 2, PARTITIONS, |p| topology(p, protocol)).await;
    let (session_timeout, heartbeat) = session(&sc, protocol);
    let deadline = Instant::now() + Duration::from_secs(300);
    let _a = sc.worker();
    let mut b = sc.worker();
    let mut c = sc.worker();
    sc.progress(0.1, deadline).await;
    b.kill_9();
    let killed = Instant::now();
    let _d = sc.worker();
    match protocol {
        // Inside the rebalance, not before it: a slow joiner (a loaded machine) would otherwise
        // let the stop land first, a clean leave that tests nothing of the rebalance.
        Protocol::Classic => rebalancing(&sc, heartbeat, deadline).await,
        Protocol::Consumer => tokio::time::sleep(Duration::from_secs(2)).await,
    }
    let stopping = Instant::now();
    let stopped = tokio::task::spawn_blocking(move || c.terminate());
    assert!(stopped.await.expect("joined"), "a SIGTERMed worker drains, commits and exits");
    let exited = Instant::now();
    let oracle = sc.settle(deadline).await;
    let stalls = Stalls::of(&sc.ended_at().await, &sc.placed);
    eprintln!(
        "{protocol:?} group, SIGTERM {:.1} s after a SIGKILL and a join: exited after {:.1} s \
         (the dead member's session ends {:.1} s after the kill); {}; duplicates {}",
        (stopping - killed).as_secs_f64(),
        (exited - stopping).as_secs_f64(),
        session_timeout.as_secs_f64(),
        stalls.summary(),
        oracle.duplicates()
    );
    let worst = Duration::from_millis(stalls.worst_partition_ms() as u64);
    assert!(
        worst <= (session_timeout + SLACK).min(OPERATOR_LIMIT),
        "a partition went {worst:?} without progress: {}",
        stalls.summary()
    );
    if let Protocol::Consumer = protocol {
        assert!(
            exited < killed + session_timeout,
            "the stopped member waited for the dead member's session to end before leaving"
        );
    }
}

/// Returns once the classic group's coordinator is rebalancing (the joiner's JoinGroup arrived)
/// and a heartbeat more has passed, so every live member has heard of it and waits in JoinGroup.
async fn rebalancing(sc: &Scenario, heartbeat: Duration, deadline: Instant) {
    let (kafka, group) = (sc.t.kafka.clone(), sc.t.stages[0].group.clone());
    loop {
        assert!(Instant::now() < deadline, "the joiner never started a rebalance");
        let (kafka, group) = (kafka.clone(), group.clone());
        let state = tokio::task::spawn_blocking(move || {
            group_description::describe(&kafka, &group, Duration::from_secs(5)).map(|d| d.state)
        });
        if state.await.expect("joined").is_ok_and(|s| s == "PreparingRebalance") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(heartbeat + heartbeat / 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn a_kip848_member_stopped_while_its_group_changes_leaves_at_once() {
    stopped_mid_rebalance(Protocol::Consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn a_classic_member_stopped_mid_rebalance_strands_nothing_beyond_the_crash() {
    stopped_mid_rebalance(Protocol::Classic).await;
}

/// A classic member that owns no partitions — more workers than partitions, or a newcomer
/// between a cooperative rebalance's two rounds — leaves the group when it is stopped, at once:
/// librdkafka's close alone sends no LeaveGroup for it, and the member stayed in the group until
/// its session ended, holding up the rebalance its departure started (docs/RELIABILITY.md,
/// "Scaling a stage"). Read from the coordinator (DescribeGroups) as soon as the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn a_classic_member_without_partitions_leaves_the_group_when_stopped() {
    assert!(external_broker().is_some(), "needs Apache Kafka: scripts/with-kafka");
    let sc = Scenario::start(4_000, 1, |p| topology_with(p, Protocol::Classic, 1)).await;
    let (session_timeout, _) = session(&sc, Protocol::Classic);
    let deadline = Instant::now() + Duration::from_secs(120);
    let _a = sc.worker();
    sc.progress(0.02, deadline).await;
    let mut b = sc.worker();
    let (kafka, group) = (sc.t.kafka.clone(), sc.t.stages[0].group.clone());
    let describe = move || {
        let (kafka, group) = (kafka.clone(), group.clone());
        async move {
            let d = tokio::task::spawn_blocking(move || {
                group_description::describe(&kafka, &group, Duration::from_secs(5))
            });
            d.await.expect("joined").expect("described")
        }
    };
    // Both in a stable group, the newcomer with nothing: the one partition stays where it is.
    loop {
        let d = describe().await;
        if d.state == "Stable" && d.members.len() == 2 {
            let idle = d.members.iter().filter(|m| m.assigned.is_empty()).count();
            assert_eq!(idle, 1, "one member owns the partition, the other nothing: {d:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the second worker never joined: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = tokio::task::spawn_blocking(move || b.terminate());
    assert!(stopped.await.expect("joined"), "a SIGTERMed worker exits cleanly");
    let after = describe().await;
    assert_eq!(
        after.members.len(),
        1,
        "the stopped member is still in the group: it left without a LeaveGroup, so the \
         coordinator keeps it until its session ({session_timeout:?}) ends: {after:?}"
    );
    assert!(after.members[0].assigned.len() == 1, "the survivor keeps the partition: {after:?}");
}
