//! `sluice dlq discard` as an operator runs it, against the embedded broker this test hosts: the
//! plan first (nothing committed), then `--execute` acknowledges the selected letters and the
//! redrive position moves past them; a later redrive finds them done.

mod common;

use std::process::Command;

use common::letters::{letter, write_letters};
use common::{document, Harness, OneStage};
use sluice::avro::{DeadLetter, DeadLetterClass};
use sluice::ops::{self, RedriveOptions};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_shows_the_plan_then_acknowledges_the_selected_letters() {
    let yaml = OneStage::new(1, "{ max_in_flight: 8, per_partition: 8 }").yaml();
    let h = Harness::start(&yaml).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, &yaml).expect("write topology");
    let (codec, dlq, input) = (h.codec().await, h.dlq(), h.input());
    let classes = [DeadLetterClass::Permanent, DeadLetterClass::Decode, DeadLetterClass::Permanent];
    let written: Vec<DeadLetter> = (0..classes.len())
        .map(|i| {
            let id = format!("id-{i}");
            let value = h.encode(&codec, &input, &document(&id, "t", "text"));
            let base = letter(&h, &id, Some(value));
            DeadLetter { original_offset: i as i64, error_class: classes[i], ..base }
        })
        .collect();
    write_letters(&h, &written).await;
    let discard = |execute: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["dlq", "discard", "--stage", "work", "--error-class", "permanent"])
            .args(["--format", "json", "--topology"])
            .arg(&path)
            .env("KAFKA_BOOTSTRAP_SERVERS", h.stack.kafka.bootstrap_servers())
            .env("SCHEMA_REGISTRY_URL", &h.topology.schema_registry.url)
            .env("RUST_LOG", "warn");
        if execute {
            cmd.arg("--execute");
        }
        cmd
    };
    let group = ops::redrive_group(&h.topology.stages[0]);
    let position = || common::committed(h.stack.kafka.bootstrap_servers(), &group, &dlq, 1);

    let (mut dry, mut execute) = (discard(false), discard(true));
    let out = tokio::task::spawn_blocking(move || {
        let plan = dry.output().expect("dry run");
        let done = execute.output().expect("execute");
        (plan, done)
    });
    let (plan, done) = out.await.expect("processes");
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!(
        (plan["action"].as_str(), plan["executed"].as_bool()),
        (Some("discard"), Some(false))
    );
    assert_eq!((plan["remaining"].as_u64(), plan["passed_over"].as_u64()), (Some(2), Some(1)));

    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let done: serde_json::Value = serde_json::from_slice(&done.stdout).expect("json");
    assert_eq!((done["discarded"].as_u64(), done["executed"].as_bool()), (Some(2), Some(true)));
    assert_eq!(position(), [1], "id-0 discarded; id-1 (DECODE) holds the position");

    let opts = RedriveOptions { execute: true, ..RedriveOptions::default() };
    let rest = ops::redrive(&h.topology, "work", &opts, |_| {}).await.expect("redrive");
    assert_eq!((rest.redriven, rest.done_before), (1, 2), "only the DECODE letter is redriven");
    assert_eq!(position(), [3]);
    assert_eq!(h.count(&input).await, 1);
}

/// Issue 24 #5: `--at` takes `P:O` and says so when given another notation; `dlq inspect` writes
/// positions the same way, and counts the outstanding letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_are_written_and_taken_as_partition_colon_offset() {
    let refused = Command::new(BIN)
        .args(["dlq", "redrive", "--stage", "work", "--topology", "t.yaml", "--at", "0@2"])
        .output()
        .expect("runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("expected PARTITION:OFFSET such as 2:0; got 0@2"), "{stderr}");

    let yaml = OneStage::new(1, "{ max_in_flight: 8, per_partition: 8 }").yaml();
    let h = Harness::start(&yaml).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, &yaml).expect("write topology");
    let (codec, input) = (h.codec().await, h.input());
    let value = h.encode(&codec, &input, &document("id-0", "t", "text"));
    let one =
        DeadLetter { original_partition: 0, original_offset: 5, ..letter(&h, "id-0", Some(value)) };
    write_letters(&h, &[one]).await;
    let mut inspect = Command::new(BIN);
    inspect
        .args(["dlq", "inspect", "--stage", "work", "--topology"])
        .arg(&path)
        .env("KAFKA_BOOTSTRAP_SERVERS", h.stack.kafka.bootstrap_servers())
        .env("SCHEMA_REGISTRY_URL", &h.topology.schema_registry.url)
        .env("RUST_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || inspect.output().expect("inspect"))
        .await
        .expect("joins");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 outstanding"), "{stdout}");
    assert!(stdout.contains(&format!("- 0:0 key id-0 from {input} 0:5")), "{stdout}");
    assert!(stdout.contains("; outstanding"), "{stdout}");
    assert!(!stdout.contains("0@0"), "{stdout}");
}
