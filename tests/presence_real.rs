//! The presence lease of assign-only clients (`sluice::kafka::presence`) on Apache Kafka: a
//! holder is listed while it runs, several are listed side by side, and a holder that leaves is
//! gone at once. On the embedded broker (no DescribeGroups) asking says so at once.
//! `scripts/with-kafka cargo test --test presence_real -- --include-ignored`.

use std::time::{Duration, Instant};

use sluice::config::KafkaSettings;
use sluice::kafka::presence::{present, Presence, PresenceError};

fn settings(bootstrap: String) -> KafkaSettings {
    KafkaSettings::single_broker(bootstrap, 2)
}

fn roles(kafka: &KafkaSettings, group: &str) -> Vec<String> {
    let mut roles: Vec<String> =
        present(kafka, group).expect("describe").into_iter().map(|h| h.role).collect();
    roles.sort();
    roles
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Apache Kafka: scripts/with-kafka"]
async fn holders_are_listed_while_they_run_and_gone_once_they_leave() {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect("scripts/with-kafka sets it");
    let kafka = settings(bootstrap);
    let suffix = sluice::call::now_ms();
    let (topic, group) = (format!("presence-{suffix}"), format!("g-{suffix}.console"));
    sluice::kafka::create_topics(&kafka, &[(topic.clone(), 2)]).await.expect("topic");
    let k = kafka.clone();
    let g = group.clone();
    let none = tokio::task::spawn_blocking(move || roles(&k, &g)).await.unwrap();
    assert!(none.is_empty(), "nobody announced yet: {none:?}");

    let (k, g, t) = (kafka.clone(), group.clone(), topic.clone());
    let (console, redrive) = tokio::task::spawn_blocking(move || {
        let a = Presence::announce(&k, &g, &t, "console").expect("join");
        let b = Presence::announce(&k, &g, &t, "redrive").expect("join");
        (a, b)
    })
    .await
    .unwrap();
    let (k, g) = (kafka.clone(), group.clone());
    let both = tokio::task::spawn_blocking(move || roles(&k, &g)).await.unwrap();
    assert_eq!(both, ["console", "redrive"]);

    tokio::task::spawn_blocking(move || console.leave()).await.unwrap();
    // A clean leave is a LeaveGroup: the coordinator drops the member at once, before the
    // session timeout (10 s) that would drop a crashed one (a rebalance may still be under way, so
    // ask a few times until a second before the session would have ended).
    let session = Duration::from_millis(sluice::config::defaults::CLASSIC_SESSION_TIMEOUT_MS);
    let deadline = Instant::now() + session - Duration::from_secs(1);
    loop {
        let (k, g) = (kafka.clone(), group.clone());
        let left = tokio::task::spawn_blocking(move || roles(&k, &g)).await.unwrap();
        if left == ["redrive"] {
            break;
        }
        assert!(Instant::now() < deadline, "the console is still listed: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(redrive);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_broker_says_at_once_that_presence_is_unknown() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let kafka = settings(cluster.bootstrap_servers());
    let answer = tokio::task::spawn_blocking(move || present(&kafka, "g")).await.unwrap();
    assert!(matches!(answer, Err(PresenceError::Unsupported)), "{answer:?}");
}
