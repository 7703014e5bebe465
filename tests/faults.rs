//! The fault matrix, in process: each test keeps a stage working on a steady feed of documents,
//! injects one fault mid-run, heals it, and holds the run to one oracle — every input id ends in
//! an output or a dead letter, exactly once after removing duplicates, duplicates bounded by what
//! the group events seen could replay — plus the case's own assertion. Each prints one line with
//! what it measured (`cargo test --test faults -- --nocapture`), for docs/RELIABILITY.md.
//!
//! Broker faults use librdkafka's mock cluster (three brokers where leadership must move); the
//! schema registry's outage switch and the mock model provider's fault switch do the rest.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use common::faults::{counter, replay_events, Feed, Measured, Sampler, SERIAL};
use common::oracle::ReplayBound;
use common::run::Running;
use common::{ids, unique, Harness, OneStage, Script, TestStage};
use rdkafka::mocking::MockCoordinator;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use schema_registry_converter::async_impl::schema_registry::post_schema;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use sluice::avro::{subject_for, SchemaKind};
use sluice::kafka::registry_settings;
use sluice::mock_provider::MockConfig;

/// Input partitions of the runner cases.
const PARTITIONS: i32 = 4;
const ALL: [i32; 4] = [0, 1, 2, 3];
/// The runner cases' window: 4 partitions × (4 + 4) records, 16 in the stage at once.
const WINDOW: &str = "{ max_in_flight: 16, per_partition: 4, buffer_per_partition: 4 }";
/// How long the test stage works on a record.
const STAGE_MS: u64 = 20;
/// Documents per second the feed produces.
const RATE: u32 = 40;
/// How long the pipeline runs before the fault.
const WARM_UP: Duration = Duration::from_secs(4);
/// The long outages of the matrix.
const OUTAGE: Duration = Duration::from_secs(30);
/// How long the pipeline may take to catch up once a fault ends.
const CATCH_UP: Duration = Duration::from_secs(40);

/// The replay bound of the runner cases' group (one member): see [`ReplayBound`].
/// `uncommitted_ms` is how long finished records may go uncommitted around one event.
fn runner_bound(uncommitted_ms: u64) -> ReplayBound {
    ReplayBound {
        partitions: PARTITIONS as usize,
        per_partition: 4,
        buffer_per_partition: 4,
        members: 1,
        max_in_flight: 16,
        commit_interval_ms: uncommitted_ms,
        heartbeat_interval_ms: 500,
        min_record_ms: STAGE_MS,
    }
}

fn slow_stage() -> TestStage {
    TestStage::new(Script { default_delay: Duration::from_millis(STAGE_MS), ..Script::default() })
}

/// The end of every fault case: stops the feed, waits until every record it sent has ended
/// (the recovery time counts from `healed`), stops the runner, and returns the oracle with what
/// was measured — checked against `bound` for each group event seen since `events_before`.
async fn finish<T: Send + 'static>(
    h: &Harness,
    case: &'static str,
    run: Running<T>,
    feed: Feed,
    healed: Instant,
    events_before: u64,
    bound: &ReplayBound,
) -> (common::Oracle, Measured, T) {
    let n = feed.stop().await;
    run.until(CATCH_UP, "every record sent ended after the fault", || async {
        h.oracle(ids(0..n)).await.all_ended()
    })
    .await;
    let recovery = healed.elapsed();
    let events = replay_events(&h.topology.stages[0].name) - events_before;
    let result = run.stop().await;
    let oracle = h.oracle(ids(0..n)).await;
    let measured = Measured::new(case, n, &oracle, events, bound, recovery);
    measured.check(&oracle);
    let partitions = h.topology.inputs[0].partitions;
    assert_eq!(
        h.committed(partitions).iter().sum::<i64>(),
        n as i64,
        "{case}: committed offsets cover every record"
    );
    (oracle, measured, result)
}

