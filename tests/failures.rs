//! Bad input and failing stages: every record ends in the output or the dead-letter topic with
//! its original bytes, the partition keeps moving, and a compatible schema change mid-stream
//! keeps flowing.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use common::{field, ids, Harness, OneStage, Script, TestStage};
use schema_registry_converter::async_impl::schema_registry::post_schema;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use sluice::avro::subject_for;
use sluice::kafka::registry_settings;
use sluice::runner;
use sluice::stage::StageError;

const WINDOW: &str = "{ max_in_flight: 8, per_partition: 8 }";
const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_dead_lettered_with_their_bytes_and_the_partition_moves_on() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    let producer = h.producer();
    let input = h.input();
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("random", vec![0x7f, 0x13, 0x99, 0x00, 0x42, 0x17, 0x01]),
        ("magic", vec![0x01, 0, 0, 0, 1, 2, 4, 6]),
        ("unknown-id", vec![0x00, 0, 0, 0x27, 0x0f, 2, 4, 6]),
        ("empty", vec![]),
        ("truncated", vec![0x00, 0, 0]),
    ];
    for (key, bytes) in &bad {
        h.send_raw(&producer, &input, Some(key.as_bytes()), bytes, Some(0)).await;
    }
    h.produce_docs(0..2, Some(0), |_| None).await;
    let mut inputs: Vec<String> = bad.iter().map(|(key, _)| (*key).to_owned()).collect();
    inputs.extend(ids(0..2));
    let stage = h.run_to_end(Script::default(), &inputs, TIMEOUT).await;
    let oracle = h.oracle(inputs.clone()).await;
    oracle.check();
    assert_eq!(oracle.delivered(), ids(0..2).iter().map(String::as_str).collect());
    assert_eq!(oracle.dead_lettered(), bad.iter().map(|(key, _)| *key).collect());

    let letters = h.read_all(&h.dlq()).await;
    for (key, bytes) in &bad {
        let (_, _, _, value) = letters
            .iter()
            .find(|l| l.2.as_deref() == Some(*key))
            .unwrap_or_else(|| panic!("no dead letter for {key}"));
        let v = value.as_ref().expect("dead letter decodes");
        assert_eq!(field(v, "error_class"), &Value::Enum(0, "DECODE".into()), "{key}");
        assert_eq!(
            field(v, "original_value"),
            &Value::Bytes(bytes.clone()),
            "{key}: original bytes intact"
        );
        assert_eq!(field(v, "original_topic"), &Value::String(input.clone()));
        assert_eq!(field(v, "consumer_group"), &Value::String(h.group()));
    }
    assert_eq!(stage.call_count(), 2, "the stage only saw decodable records");
    assert!(
        common::wait_until(Duration::from_secs(5), || async { h.committed(1) == vec![7] }).await,
        "offsets passed every record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_and_exhausted_errors_are_dead_lettered_with_their_attempts() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    h.produce_docs(0..3, Some(0), |_| None).await;
    let fail = HashMap::from([
        ("id-0".to_owned(), StageError::permanent("content policy")),
        ("id-1".to_owned(), StageError::retryable("model overloaded")),
    ]);
    let stage = h.run_to_end(Script { fail, ..Script::default() }, &ids(0..3), TIMEOUT).await;
    let oracle = h.oracle(ids(0..3)).await;
    oracle.check();
    assert_eq!(oracle.dead_lettered(), ["id-0", "id-1"].into());
    assert_eq!(oracle.duplicates(), 0, "{:?}", oracle.duplicated());

    let letters = h.read_all(&h.dlq()).await;
    let by_key = |k: &str| {
        letters
            .iter()
            .find(|l| l.2.as_deref() == Some(k))
            .and_then(|l| l.3.clone())
            .expect("letter")
    };
    let permanent = by_key("id-0");
    assert_eq!(field(&permanent, "error_class"), &Value::Enum(1, "PERMANENT".into()));
    let Value::Array(attempts) = field(&permanent, "attempts") else { panic!() };
    assert_eq!(attempts.len(), 1, "a permanent error is not retried");
    let exhausted = by_key("id-1");
    assert_eq!(field(&exhausted, "error_class"), &Value::Enum(2, "RETRIES_EXHAUSTED".into()));
    let Value::Array(attempts) = field(&exhausted, "attempts") else { panic!() };
    assert_eq!(attempts.len(), 3, "every configured attempt was made");
    assert_eq!(stage.calls_for("id-1"), 3);
    assert_eq!(stage.calls_for("id-2"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_stops_the_worker_without_committing_the_record() {
    let h =
        Harness::start(&OneStage::new(1, "{ max_in_flight: 1, per_partition: 1 }").yaml()).await;
    h.produce_docs(0..3, Some(0), |_| None).await;
    let fail = HashMap::from([(
        "id-1".to_owned(),
        StageError::Fatal { reason: "bad credentials".into() },
    )]);
    let stage = TestStage::new(Script { fail, ..Script::default() });
    let result = h.start_stage(stage).await.finished().await;
    assert!(matches!(result, Err(runner::RunError::Fatal { .. })), "{result:?}");
    assert_eq!(h.committed(1), vec![1], "committed up to, not past, the failed record");
    assert!(
        h.read_all(&h.dlq()).await.is_empty(),
        "a fatal error is not the record's fault: no dead letter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compatible_schema_change_mid_stream_keeps_flowing() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    h.produce_docs(0..3, Some(0), |_| None).await;

    // A producer moves to v2 of the document schema: a new field with a default.
    let mut v2: serde_json::Value =
        serde_json::from_str(sluice::avro::SchemaKind::Document.text()).expect("json");
    v2["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "priority", "type": "int", "default": 0}));
    let settings = registry_settings(&h.topology);
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, v2.to_string());
    let registered = post_schema(&settings, subject_for(&h.input()), supplied)
        .await
        .expect("compatible evolution registers");
    let schema = apache_avro::Schema::parse_str(&v2.to_string()).expect("v2 parses");
    let producer = h.producer();
    for i in 3..6 {
        let value = Value::Record(vec![
            ("id".into(), Value::String(format!("id-{i}"))),
            ("tenant".into(), Value::String("t".into())),
            ("content".into(), Value::String("v2 document".into())),
            ("metadata".into(), Value::Map(Default::default())),
            ("priority".into(), Value::Int(7)),
        ]);
        let mut bytes = vec![0];
        bytes.extend_from_slice(&registered.id.to_be_bytes());
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer");
        writer.write_value_ref(&mut bytes, &value).expect("v2 datum");
        h.send_raw(&producer, &h.input(), Some(format!("id-{i}").as_bytes()), &bytes, Some(0))
            .await;
    }
    h.produce_docs(6..8, Some(0), |_| None).await;

    let stage = h.run_to_end(Script::default(), &ids(0..8), TIMEOUT).await;
    let oracle = h.oracle(ids(0..8)).await;
    oracle.check();
    assert!(oracle.dead_lettered().is_empty(), "nothing was dead-lettered");
    assert_eq!(
        stage.calls_for("id-4"),
        1,
        "v2 records reached the stage, resolved to the schema it knows"
    );
}
