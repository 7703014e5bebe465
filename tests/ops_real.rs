//! `sluice replay` and `sluice status` against Apache Kafka (`scripts/with-kafka`): every reset
//! scenario's plan, `--execute` refused while a worker process is a member (naming it) and
//! applied once it stops — the stage then re-processes exactly the planned records — the plan
//! file round trip, the cost estimate checked against what the re-processing really paid (with
//! and without the response cache), and the status numbers. DescribeGroups is needed, which the
//! embedded broker lacks, so these are `#[ignore]`d without a real broker:
//! `scripts/with-kafka cargo test --test ops_real -- --include-ignored --nocapture`.
//!
//! One test runs by default on the embedded broker: the commands that need DescribeGroups fail
//! there at once and name the alternative, while a dry-run plan works.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::crash::{external_broker, is_empty, Scenario};
use common::topology::priced_classify;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use sluice::call::now_ms;
use sluice::config::KafkaSettings;
use sluice::config::Price;
use sluice::metering::read_events;
use sluice::metering::report::dedup;
use sluice::mock_provider::MockConfig;
use sluice::ops::groups::{self, GroupInfo};
use sluice::ops::plan_csv;
use sluice::ops::replay::{execute, plan_async, Plan, ReplayError, ResetTo};
use sluice::ops::replay_cost::{estimate_plan, Amount};
use sluice::ops::status::report;

const PARTITIONS: i32 = 4;

fn require_real_broker() {
    assert!(
        external_broker().is_some(),
        "needs Apache Kafka: scripts/with-kafka cargo test --test ops_real -- --include-ignored"
    );
}

fn topology(p: &str, cache_dir: Option<&std::path::Path>, provider_url: Option<&str>) -> String {
    priced_classify(p, PARTITIONS, cache_dir, provider_url)
}

fn group(sc: &Scenario) -> String {
    sc.t.stages[0].group.clone()
}

fn input(sc: &Scenario) -> String {
    sc.t.inputs[0].name.clone()
}

/// Documents per partition, from where each landed.
fn per_partition(sc: &Scenario) -> Vec<i64> {
    let mut counts = vec![0; PARTITIONS as usize];
    for (p, _) in sc.placed.values() {
        counts[*p as usize] += 1;
    }
    counts
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking thread")
}

async fn commit(kafka: &KafkaSettings, group: &str, topic: &str, offsets: &[i64]) {
    let (k, g) = (kafka.clone(), group.to_owned());
    let list: Vec<(String, i32, i64)> =
        offsets.iter().enumerate().map(|(p, o)| (topic.to_owned(), p as i32, *o)).collect();
    blocking(move || groups::commit(&k, &g, &list)).await.expect("commit");
}

async fn describe(kafka: &KafkaSettings, group: &str) -> GroupInfo {
    let (k, g) = (kafka.clone(), group.to_owned());
    blocking(move || groups::describe(&k, &g)).await.expect("describe")
}

/// Records on a topic (the sum of its high watermarks: nothing is deleted in a test).
async fn written(kafka: &KafkaSettings, topic: &str) -> i64 {
    let (k, t) = (kafka.clone(), topic.to_owned());
    blocking(move || groups::watermarks(&k, &t))
        .await
        .expect("watermarks")
        .iter()
        .map(|w| w.2)
        .sum()
}

/// Produces `n` records with raw values to each partition of `topic`, timestamped `at_ms`.
async fn produce_raw(kafka: &KafkaSettings, topic: &str, n: usize, at_ms: i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .create()
        .expect("producer");
    for p in 0..PARTITIONS {
        for i in 0..n {
            let key = format!("raw-{p}-{i}");
            let record =
                FutureRecord::to(topic).partition(p).key(&key).payload("not avro").timestamp(at_ms);
            producer.send(record, Timeout::After(Duration::from_secs(30))).await.expect("produce");
        }
    }
}

