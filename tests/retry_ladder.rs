//! The retry ladder: records that keep failing wait on retry topics until their due time without
//! blocking anything else, then succeed once downstream or end in the dead-letter topic with
//! their whole history; failed dead-letter produces and registry outages hold offsets.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use common::{field, ids, Harness, OneStage, Script, TestStage};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sluice::stage::StageError;

const LADDER: &str = "{ attempts: 1, initial_backoff: 10ms, max_backoff: 20ms, ladder: [1s, 2s] }";

/// The one-stage topology with [`LADDER`] as its retry policy.
fn laddered(concurrency: &str) -> OneStage {
    OneStage::new(1, concurrency).retry(LADDER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ladder_honours_due_times_without_blocking_and_delivers_once() {
    let h = Harness::start(&laddered("{ max_in_flight: 16, per_partition: 16 }").yaml()).await;
    h.produce_docs(0..1, Some(0), |_| None).await;
    let fail_first =
        HashMap::from([("id-0".to_owned(), (2, StageError::retryable("503 from model")))]);
    let stage = TestStage::new(Script { fail_first, ..Script::default() });
    let run = h.start_stage(stage.clone()).await;
    run.until(Duration::from_secs(20), "id-0's first attempt", || async {
        stage.calls_for("id-0") == 1
    })
    .await;
    // Fresh records keep flowing while id-0 waits on the first rung.
    h.produce_docs(1..6, Some(0), |_| None).await;
    run.until(Duration::from_secs(20), "all six ended", || async {
        h.oracle(ids(0..6)).await.all_ended()
    })
    .await;

    let times = stage.call_times("id-0");
    assert_eq!(
        times.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "attempts count across rungs"
    );
    let gap = |i: usize| times[i + 1].1.duration_since(times[i].1).expect("ordered");
    assert!(gap(0) >= Duration::from_millis(1000), "rung 1 waited its 1s: {:?}", gap(0));
    assert!(gap(1) >= Duration::from_millis(2000), "rung 2 waited its 2s: {:?}", gap(1));
    for i in 1..6 {
        let (_, t) = stage.call_times(&format!("id-{i}"))[0];
        assert!(t < times[1].1, "id-{i} was not held behind the waiting record");
    }
    let oracle = h.oracle(ids(0..6)).await;
    oracle.check();
    assert_eq!(oracle.delivered().len(), 6, "all six reached the output");
    assert_eq!(oracle.duplicates(), 0, "exactly once downstream: {:?}", oracle.duplicated());

    let rung1 = h.count(&h.topology.stages[0].retry.retry_topics()[0].0).await;
    assert_eq!(rung1, 1, "one record parked on rung 1");
    run.run_until(Duration::from_secs(5), "the position passes all six", || async {
        h.committed(1) == vec![6]
    })
    .await
    .expect("run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_ladder_dead_letters_with_the_origin_and_every_attempt() {
    let h = Harness::start(&laddered("{ max_in_flight: 16, per_partition: 16 }").yaml()).await;
    h.produce_docs(0..2, Some(0), |_| None).await;
    let fail = HashMap::from([("id-1".to_owned(), StageError::retryable("still overloaded"))]);
    let stage = TestStage::new(Script { fail, ..Script::default() });
    h.start_stage(stage.clone())
        .await
        .run_until(Duration::from_secs(30), "both records ended", || async {
            h.oracle(ids(0..2)).await.all_ended()
        })
        .await
        .expect("run");
    let oracle = h.oracle(ids(0..2)).await;
    oracle.check();
    assert_eq!(oracle.dead_lettered(), ["id-1"].into());

    let letters = h.read_all(&h.dlq()).await;
    let letter = letters[0].3.as_ref().expect("decodes");
    assert_eq!(field(letter, "error_class"), &Value::Enum(2, "RETRIES_EXHAUSTED".into()));
    assert_eq!(
        field(letter, "original_topic"),
        &Value::String(h.input()),
        "origin, not the retry topic"
    );
    assert_eq!(field(letter, "original_offset"), &Value::Long(1));
    let Value::Array(attempts) = field(letter, "attempts") else { panic!() };
    let numbers: Vec<&Value> = attempts.iter().map(|a| field(a, "attempt")).collect();
    assert_eq!(numbers, [&Value::Int(1), &Value::Int(2), &Value::Int(3)], "input + two rungs");
    assert_eq!(stage.calls_for("id-1"), 3);
    let original = field(letter, "original_value");
    let Value::Bytes(bytes) = original else { panic!("bytes") };
    assert_eq!(bytes[0], 0, "the original Confluent-framed bytes, ready to redrive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_produce_leaves_the_input_offset_unstored() {
    let h = Harness::start(
        &laddered("{ max_in_flight: 4, per_partition: 4 }")
            .producer("message.timeout.ms: \"1000\"")
            .yaml(),
    )
    .await;
    h.produce_docs(0..1, Some(0), |_| None).await;
    let fail = HashMap::from([("id-0".to_owned(), StageError::permanent("content policy"))]);
    let stage = TestStage::new(Script { fail, ..Script::default() });
    let cluster = h.stack.kafka.cluster().expect("embedded broker");
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 500],
    );
    let run = h.start_stage(stage.clone()).await;
    let dlq = h.dlq();
    let retries =
        || sluice::telemetry::metrics().produce_retries.with_label_values(&[dlq.as_str()]).get();
    run.until(Duration::from_secs(30), "the dead-letter produce failed", || async {
        retries() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        h.committed(1),
        vec![0],
        "input offset held while the dead letter is unacknowledged"
    );
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    run.run_until(Duration::from_secs(30), "the position passes the record", || async {
        h.committed(1) == vec![1]
    })
    .await
    .expect("run");
    let oracle = h.oracle(ids(0..1)).await;
    oracle.check();
    assert_eq!(oracle.dead_lettered(), ["id-0"].into());
    assert_eq!(oracle.duplicates(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_pauses_instead_of_dead_lettering() {
    let h = Harness::start(&laddered("{ max_in_flight: 4, per_partition: 4 }").yaml()).await;
    let stage = TestStage::new(Script::default());
    let run = h.start_stage(stage.clone()).await;
    // The worker has not seen this schema id yet: decoding needs the registry.
    let codec = h.codec().await;
    h.stack.registry.set_available(false);
    h.produce_docs_with(&codec, 0..3, Some(0), |_| None).await;
    let registry = &h.stack.registry;
    // The worker met the outage, and came back for the schema rather than giving up on it.
    run.until(Duration::from_secs(30), "the worker's lookups were refused twice", || async {
        registry.refused_requests() >= 2
    })
    .await;
    assert_eq!(stage.call_count(), 0, "nothing processed while the registry is down");
    assert_eq!(h.count(&h.dlq()).await, 0, "nothing dead-lettered");
    assert_eq!(h.committed(1), vec![0], "nothing committed");
    registry.set_available(true);
    run.run_until(Duration::from_secs(30), "processed after recovery", || async {
        h.oracle(ids(0..3)).await.all_ended()
    })
    .await
    .expect("run");
    let oracle = h.oracle(ids(0..3)).await;
    oracle.check();
    assert_eq!(oracle.delivered().len(), 3, "none dead-lettered: {oracle:?}");
}
