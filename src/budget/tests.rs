//! Budgets and the ledger against the embedded broker and the dev schema registry: replicas that
//! read one ledger agree, through a registry outage and past a malformed record; a ledger that
//! cannot decide makes a call wait briefly; ended windows leave memory.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaApiKey;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientConfig;

use super::*;
use crate::config::{compile, Topology};
use crate::devstack::DevStack;
use crate::kafka::registry_settings;
use crate::pipeline::schema_pairs;
use crate::stage::StageError;
use crate::telemetry::budget_metrics;

/// A budget key of the current month.
fn key() -> String {
    let (window, _) = window_of(crate::config::BudgetWindow::Month, SystemTime::now());
    format!("t|p|{window}")
}

/// The dev stack with a one-stage topology whose tenant `t` may spend `limit` per `window`.
async fn stack(limit: &str, window: &str) -> (DevStack, Topology) {
    let p = format!("budget-{}", replica_id());
    let yaml = format!(
        r#"
pipeline: {p}
providers:
  sim: {{ kind: simulated }}
budgets: {{ window: {window}, tenants: {{ t: {{ limit: {limit} }} }} }}
inputs:
  {p}.docs: {{ partitions: 1 }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [a] }}
"#
    );
    let mut t = compile(Path::new("t.yaml"), &yaml).expect("test topology compiles");
    let stack = DevStack::start(&mut t, "127.0.0.1:0".parse().expect("addr")).await.expect("stack");
    (stack, t)
}

/// A codec of its own (so with its own cache of schemas fetched from the registry).
async fn codec(t: &Topology) -> Arc<Codec> {
    Arc::new(Codec::connect(&registry_settings(t), &schema_pairs(t)).await.expect("codec"))
}

fn ledger_topic(t: &Topology) -> String {
    t.budgets.as_ref().expect("budgets").ledger_topic.clone()
}