/// Starts the feed and the stage, and waits until records flow through.
async fn flowing(h: &Harness, stage: TestStage) -> (common::run::StageRun, Feed, u64) {
    let events_before = replay_events(&h.topology.stages[0].name);
    let feed = h.feed(RATE).await;
    let run = h.start_stage(stage).await;
    run.until(Duration::from_secs(30), "records flow before the fault", || async {
        h.count(&h.output()).await >= 20
    })
    .await;
    tokio::time::sleep(WARM_UP).await;
    (run, feed, events_before)
}

/// Broker 1 of 3 — leader of partitions 0 and 3 of every topic and the group's coordinator —
/// goes down for 30 s mid-run. With `failover`, its leaderships and the coordinator move to
/// the others 2 s later, as a controller would; without, they stay with it (the mock cluster's
/// own behaviour: nothing moves) and its partitions and the group wait for it.
async fn broker_down(case: &'static str, failover: bool) {
    let h = Harness::start_cluster(&OneStage::new(PARTITIONS, WINDOW).yaml(), 3).await;
    h.place_leaders(|_, p| Some(p % 3 + 1));
    h.cluster().coordinator(MockCoordinator::Group(h.group()), 1).expect("coordinator");
    let (run, feed, events_before) = flowing(&h, slow_stage()).await;

    h.cluster().broker_down(1).expect("broker down");
    let down = Instant::now();
    let failover_after = Duration::from_secs(2);
    tokio::time::sleep(failover_after).await;
    if failover {
        h.place_leaders(|_, p| Some(p % 2 + 2));
        h.cluster().coordinator(MockCoordinator::Group(h.group()), 2).expect("coordinator");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Watermarks, not a read: see `reading_with_one_broker_of_three_down_works`.
    let (out, live) = (h.output(), [1, 2]);
    let before = h.high_watermarks(&out, &live);
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    let during = h.high_watermarks(&out, &live) - before;
    h.cluster().broker_up(1).expect("broker up");
    let healed = Instant::now();

    // Finished records go uncommitted while the coordinator is unreachable: until the failover,
    // or, without one, until the member's session times out and it stops (6 s, see OneStage).
    let unreachable = if failover { failover_after } else { Duration::from_secs(6) };
    let bound = runner_bound(200 + unreachable.as_millis() as u64);
    finish(&h, case, run, feed, healed, events_before, &bound).await.2.expect("runner");
    if failover {
        assert!(
            during > 0,
            "records kept flowing on the surviving brokers while broker 1 was down"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_for_30_s_mid_run_fails_over_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let case =
        "mock: broker 1 of 3 (leader of 2/4 partitions, coordinator) down 30 s, failover 2 s";
    broker_down(case, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_for_30_s_mid_run_without_failover_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let case = "mock: broker 1 of 3 (leader of 2/4 partitions, coordinator) down 30 s, no failover";
    broker_down(case, false).await;
}

/// `sluice consume`'s reader (and the kit's, which is the same) must not give up on a transient
/// connection error to one broker while every partition it reads is led by another (it did:
/// it returned the first error event, BrokerTransportFailure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_with_one_broker_of_three_down_works() {
    let _serial = SERIAL.lock().await;
    let h = Harness::start_cluster(&OneStage::new(PARTITIONS, WINDOW).yaml(), 3).await;
    h.place_leaders(|_, p| Some(p % 2 + 2));
    h.produce_docs(0..10, None, |_| None).await;
    h.cluster().broker_down(1).expect("broker down");
    assert_eq!(h.count(&h.input()).await, 10, "every record read from brokers 2 and 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_leaders_moving_mid_run_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let h = Harness::start_cluster(&OneStage::new(PARTITIONS, WINDOW).yaml(), 3).await;
    h.place_leaders(|_, p| Some(p % 3 + 1));
    let (run, feed, events_before) = flowing(&h, slow_stage()).await;

    let out = h.output();
    let before = h.high_watermarks(&out, &ALL);
    // Every partition of every topic (input, output, dead letters) moves to the next broker.
    // (No leaderless moment: the mock cluster dereferences a partition's leader unchecked, and
    // a leaderless partition crashes it.)
    for round in 1..=10 {
        h.place_leaders(|_, p| Some((p + round) % 3 + 1));
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let during = h.high_watermarks(&out, &ALL) - before;
    let healed = Instant::now();

    let bound = runner_bound(200);
    let case = "mock: every partition's leader moved to the next broker every 1.5 s, 10 times";
    finish(&h, case, run, feed, healed, events_before, &bound).await.2.expect("runner");
    assert!(during > 0, "records kept flowing while leaders moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_fetch_errors_for_a_window_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let h = Harness::start(&OneStage::new(PARTITIONS, WINDOW).yaml()).await;
    let (run, feed, events_before) = flowing(&h, slow_stage()).await;

    use RDKafkaRespErr::*;
    let produce = [
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
    ];
    let fetch = [
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
        RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    ];
    // Enough errors that every request in the window fails; cleared at its end.
    let many = |codes: &[RDKafkaRespErr]| -> Vec<RDKafkaRespErr> {
        codes.iter().copied().cycle().take(100_000).collect()
    };
    let cluster = h.cluster();
    cluster.request_errors(RDKafkaApiKey::Produce, &many(&produce));
    cluster.request_errors(RDKafkaApiKey::Fetch, &many(&fetch));
    let window = Instant::now();
    // Outputs already on their way may still land at the window's start.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = h.output();
    let at_start = h.high_watermarks(&out, &ALL);
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(window.elapsed())).await;
    let at_end = h.high_watermarks(&out, &ALL);
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    cluster.clear_request_errors(RDKafkaApiKey::Fetch);
    let healed = Instant::now();

    let bound = runner_bound(200);
    let case = "mock: every Produce and Fetch failed with retriable errors for 6 s";
    finish(&h, case, run, feed, healed, events_before, &bound).await.2.expect("runner");
    assert_eq!(at_start, at_end, "the fault bit: no output was written inside the window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_seconds_round_trip_to_the_coordinator_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let h = Harness::start_cluster(&OneStage::new(PARTITIONS, WINDOW).yaml(), 3).await;
    // Broker 1 coordinates the group and leads nothing: only the group's requests are slow.
    h.place_leaders(|_, p| Some(p % 2 + 2));
    h.cluster().coordinator(MockCoordinator::Group(h.group()), 1).expect("coordinator");
    let (run, feed, events_before) = flowing(&h, slow_stage()).await;

    let committed_before: i64 = h.committed(PARTITIONS).iter().sum();
    let out = h.output();
    let output_before = h.high_watermarks(&out, &ALL);
    h.cluster().broker_round_trip_time(1, Duration::from_secs(2)).expect("rtt");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let output_during = h.high_watermarks(&out, &ALL) - output_before;
    // This read itself goes through the slow coordinator.
    let committed_during = h.committed(PARTITIONS).iter().sum::<i64>() - committed_before;
    h.cluster().broker_round_trip_time(1, Duration::ZERO).expect("rtt");
    let healed = Instant::now();

    let bound = runner_bound(200 + 2 * 2000);
    let case = "mock: 2 s round trip to the group coordinator for 20 s";
    finish(&h, case, run, feed, healed, events_before, &bound).await.2.expect("runner");
    assert!(output_during > 0, "records kept flowing while the coordinator was slow");
    assert!(committed_during > 0, "commits still landed through a 2 s round trip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_registry_down_for_30_s_mid_run_makes_records_wait_not_dead_letter() {
    let _serial = SERIAL.lock().await;
    let h = Harness::start(&OneStage::new(PARTITIONS, WINDOW).yaml()).await;
    // A producer about to move to v2 of the document schema (a new field with a default): the
    // worker has never seen v2's id, so it needs the registry to decode those records.
    let mut v2: serde_json::Value =
        serde_json::from_str(SchemaKind::Document.text()).expect("json");
    v2["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "priority", "type": "int", "default": 0}));
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, v2.to_string());
    let v2_id = post_schema(&registry_settings(&h.topology), subject_for(&h.input()), supplied)
        .await
        .expect("compatible evolution registers")
        .id;
    let v2_schema = apache_avro::Schema::parse_str(&v2.to_string()).expect("v2 parses");

    let events_before = replay_events(&h.topology.stages[0].name);
    let codec = Arc::new(h.codec().await);
    let switch_at = Arc::new(AtomicUsize::new(usize::MAX));
    let (topic, switch) = (h.input(), switch_at.clone());
    let feed = Feed::start(h.stack.kafka.bootstrap_servers(), &h.input(), RATE, move |i| {
        let id = format!("id-{i}");
        if i < switch.load(Ordering::SeqCst) {
            let doc = common::document(&id, "t", "v1 document");
            return codec
                .encode(&topic, &doc.to_value(SchemaKind::Document).expect("value"))
                .expect("encode");
        }
        let value = Value::Record(vec![
            ("id".into(), Value::String(id)),
            ("tenant".into(), Value::String("t".into())),
            ("content".into(), Value::String("v2 document".into())),
            ("metadata".into(), Value::Map(Default::default())),
            ("priority".into(), Value::Int(7)),
        ]);
        let mut bytes = vec![0];
        bytes.extend_from_slice(&v2_id.to_be_bytes());
        apache_avro::writer::datum::GenericDatumWriter::builder(&v2_schema)
            .build()
            .expect("writer")
            .write_value_ref(&mut bytes, &value)
            .expect("v2 datum");
        bytes
    });
    let run = h.start_stage(slow_stage()).await;
    run.until(Duration::from_secs(30), "records flow before the fault", || async {
        h.count(&h.output()).await >= 20
    })
    .await;
    tokio::time::sleep(WARM_UP).await;

    let registry = &h.stack.registry;
    let refused_before = registry.refused_requests();
    let waits = || counter("sluice_registry_unavailable_total", &[("stage", "work")]);
    let waits_before = waits();
    registry.set_available(false);
    let first_v2 = feed.sent() + 2;
    switch_at.store(first_v2, Ordering::SeqCst);
    tokio::time::sleep(OUTAGE).await;
    let dead_during = h.count(&h.dlq()).await;
    let v2_out_during = h.ids_on(&h.output()).await.into_keys().filter(|id| {
        id.strip_prefix("id-").and_then(|i| i.parse::<usize>().ok()).is_some_and(|i| i >= first_v2)
    });
    let v2_out_during = v2_out_during.count();
    let (refused, waited) = (registry.refused_requests() - refused_before, waits() - waits_before);
    registry.set_available(true);
    let healed = Instant::now();

    let case = "registry down 30 s while producers move to a schema id the worker has not seen";
    let (oracle, ..) = finish(&h, case, run, feed, healed, events_before, &runner_bound(200)).await;
    assert_eq!(dead_during, 0, "nothing dead-lettered during the outage");
    assert_eq!(v2_out_during, 0, "records of the unseen schema waited for the registry");
    assert!(refused > 0 && waited > 0, "the worker met the outage ({refused} refused, {waited})");
    assert!(oracle.dead_lettered().is_empty(), "none dead-lettered: {:?}", oracle.dead_lettered());
}

fn classify_on_mock(p: &str, url: &str) -> String {
    format!(
        r#"
pipeline: {p}
kafka:
  partitions: 2
  consumer:
    auto.commit.interval.ms: "200"
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
providers:
  m:
    kind: openai
    base_url: {url}
    breaker: {{ consecutive_failures: 3, cool_down: 2s }}
prices: {{ set_on: 2026-11-01, models: {{ m/cls: {{ input: 0.15, output: 0.6 }} }} }}
inputs: {{ {p}.docs: {{ partitions: 2 }} }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    model: {{ provider: m, name: cls }}
    classify: {{ labels: [billing, other] }}
    concurrency: {{ max_in_flight: 32, per_partition: 16, buffer_per_partition: 16 }}
    retry: {RETRY_BUDGET}
"#
    )
}

/// Outlasts a 30 s outage with room to spare: each visit makes 6 attempts at least 250 ms, 500 ms,
/// 1 s, 2 s, 2 s apart (about 6 s), then the record parks on the next rung; 5 visits and 30 s
/// parked make a budget of about a minute before a record would be dead-lettered.
const RETRY_BUDGET: &str =
    "{ attempts: 6, initial_backoff: 250ms, max_backoff: 2s, max_inline_wait: 3s, ladder: [2s, 4s, 8s, 16s] }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_answering_5xx_for_30_s_opens_and_closes_the_breaker_and_dead_letters_nothing() {
    let _serial = SERIAL.lock().await;
    let server = common::mock_provider(MockConfig::default()).await;
    let h = Harness::start(&classify_on_mock(&unique("m5xx"), &server.openai_url())).await;
    let breaker = Sampler::start(|| {
        sluice::telemetry::metrics().breaker_state.with_label_values(&["m"]).get()
    });
    let events_before = replay_events("work");
    let feed = h.feed(20).await;
    let run = h.start_pipeline();
    run.until(Duration::from_secs(30), "records flow before the fault", || async {
        h.count(&h.output()).await >= 20
    })
    .await;
    tokio::time::sleep(WARM_UP).await;

    let failures = || counter("sluice_attempt_failures_total", &[("stage", "work")]);
    let failures_before = failures();
    let parked = || counter("sluice_retries_scheduled_total", &[("stage", "work")]);
    let parked_before = parked();
    server.set_fault("cls", Some(500));
    tokio::time::sleep(OUTAGE).await;
    let dead_during = h.count(&h.dlq()).await;
    let seen_during = breaker.seen();
    server.set_fault("cls", None);
    let healed = Instant::now();
    let attempts_failed = failures() - failures_before;
    let endpoint_failed = server.ledger().totals("cls").errors;
    let parked = parked() - parked_before;

    let bound = ReplayBound {
        partitions: 2,
        per_partition: 16,
        buffer_per_partition: 16,
        members: 1,
        max_in_flight: 32,
        commit_interval_ms: 200,
        heartbeat_interval_ms: 500,
        min_record_ms: 1,
    };
    let case = "model endpoint answering 500 to every call for 30 s, then healthy";
    let (oracle, ..) = finish(&h, case, run, feed, healed, events_before, &bound).await;
    let closed = common::wait_until(Duration::from_secs(10), || async {
        sluice::telemetry::metrics().breaker_state.with_label_values(&["m"]).get() == 0
    })
    .await;
    let seen = breaker.stop().await;
    println!(
        "fault matrix | model 5xx: {endpoint_failed} calls answered 500, {attempts_failed} \
         attempts failed, {parked} parked on the ladder; breaker states {seen:?}"
    );
    assert_eq!(dead_during, 0, "nothing dead-lettered while retry budget remained");
    assert!(oracle.dead_lettered().is_empty(), "none dead-lettered: {:?}", oracle.dead_lettered());
    assert!(seen_during.contains(&2), "the breaker opened during the outage: {seen_during:?}");
    let opened = seen.iter().position(|s| *s == 2).expect("opened");
    assert!(closed && seen[opened..].contains(&0), "the breaker closed again: {seen:?}");
    assert!(
        attempts_failed > endpoint_failed,
        "the open breaker refused attempts without calling the endpoint \
         ({attempts_failed} attempts failed, {endpoint_failed} calls reached it)"
    );
}