fn news(plan: &Plan) -> Vec<i64> {
    plan.partitions.iter().map(|p| p.new).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn every_reset_scenario_plans_current_to_new_within_the_log() {
    require_real_broker();
    let sc = Scenario::start(200, PARTITIONS, |p| topology(p, None, None)).await;
    let (k, g, topic) = (&sc.t.kafka, group(&sc), input(&sc));
    let highs = per_partition(&sc);
    // The group finished half of each partition; then records stamped an hour ahead arrive.
    let half: Vec<i64> = highs.iter().map(|h| h / 2).collect();
    commit(k, &g, &topic, &half).await;
    let future = now_ms() + 3_600_000;
    produce_raw(k, &topic, 3, future).await;
    let ends: Vec<i64> = highs.iter().map(|h| h + 3).collect();
    let plan = |reset: ResetTo, only: Option<Vec<i32>>| {
        let (k, g, topic) = (k.clone(), g.clone(), topic.clone());
        async move { plan_async(&k, &g, &topic, &reset, only).await.expect("plan") }
    };

    let shift = plan(ResetTo::ShiftBy(-10), None).await;
    let want: Vec<i64> = half.iter().map(|c| (c - 10).max(0)).collect();
    assert_eq!(news(&shift), want);
    assert_eq!(shift.partitions.iter().map(|p| p.current).collect::<Vec<_>>(), half);
    assert_eq!(shift.reprocessed(), half.iter().map(|c| c.min(&10)).sum::<i64>());
    let far = plan(ResetTo::ShiftBy(1_000_000), None).await;
    assert_eq!(news(&far), ends, "clamped to the high watermark");
    assert_eq!(far.skipped(), ends.iter().zip(&half).map(|(e, c)| e - c).sum::<i64>());

    assert_eq!(news(&plan(ResetTo::Offset(3), None).await), vec![3; PARTITIONS as usize]);
    assert_eq!(news(&plan(ResetTo::Earliest, None).await), vec![0; PARTITIONS as usize]);
    let latest = plan(ResetTo::Latest, None).await;
    assert_eq!((news(&latest), latest.reprocessed()), (ends.clone(), 0));
    // The first record at or after a time: the future ones start where the documents end.
    let at = plan(ResetTo::Datetime(future - 1_000), None).await;
    assert_eq!(news(&at), highs);
    let after_all = plan(ResetTo::Datetime(future + 1_000), None).await;
    assert_eq!(news(&after_all), ends, "no record that late: the end");
    let two_hours = plan(ResetTo::Duration(Duration::from_secs(7_200)), None).await;
    assert_eq!(news(&two_hours), vec![0; PARTITIONS as usize], "every document is younger");
    assert_eq!(two_hours.reprocessed(), half.iter().sum::<i64>());

    let some = plan(ResetTo::Earliest, Some(vec![0, 3])).await;
    let listed: Vec<i32> = some.partitions.iter().map(|p| p.partition).collect();
    assert_eq!(listed, vec![0, 3], "--partitions limits the plan");
    assert_eq!(some.reprocessed(), half[0] + half[3]);

    // --export then --from-file: the same offsets, and only the listed partitions.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plan.csv");
    std::fs::write(&file, plan_csv::write(&shift.lines())).expect("export");
    let lines = plan_csv::parse(&std::fs::read_to_string(&file).expect("read")).expect("parses");
    let again = plan(ResetTo::File(lines.clone()), None).await;
    assert_eq!((news(&again), again.reprocessed()), (news(&shift), shift.reprocessed()));
    let partial = plan(ResetTo::File(lines[1..2].to_vec()), None).await;
    assert_eq!(partial.partitions.len(), 1);
    assert_eq!(partial.partitions[0].new, shift.partitions[1].new);
    let other = lines.iter().map(|l| plan_csv::PlanLine { topic: "x".into(), ..l.clone() });
    let (k2, g2, t2) = (k.clone(), g.clone(), topic.clone());
    let err = plan_async(&k2, &g2, &t2, &ResetTo::File(other.collect()), None).await.unwrap_err();
    assert!(matches!(err, ReplayError::OtherTopic { .. }), "{err}");
}

/// Waits until the worker has committed every document, then until the group has no members
/// once `stop` ran.
async fn finish(sc: &Scenario) {
    sc.progress(1.0, Instant::now() + Duration::from_secs(120)).await;
}

async fn wait_empty(sc: &Scenario) {
    let (k, g) = (sc.t.kafka.clone(), group(sc));
    let empty = common::wait_until(Duration::from_secs(30), || {
        let (k, g) = (k.clone(), g.clone());
        async move { describe(&k, &g).await.members.is_empty() }
    })
    .await;
    assert!(empty, "the stopped worker left the group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn execute_is_refused_while_a_worker_runs_and_reprocesses_exactly_the_plan_after() {
    require_real_broker();
    let sc = Scenario::start(300, PARTITIONS, |p| topology(p, None, None)).await;
    let (k, g, topic) = (&sc.t.kafka, group(&sc), input(&sc));
    let mut worker = sc.worker();
    finish(&sc).await;
    let plan = plan_async(k, &g, &topic, &ResetTo::ShiftBy(-15), None).await.expect("plan");
    assert_eq!(plan.reprocessed(), 15 * PARTITIONS as i64);

    let refused = execute(k, &plan, "Stop the workers.").await.unwrap_err();
    let ReplayError::ActiveMembers { info, .. } = &refused else { panic!("{refused}") };
    assert_eq!(info.members.len(), 1);
    let member = &info.members[0];
    assert_eq!(member.client_id, "sluice");
    assert!(member.host.contains("127.0.0.1"), "{member:?}");
    assert_eq!(member.assigned.len(), 2 * PARTITIONS as usize, "input and retry rung");
    let message = refused.to_string();
    assert!(message.contains("sluice on /127.0.0.1") && message.contains("Stop the workers."));
    assert_eq!(sc.positions().await, per_partition(&sc), "nothing was committed");

    assert!(worker.terminate(), "the worker drains and exits");
    wait_empty(&sc).await;
    let (out, dlq) = (&sc.t.stages[0].output, &sc.t.stages[0].dead_letter_topic);
    let before = written(k, out).await + written(k, dlq).await;
    execute(k, &plan, "Stop the workers.").await.expect("executed");
    assert_eq!(sc.positions().await, news(&plan), "the committed offsets are the plan's");

    let _again = sc.worker();
    finish(&sc).await;
    let after = written(k, out).await + written(k, dlq).await;
    assert_eq!(after - before, plan.reprocessed(), "each re-processed record ended once more");
}

async fn estimate_matches_what_the_replay_paid(cached: bool) {
    require_real_broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = cached.then(|| dir.path().join("cache"));
    let price = Price { input: 150_000, output: 600_000, cached_input: 150_000, per_request: 0 };
    let config =
        MockConfig { prices: BTreeMap::from([("m".to_owned(), price)]), ..MockConfig::default() };
    let provider = common::mock_provider(config).await;
    let url = provider.openai_url();
    let sc = Scenario::start(120, PARTITIONS, |p| topology(p, cache.as_deref(), Some(&url))).await;
    let (k, g, topic) = (&sc.t.kafka, group(&sc), input(&sc));
    let mut worker = sc.worker();
    finish(&sc).await;
    assert!(worker.terminate());
    wait_empty(&sc).await;
    let first_run = provider.ledger().billed_micro_usd();
    assert!(first_run > 0, "the priced model was paid");
    let plan = plan_async(k, &g, &topic, &ResetTo::Earliest, None).await.expect("plan");
    let estimate = estimate_plan(&sc.t, &sc.t.stages[0], &plan, 1_000).await.expect("estimate");
    let called = (0..sc.docs).filter(|i| !is_empty(*i)).count() as u64;
    assert_eq!((estimate.records, estimate.sampled), (120, 120), "the window is read whole");
    assert_eq!(estimate.metered, called, "empty documents make no call");
    let Amount::Estimated { expected_micro_usd, .. } = estimate.without_cache else {
        panic!("{:?}", estimate.without_cache)
    };
    assert_eq!(expected_micro_usd, first_run, "what the provider billed");
    assert_eq!(estimate.cache.is_some(), cached);
    execute(k, &plan, "").await.expect("executed");
    let _again = sc.worker();
    finish(&sc).await;
    let replay_paid = provider.ledger().billed_micro_usd() - first_run;
    eprintln!(
        "cache {cached}: estimate without cache {}, with {:?} ({} cached); replay paid {}",
        estimate.without_cache.describe(),
        estimate.with_cache.as_ref().map(Amount::describe),
        estimate.cached,
        replay_paid
    );
    let paid_by_estimate = if cached {
        assert_eq!(estimate.cached, called);
        estimate.with_cache.clone().expect("a cache")
    } else {
        assert_eq!(estimate.with_cache, None);
        estimate.without_cache.clone()
    };
    assert!(paid_by_estimate.contains(replay_paid), "{paid_by_estimate:?} {replay_paid}");
    let Amount::Estimated { expected_micro_usd, .. } = paid_by_estimate else { unreachable!() };
    assert_eq!(replay_paid, expected_micro_usd, "the expected figure is what it paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn the_cost_estimate_is_what_the_replay_pays_without_a_cache() {
    estimate_matches_what_the_replay_paid(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn with_the_response_cache_a_replay_is_estimated_free_and_pays_nothing() {
    estimate_matches_what_the_replay_paid(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn status_reports_members_lag_backlogs_dead_letters_and_spend() {
    require_real_broker();
    let sc = Scenario::start(200, PARTITIONS, |p| topology(p, None, None)).await;
    let k = &sc.t.kafka;
    let highs = per_partition(&sc);

    let r = report(&sc.t).await.expect("status");
    let s = &r.stages[0];
    assert!(s.members.is_empty());
    assert_eq!(s.lag, 200, "nothing processed: every document lags");
    let worst = highs.iter().max().expect("partitions");
    assert_eq!(s.worst_partition_lag, *worst);
    assert_eq!(highs[s.worst_partition.expect("one lags") as usize], *worst);
    assert!(s.oldest_unprocessed_ms.is_some_and(|ts| ts <= now_ms() && ts > now_ms() - 600_000));
    assert_eq!(r.problems().len(), 1, "no members is a problem");

    let mut worker = sc.worker();
    finish(&sc).await;
    let r = report(&sc.t).await.expect("status");
    let s = &r.stages[0];
    assert_eq!((s.members.len(), s.members[0].client_id.as_str()), (1, "sluice"));
    assert_eq!((s.lag, s.worst_partition, s.oldest_unprocessed_ms), (0, None, None));
    assert!(r.problems().is_empty(), "{:?}", r.problems());
    let empty = (0..sc.docs).filter(|i| is_empty(*i)).count() as i64;
    assert_eq!((s.dead_letters_last_hour, s.dead_letters_last_day), (empty, empty));
    let midnight = now_ms() - now_ms().rem_euclid(86_400_000);
    let today: i64 = dedup(read_events(&sc.t).await.expect("events"))
        .iter()
        .filter(|e| e.timestamp_ms >= midnight)
        .map(|e| e.cost_micro_usd)
        .sum();
    assert!(today > 0);
    assert_eq!(s.spend_today_micro_usd, today as u64);

    assert!(worker.terminate());
    wait_empty(&sc).await;
    let rung = sc.t.stages[0].retry.retry_topics()[0].0.clone();
    produce_raw(k, &rung, 2, now_ms()).await;
    produce_raw(k, &input(&sc), 3, now_ms()).await;
    let r = report(&sc.t).await.expect("status");
    let s = &r.stages[0];
    assert_eq!(s.lag, 3 * PARTITIONS as i64, "records produced while no worker runs");
    assert_eq!(s.retry_backlog[0].records, 2 * PARTITIONS as i64);
    assert_eq!(s.retry_backlog[0].delay.as_deref(), Some("1m"));
    assert_eq!(r.problems().len(), 1);
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["stages"][0]["lag"], 3 * PARTITIONS as i64);
}

/// The default suite, on the embedded broker: a dry-run plan needs only offsets and works;
/// `--execute` and `status` need DescribeGroups and fail at once, naming the alternative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_broker_execute_and_status_fail_at_once_naming_the_alternative() {
    let h = common::Harness::start(&common::OneStage::new(2, "{ max_in_flight: 4 }").yaml()).await;
    h.produce_docs(0..10, Some(1), |_| None).await;
    let (k, g) = (&h.topology.kafka, h.group());
    let plan = plan_async(k, &g, &h.input(), &ResetTo::ShiftBy(-4), None).await.expect("plan");
    let news: Vec<(i64, i64)> = plan.partitions.iter().map(|p| (p.current, p.new)).collect();
    assert_eq!(news, vec![(0, 0), (0, 0)], "a group without commits starts at the log start");
    let plan = plan_async(k, &g, &h.input(), &ResetTo::Latest, None).await.expect("plan");
    assert_eq!((plan.partitions[1].new, plan.skipped()), (10, 10));

    let err = execute(k, &plan, "").await.unwrap_err().to_string();
    assert!(err.contains("`sluice replay --execute` needs the Kafka admin API"), "{err}");
    assert!(err.contains("embedded broker") && err.contains("scripts/with-kafka"), "{err}");
    let err = report(&h.topology).await.unwrap_err().to_string();
    assert!(err.contains("`sluice status` needs the Kafka admin API"), "{err}");
    assert!(err.contains("scripts/with-kafka"), "{err}");
    assert_eq!(h.committed(2), vec![0, 0], "nothing was committed");
}

/// A KIP-848 group's member is seen (ConsumerGroupDescribe): status counts it and `--execute`
/// is refused naming it; the broker itself also refuses a commit while the member runs, the
/// guard against a worker that joins between the check and the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn a_kip848_group_is_protected_by_the_broker_and_its_members_shown() {
    require_real_broker();
    let yaml = |p: &str| {
        topology(p, None, None).replace(
            "    session.timeout.ms: \"6000\"\n    heartbeat.interval.ms: \"500\"",
            "    group.protocol: consumer",
        )
    };
    let sc = Scenario::start(100, PARTITIONS, yaml).await;
    let (k, g, topic) = (&sc.t.kafka, group(&sc), input(&sc));
    let mut worker = sc.worker();
    finish(&sc).await;
    let r = report(&sc.t).await.expect("status");
    let s = &r.stages[0];
    assert!(s.members_known && r.problems().is_empty(), "{s:?}");
    assert_eq!((s.members.len(), s.members[0].client_id.as_str()), (1, "sluice"), "{s:?}");
    let plan = plan_async(k, &g, &topic, &ResetTo::ShiftBy(-5), None).await.expect("plan");
    let refused = execute(k, &plan, "Stop the workers.").await.unwrap_err();
    assert!(matches!(refused, ReplayError::ActiveMembers { .. }), "{refused}");
    assert!(refused.to_string().contains("Stop the workers."), "{refused}");
    let offsets: Vec<(String, i32, i64)> =
        plan.partitions.iter().map(|p| (p.topic.clone(), p.partition, p.new)).collect();
    let (k2, g2) = (k.clone(), g.clone());
    let direct = blocking(move || groups::commit(&k2, &g2, &offsets)).await;
    assert!(direct.is_err(), "the broker refuses a commit while the group has a member");
    assert_eq!(sc.positions().await, per_partition(&sc), "nothing was committed");
    assert!(worker.terminate());
    let applied = common::wait_until(Duration::from_secs(30), || async {
        execute(k, &plan, "").await.is_ok()
    })
    .await;
    assert!(applied, "applied once the member left");
    assert_eq!(sc.positions().await, news(&plan));
}

/// A consumer of `topic` in `group` speaking `protocol`, polled until it holds every partition
/// of the topic; it stays a member until dropped.
fn member(bootstrap: &str, group: &str, protocol: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", protocol)
        .set("client.id", format!("describe-{protocol}"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.assignment().expect("assignment").count() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "{protocol}: no assignment within 60 s");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    consumer
}

/// Both group protocols are described with their members, client ids and assignments (a KIP-848
/// group is invisible to DescribeGroups: `Dead`, no members), and a group the cluster does not
/// know is `Dead` with none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: scripts/with-kafka … -- --include-ignored"]
async fn groups_of_both_protocols_are_described_with_their_members_and_assignments() {
    require_real_broker();
    let bootstrap = external_broker().expect("broker");
    let kafka = KafkaSettings::single_broker(bootstrap.clone(), PARTITIONS);
    let topic = format!("describe-{}", now_ms());
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("admin");
    let new = NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1));
    for r in admin.create_topics([&new], &AdminOptions::new()).await.expect("create") {
        r.expect("topic created");
    }
    let want: Vec<String> = (0..PARTITIONS).map(|p| format!("{topic}:{p}")).collect();
    for protocol in ["consumer", "classic"] {
        let group = format!("{topic}-{protocol}");
        let (b, g, t) = (bootstrap.clone(), group.clone(), topic.clone());
        let consumer = blocking(move || member(&b, &g, protocol, &t)).await;
        // The member holds its partitions; the coordinator may still be settling its state.
        let settled = common::wait_until(Duration::from_secs(30), || async {
            let info = describe(&kafka, &group).await;
            info.state == "Stable" && info.members.iter().any(|m| m.assigned.len() == want.len())
        })
        .await;
        let info = describe(&kafka, &group).await;
        assert!(settled, "{protocol}: {info:?}");
        assert_eq!((info.group.as_str(), info.members_known), (group.as_str(), true));
        assert_eq!(info.members.len(), 1, "{protocol}: {info:?}");
        let m = &info.members[0];
        assert_eq!(m.client_id, format!("describe-{protocol}"));
        assert!(m.host.contains("127.0.0.1") && !m.member_id.is_empty(), "{m:?}");
        let mut assigned = m.assigned.clone();
        assigned.sort();
        assert_eq!(assigned, want, "{protocol}");
        blocking(move || drop(consumer)).await;
    }
    let unknown = describe(&kafka, &format!("{topic}-nobody")).await;
    assert_eq!((unknown.state.as_str(), unknown.members_known), ("Dead", true));
    assert!(unknown.members.is_empty());
}

#[path = "ops_real/pipeline.rs"]
mod pipeline;