async fn open(t: &Topology, replica: &str) -> Ledger {
    let codec = codec(t).await;
    Ledger::open(&t.kafka, &ledger_topic(t), codec, replica.to_owned()).await.expect("ledger")
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_starting_during_a_registry_outage_waits_for_it_and_counts_every_claim() {
    let (stack, t) = stack("0.0001", "month").await;
    let key = key();
    let a = open(&t, "a").await;
    for _ in 0..3 {
        assert_eq!(a.claim(&key, "t", 30, 100).await.expect("claim"), Decision::Granted);
    }
    // B has never fetched the claim schema: while the registry is down it cannot read a claim.
    let codec_b = codec(&t).await;
    stack.registry.set_available(false);
    let (kafka, topic) = (t.kafka.clone(), ledger_topic(&t));
    let opening =
        tokio::spawn(async move { Ledger::open(&kafka, &topic, codec_b, "b".into()).await });
    let waits = || budget_metrics().registry_waits.with_label_values(&[&ledger_topic(&t)]).get();
    wait_until("the ledger reader met the outage", || waits() > 0).await;
    assert!(!opening.is_finished(), "a replica does not start with claims it could not read");
    stack.registry.set_available(true);
    let b = opening.await.expect("task").expect("ledger");
    assert_eq!(b.granted(&key), 90, "the claims read after the outage are all counted");
    assert_eq!(b.skipped(), 0);
    // Both replicas hold the same total, so together they grant no more than the limit.
    assert_eq!(b.claim(&key, "t", 10, 100).await.expect("claim"), Decision::Granted);
    assert_eq!(a.claim(&key, "t", 1, 100).await.expect("claim"), Decision::Denied);
    wait_until("a has read b's claim", || a.granted(&key) == 100).await;
    assert_eq!(b.granted(&key), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_ledger_record_is_skipped_alike_by_every_replica_and_counted() {
    let (_stack, t) = stack("0.0001", "month").await;
    let key = key();
    let topic = ledger_topic(&t);
    let a = open(&t, "a").await;
    assert_eq!(a.claim(&key, "t", 40, 100).await.expect("claim"), Decision::Granted);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &t.kafka.bootstrap_servers)
        .create()
        .expect("producer");
    for garbage in [&b"not a claim"[..], &[0, 0, 0, 0, 1, 0xff][..]] {
        let record = FutureRecord::to(&topic).key("x").payload(garbage).partition(0);
        producer.send(record, Duration::from_secs(10)).await.expect("produce garbage");
    }
    assert_eq!(a.claim(&key, "t", 40, 100).await.expect("claim"), Decision::Granted);
    assert_eq!(a.skipped(), 2);
    let skipped = budget_metrics().claims_skipped.with_label_values(&[&topic]).get();
    assert_eq!(skipped, 2, "one event per malformed record");
    let b = open(&t, "b").await;
    assert_eq!((b.skipped(), b.granted(&key)), (2, 80));
    assert_eq!(b.claim(&key, "t", 30, 100).await.expect("claim"), Decision::Denied);
    assert_eq!(b.claim(&key, "t", 20, 100).await.expect("claim"), Decision::Granted);
    wait_until("a has read b's claims", || a.granted(&key) == 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_that_cannot_decide_makes_the_call_wait_briefly_not_until_the_next_window() {
    let (stack, t) = stack("1.0", "month").await;
    let budgets = Budgets::open(&t, codec(&t).await, replica_id())
        .await
        .expect("ledger")
        .expect("the topology has budgets");
    let rejected = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 1];
    stack
        .kafka
        .cluster()
        .expect("embedded broker")
        .request_errors(RDKafkaApiKey::Produce, &rejected);
    let error = budgets.reserve("t", "work", 10).await.expect_err("no ledger, no spending");
    let BudgetError::Unavailable { retry_after, .. } = &error else {
        panic!("a ledger error is not the budget running out: {error:?}")
    };
    assert!(*retry_after <= Duration::from_secs(5), "{retry_after:?}");
    // Through the gateway and the stage, that is a short retryable wait — not a deferral.
    let stage_error = StageError::from(ProviderError::from(error));
    let StageError::Retryable { not_before: Some(at), .. } = stage_error else {
        panic!("not a retryable error with a due time: {stage_error:?}")
    };
    assert!(at <= SystemTime::now() + Duration::from_secs(5));
    stack.kafka.cluster().expect("embedded broker").clear_request_errors(RDKafkaApiKey::Produce);
    let reservation = budgets.reserve("t", "work", 10).await.expect("the ledger is back");
    assert!(reservation.budget().is_some_and(|b| b.starts_with("t|")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_windows_leave_the_processs_memory() {
    let (_stack, t) = stack("1.0", "300ms").await;
    let budgets = Budgets::open(&t, codec(&t).await, replica_id())
        .await
        .expect("ledger")
        .expect("the topology has budgets");
    let mut windows = HashSet::new();
    while windows.len() < 4 {
        let r = budgets.reserve("t", "work", 10).await.expect("within budget");
        windows.insert(r.budget().expect("charged").to_owned());
        budgets.settle(r, 10);
        assert_eq!(budgets.keys_held(), 1, "only the current window's lease is held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn replica_ids_differ_even_within_one_process_and_millisecond() {
    let ids: HashSet<String> = (0..1000).map(|_| replica_id()).collect();
    assert_eq!(ids.len(), 1000);
}

/// A broker still electing the ledger partition's leader (a fresh broker, a topic just created:
/// `sluice dev` on Apache Kafka met it within seconds of start) is waited out, not a failed start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_waits_while_the_ledger_partition_elects_a_leader() {
    let (stack, t) = stack("1", "month").await;
    let cluster = stack.kafka.cluster().expect("embedded broker");
    cluster.request_errors(
        RDKafkaApiKey::ListOffsets,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3],
    );
    let ledger = open(&t, "a").await;
    assert_eq!(ledger.claim(&key(), "t", 10, 100).await.expect("claim"), Decision::Granted);
}
