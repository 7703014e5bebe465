//! The console on Apache Kafka: while it runs, each review queue announces itself in
//! `<queue group>.present` (so `sluice replay` can refuse to move a group a console commits
//! for), and a console that stops leaves at once.
//! `scripts/with-kafka cargo test --test console_real -- --include-ignored`.

mod common;

use std::time::Duration;

use common::console::*;
use common::{unique, wait_until, Harness};
use sluice::kafka::presence::present;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Apache Kafka: scripts/with-kafka"]
async fn a_running_console_is_present_for_its_queue_group_and_gone_once_stopped() {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect("scripts/with-kafka sets it");
    let h = Harness::start_on(&topology(&unique("cpr")), Some(bootstrap)).await;
    let group = h.topology.stages[0].review_queue_group().expect("a review stage");
    let roles = || {
        let (kafka, group) = (h.topology.kafka.clone(), group.clone());
        async move {
            tokio::task::spawn_blocking(move || present(&kafka, &group))
                .await
                .expect("describe thread")
                .expect("describe")
                .into_iter()
                .map(|holder| holder.role)
                .collect::<Vec<_>>()
        }
    };
    assert!(roles().await.is_empty(), "nobody announced yet");
    let c = start(&h, Duration::from_secs(60)).await;
    assert!(
        wait_until(Duration::from_secs(60), || async { roles().await == ["console"] }).await,
        "the console is present: {:?}",
        roles().await
    );
    c.stop().await;
    assert!(
        wait_until(Duration::from_secs(30), || async { roles().await.is_empty() }).await,
        "a stopped console is gone: {:?}",
        roles().await
    );
}

/// A replay of the queue group a running console commits for is refused, naming the console; once
/// the console stopped (and left), the same plan executes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Apache Kafka: scripts/with-kafka"]
async fn a_replay_of_the_queue_group_is_refused_while_a_console_runs() {
    use sluice::avro::HumanDecision;
    use sluice::console::actions::Judgement;
    use sluice::console::ledger::ItemKey;
    use sluice::ops::replay::{execute, plan_async, ReplayError, ResetTo};

    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect("scripts/with-kafka sets it");
    let h = Harness::start_on(&topology(&unique("crr")), Some(bootstrap)).await;
    needs_human(&h, "d0", "acme", "question").await;
    needs_human(&h, "d1", "acme", "question").await;
    let c = start(&h, Duration::from_secs(60)).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 2 }).await);
    let (q, key) = (c.app.queues[0].clone(), ItemKey { partition: 0, offset: 0 });
    q.claim(key, &actor("ann")).await.expect("claims");
    let ok = Judgement { decision: HumanDecision::Approved, answer: None, note: String::new() };
    q.decide(key, &actor("ann"), ok).await.expect("decides");
    assert!(wait_until(Duration::from_secs(60), || async { committed(&h) == 1 }).await);

    let group = h.topology.stages[0].review_queue_group().expect("a review stage");
    let topic = format!("{}.needs-human", h.topology.pipeline);
    let kafka = h.topology.kafka.clone();
    let plan = plan_async(&kafka, &group, &topic, &ResetTo::ShiftBy(-1), None).await.expect("plan");
    let refused = execute(&kafka, &plan, "").await.expect_err("a console holds the group");
    let ReplayError::Present { holders, .. } = &refused else { panic!("{refused}") };
    assert_eq!(holders.iter().map(|h| h.role.as_str()).collect::<Vec<_>>(), ["console"]);
    assert_eq!(committed(&h), 1, "nothing was committed");

    c.stop().await;
    let gone = wait_until(Duration::from_secs(30), || {
        let (kafka, group) = (kafka.clone(), group.clone());
        async move {
            tokio::task::spawn_blocking(move || present(&kafka, &group))
                .await
                .expect("describe thread")
                .is_ok_and(|holders| holders.is_empty())
        }
    })
    .await;
    assert!(gone, "the stopped console left");
    execute(&kafka, &plan, "").await.expect("executed once no console holds the group");
    assert_eq!(committed(&h), 0, "the replay moved the queue back to d0");
}
