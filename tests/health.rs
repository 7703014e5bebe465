//! `/healthz` and `/readyz` as a worker's probes see them, served the way `sluice run` serves
//! them, over a stage's life on the embedded broker: not ready until its group assigned it
//! partitions, ready, not ready while the broker or the schema registry is away and ready again
//! after, not live once the worker stopped on a fatal error.
//!
//! The health state is process-wide (as the metrics are), so this binary runs one worker's life
//! in one test.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Harness, OneStage, Script, TestStage};
use sluice::runner::RunError;
use sluice::stage::StageError;

const TIMEOUT: Duration = Duration::from_secs(60);
/// How often the test's reachability checks run (`sluice run` checks every 5 s).
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// `GET path`: status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.expect("telemetry endpoint answers");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// Waits until `GET path` answers `status` with a body containing every one of `lines`.
async fn until(addr: SocketAddr, path: &str, status: u16, lines: &[&str]) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (got, body) = get(addr, path).await;
        if got == status && lines.iter().all(|l| body.contains(l)) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status} with {lines:?}; last: {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_follow_a_workers_life() {
    let h =
        Harness::start(&OneStage::new(2, "{ max_in_flight: 4, per_partition: 4 }").yaml()).await;
    let addr =
        sluice::telemetry::http::serve("127.0.0.1:0".parse().expect("addr")).await.expect("serve");
    let _checks = sluice::kafka::watch_reachability(&h.topology, CHECK_EVERY);

    assert_eq!(get(addr, "/healthz").await.0, 200, "live from the start");
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no stage running yet"), "{body}");
    assert_eq!(get(addr, "/metrics").await.0, 200, "the metrics stay beside them");

    // With the broker away the group cannot assign anything: the stage waits, and says so.
    let cluster = h.stack.kafka.cluster().expect("embedded broker");
    cluster.broker_down(1).expect("broker down");
    let fail = HashMap::from([(
        "id-1".to_owned(),
        StageError::Fatal { reason: "bad credentials".into() },
    )]);
    let stage = TestStage::new(Script { fail, ..Script::default() });
    let run = h.start_stage(stage).await;
    let body = until(
        addr,
        "/readyz",
        503,
        &["stage work: waiting for its first partition assignment", "broker: unreachable"],
    )
    .await;
    assert!(body.starts_with("not ready\n"), "{body}");
    assert_eq!(get(addr, "/healthz").await.0, 200, "waiting is not dying");

    cluster.broker_up(1).expect("broker up");
    let body = until(addr, "/readyz", 200, &["stage work: 2 partition(s)"]).await;
    assert!(body.starts_with("ok\n"), "{body}");

    // The registry away: not ready (nothing fatal), and ready again once it answers.
    let registry = &h.stack.registry;
    registry.set_available(false);
    until(addr, "/readyz", 503, &["schema registry: unreachable: HTTP 503"]).await;
    assert_eq!(get(addr, "/healthz").await.0, 200);
    registry.set_available(true);
    until(addr, "/readyz", 200, &["stage work"]).await;

    // A fatal error stops the worker: not live, not ready.
    h.produce_docs(0..3, Some(0), |_| None).await;
    let result = run.finished().await;
    assert!(matches!(result, Err(RunError::Fatal { .. })), "{result:?}");
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "not live\n- stage work: stopped on a fatal error (see the log)\n");
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stage work: stopped on a fatal error"), "{body}");
}
