//! Exactly-once stages on the embedded broker (librdkafka's mock cluster, which has no Kafka
//! transactions): `sluice run`, `sluice dev` and `sluice demo` refuse to start them, at once,
//! with exit code 2 (as for a topology that does not compile) and a message naming the stages
//! and what to do.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sluice::devstack::MockKafka;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const TOPOLOGY: &str = "topologies/exactly-once.yaml";

/// Runs `sluice args`, killing it (and failing) if it has not ended within a minute: without the
/// refusal each of these commands would run its stages until stopped.
fn run_to_end(args: &[&str], bootstrap: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped());
    match bootstrap {
        Some(b) => c.env("KAFKA_BOOTSTRAP_SERVERS", b),
        None => c.env_remove("KAFKA_BOOTSTRAP_SERVERS"),
    };
    let mut child = c.spawn().expect("spawn sluice");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            child.kill().expect("kill");
            let out = child.wait_with_output().expect("output");
            panic!(
                "`sluice {}` did not refuse the exactly-once topology:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn refused(out: &Output, stages: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{stages} `delivery: exactly_once`")), "{stderr}");
    assert!(stderr.contains("embedded broker"), "{stderr}");
    assert!(stderr.contains("does not support them"), "{stderr}");
    assert!(stderr.contains("`sluice dev --broker apache`"), "{stderr}");
    assert!(stderr.contains("`delivery: at_least_once`"), "{stderr}");
}

#[test]
fn run_and_dev_refuse_exactly_once_stages_on_an_embedded_broker_they_are_pointed_at() {
    let topology = sluice::config::load(Path::new(TOPOLOGY)).expect("ships valid");
    let kafka = MockKafka::start(1).expect("mock cluster");
    for t in topology.topics() {
        kafka.create_topic(&t.name, t.partitions).expect("topic");
    }
    let bootstrap = Some(kafka.bootstrap_servers());
    let all = run_to_end(&["run", "--topology", TOPOLOGY, "--all"], bootstrap);
    refused(&all, "stages 'triage', 'summarize' want");
    let one = run_to_end(&["run", "--topology", TOPOLOGY, "--stage", "summarize"], bootstrap);
    refused(&one, "stage 'summarize' wants");
    // `sluice dev` on KAFKA_BOOTSTRAP_SERVERS: another process's embedded broker, here.
    let dev = run_to_end(&["dev", "--topology", TOPOLOGY], bootstrap);
    refused(&dev, "stages 'triage', 'summarize' want");
    assert_eq!(String::from_utf8_lossy(&dev.stdout), "", "nothing started");
}

#[test]
fn dev_and_demo_refuse_exactly_once_stages_before_starting_the_embedded_broker() {
    for command in ["dev", "demo"] {
        let out = run_to_end(&[command, "--topology", TOPOLOGY], None);
        refused(&out, "stages 'triage', 'summarize' want");
        // Nothing started: no connection lines for other shells.
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{command}");
    }
}
