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
