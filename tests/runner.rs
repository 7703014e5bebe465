//! The at-least-once runner against a Kafka-protocol broker (librdkafka's mock cluster) and the
//! dev schema registry over HTTP: offsets, failures, rebalances, shutdown and schema evolution.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{one_stage_topology, wait_until, Harness, Script, TestStage};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sluice::runner::{self, RunError, RunReport};
use sluice::shutdown::Shutdown;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

async fn spawn_runner(
    h: &Harness,
    stage: TestStage,
    shutdown: Shutdown,
) -> JoinHandle<Result<RunReport, RunError>> {
    let codec = Arc::new(h.codec().await);
    let (spec, topology) = (h.topology.stages[0].clone(), h.topology.clone());
    tokio::spawn(async move {
        runner::run(stage, &spec, &topology, codec, Arc::new(Semaphore::new(10_000)), shutdown)
            .await
    })
}

async fn stop(shutdown: &Shutdown, task: JoinHandle<Result<RunReport, RunError>>) -> RunReport {
    shutdown.request();
    task.await.expect("runner task").expect("runner result")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_completion_never_stores_past_an_unfinished_record() {
    let h = Harness::start(&one_stage_topology(1, "{ max_in_flight: 64, per_partition: 64 }", ""))
        .await;
    h.produce_docs(0..10, Some(0), |_| None).await;
    let gate = Arc::new(Semaphore::new(0));
    let script =
        Script { gate: HashMap::from([("id-3".to_owned(), gate.clone())]), ..Script::default() };
    let stage = TestStage::new(script);
    let shutdown = Shutdown::new();
    let _stop = common::StopOnDrop(shutdown.clone());
    let task = spawn_runner(&h, stage.clone(), shutdown.clone()).await;

    let out = h.output();
    assert!(
        wait_until(Duration::from_secs(30), || async { h.ids_on(&out).await.len() == 9 }).await,
        "the 9 ungated records are done"
    );
    // Give the background committer (200 ms) several chances to commit past the gated record.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        h.committed(1),
        vec![3],
        "committed position stops at the unfinished record (offset 3)"
    );

    gate.add_permits(1);
    assert!(
        wait_until(Duration::from_secs(10), || async { h.committed(1) == vec![10] }).await,
        "then it moves to the end"
    );
    let report = stop(&shutdown, task).await;
    assert_eq!(report.abandoned, 0);
    assert_eq!(h.ids_on(&out).await.values().copied().max(), Some(1), "no duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_output_produce_holds_the_input_offset_until_acknowledged() {
    let h = Harness::start(&one_stage_topology(
        1,
        "{ max_in_flight: 8, per_partition: 8 }",
        "message.timeout.ms: \"1000\"",
    ))
    .await;
    h.produce_docs(0..3, Some(0), |_| None).await;
    // From now on every produce request fails until the errors are cleared.
    let cluster = h.stack.kafka.cluster().expect("embedded broker");
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 500],
    );
    let stage = TestStage::new(Script::default());
    let shutdown = Shutdown::new();
    let _stop = common::StopOnDrop(shutdown.clone());
    let task = spawn_runner(&h, stage.clone(), shutdown.clone()).await;

    let retries = || {
        sluice::telemetry::metrics().produce_retries.with_label_values(&[h.output().as_str()]).get()
    };
    assert!(
        wait_until(Duration::from_secs(30), || async { retries() > 0 }).await,
        "the output produce failed and is being retried"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.committed(1), vec![-1], "nothing committed while the output is unacknowledged");
    assert!(h.ids_on(&h.output()).await.is_empty());

    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    assert!(
        wait_until(Duration::from_secs(30), || async { h.committed(1) == vec![3] }).await,
        "offsets move once outputs are acknowledged"
    );
    let out = h.ids_on(&h.output()).await;
    assert_eq!(out.len(), 3, "every record reached the output: {out:?}");
    assert!(
        out.values().all(|n| *n == 1),
        "the idempotent producer wrote each output once: {out:?}"
    );
    assert_eq!(
        stage.call_count(),
        3,
        "the model was called once per record: outputs are re-sent, not recomputed"
    );
    stop(&shutdown, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_joining_mid_stream_loses_nothing() {
    let h =
        Harness::start(&one_stage_topology(4, "{ max_in_flight: 16, per_partition: 4 }", "")).await;
    // ~400 records/s for one member: the stream outlasts the second member's join (~3 s).
    let n = 3000;
    h.produce_docs(0..n, None, |_| None).await;
    let script = Script { default_delay: Duration::from_millis(40), ..Script::default() };
    let (a, b) = (TestStage::new(script.clone()), TestStage::new(script));
    let (sa, sb) = (Shutdown::new(), Shutdown::new());
    let _stop = (common::StopOnDrop(sa.clone()), common::StopOnDrop(sb.clone()));
    let ta = spawn_runner(&h, a.clone(), sa.clone()).await;
    assert!(
        wait_until(Duration::from_secs(30), || async { a.call_count() >= 60 }).await,
        "first member is working"
    );
    let tb = spawn_runner(&h, b.clone(), sb.clone()).await;

    let out = h.output();
    assert!(
        wait_until(Duration::from_secs(90), || async { h.ids_on(&out).await.len() == n }).await,
        "every record reached the output"
    );
    assert!(b.call_count() > 0, "the second member took over partitions");
    stop(&sa, ta).await;
    stop(&sb, tb).await;
    let ids = h.ids_on(&out).await;
    let duplicates: usize = ids.values().map(|c| c - 1).sum();
    eprintln!("rebalance duplicates: {duplicates}");
    assert_eq!(ids.len(), n, "nothing lost");
    assert_eq!(
        h.committed(4).iter().sum::<i64>(),
        n as i64,
        "committed offsets cover every record"
    );
    // Usually zero: revocation drains in-flight records and commits. A revocation whose commit the
    // coordinator refuses mid-rebalance costs a replay since the last commit; never a rewind to 0.
    assert!(duplicates < n / 2, "runaway reprocessing: {duplicates}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_mid_stream_produces_no_duplicates() {
    let h = Harness::start(&one_stage_topology(3, "{ max_in_flight: 32, per_partition: 16 }", ""))
        .await;
    let n = 600;
    h.produce_docs(0..n, None, |_| None).await;
    // Slow enough (48 in flight × 100 ms: over a second for all) that the stop lands mid-stream
    // even on a loaded machine.
    let script = Script { default_delay: Duration::from_millis(100), ..Script::default() };
    let first = TestStage::new(script.clone());
    let shutdown = Shutdown::new();
    let _stop = common::StopOnDrop(shutdown.clone());
    let task = spawn_runner(&h, first.clone(), shutdown.clone()).await;
    assert!(wait_until(Duration::from_secs(30), || async { first.call_count() >= 50 }).await);
    let report = stop(&shutdown, task).await;
    assert_eq!(report.abandoned, 0, "in-flight records drained within the grace period");
    let done_before = h.ids_on(&h.output()).await.len();
    assert!(done_before < n, "shutdown happened mid-stream ({done_before} of {n})");

    let second = TestStage::new(Script::default());
    let shutdown = Shutdown::new();
    let _stop = common::StopOnDrop(shutdown.clone());
    let task = spawn_runner(&h, second.clone(), shutdown.clone()).await;
    let out = h.output();
    assert!(
        wait_until(Duration::from_secs(60), || async { h.ids_on(&out).await.len() == n }).await
    );
    stop(&shutdown, task).await;
    let ids = h.ids_on(&out).await;
    assert!(
        ids.values().all(|c| *c == 1),
        "a record appears twice: {:?}",
        ids.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
    );
    assert_eq!(first.call_count() + second.call_count(), n, "no record was processed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_records_run_in_order_and_other_keys_in_parallel() {
    let h = Harness::start(&one_stage_topology(
        1,
        "{ max_in_flight: 64, per_partition: 64, key_ordering: true }",
        "",
    ))
    .await;
    // 4 keys, 10 records each, interleaved; early records are the slowest.
    let n = 40;
    h.produce_docs(0..n, Some(0), |i| Some(format!("k{}", i % 4))).await;
    let delay =
        (0..n).map(|i| (format!("id-{i}"), Duration::from_millis(5 * (n - i) as u64))).collect();
    let stage = TestStage::new(Script { delay, ..Script::default() });
    let shutdown = Shutdown::new();
    let _stop = common::StopOnDrop(shutdown.clone());
    let task = spawn_runner(&h, stage.clone(), shutdown.clone()).await;
    let out = h.output();
    assert!(
        wait_until(Duration::from_secs(30), || async { h.read_all(&out).await.len() == n }).await
    );
    stop(&shutdown, task).await;

    let records = h.read_all(&out).await;
    let mut per_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (_, _, key, value) in &records {
        let Some(apache_avro::types::Value::Record(fields)) = value else {
            panic!("undecodable output")
        };
        let Some((_, apache_avro::types::Value::Record(doc))) =
            fields.iter().find(|(k, _)| k == "document")
        else {
            panic!("no document")
        };
        let Some((_, apache_avro::types::Value::String(id))) = doc.iter().find(|(k, _)| k == "id")
        else {
            panic!("no id")
        };
        per_key
            .entry(key.clone().unwrap_or_default())
            .or_default()
            .push(id[3..].parse().expect("numeric id"));
    }
    for (key, ids) in &per_key {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "key {key} out of order: {ids:?}");
    }
    // Keys overlapped: the output interleaves keys rather than finishing one key first.
    let order: Vec<&str> = records.iter().map(|r| r.2.as_deref().unwrap_or("")).collect();
    assert!(
        order[..4].iter().collect::<std::collections::HashSet<_>>().len() > 1,
        "keys ran in parallel: {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_pauses_the_partition_and_everything_still_completes() {
    let h = Harness::start(&one_stage_topology(
        2,
        "{ max_in_flight: 4, per_partition: 2, buffer_per_partition: 2 }",
        "",
    ))
    .await;
    let n = 60;
    h.produce_docs(0..n, None, |_| None).await;
    let stage =
        TestStage::new(Script { default_delay: Duration::from_millis(10), ..Script::default() });
    let shutdown = Shutdown::new();
    let _stop = common::StopOnDrop(shutdown.clone());
    let pauses =
        || sluice::telemetry::metrics().pauses.with_label_values(&[h.input().as_str()]).get();
    let before = pauses();
    let task = spawn_runner(&h, stage.clone(), shutdown.clone()).await;
    let out = h.output();
    assert!(
        wait_until(Duration::from_secs(60), || async { h.ids_on(&out).await.len() == n }).await
    );
    stop(&shutdown, task).await;
    assert!(pauses() > before, "partitions were paused when their window filled");
    assert_eq!(stage.call_count(), n);
    assert_eq!(h.committed(2).iter().sum::<i64>(), n as i64);
}
