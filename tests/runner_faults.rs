//! Regression tests for the runner's failure paths: forged retry headers, a panicking stage, an
//! output the broker refuses, an unencodable output on a redacting stage, and retry headers
//! leaking into outputs. Each one wedged a partition, panicked, or leaked before its fix.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value;
use common::{one_stage_topology, one_stage_topology_with_retry, raw_headers, wait_until, Harness};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use sluice::avro::{Classification, Envelope, SchemaKind};
use sluice::runner;
use sluice::shutdown::Shutdown;
use sluice::stage::{Emit, Stage, StageContext, StageError};
use tokio::sync::Semaphore;

/// What the fault stage does with a document, by id; anything else is classified.
#[derive(Clone, Copy)]
enum Act {
    Panic,
    /// Answers with a text this long (the output outgrows the producer's size limit).
    Huge(usize),
    /// Emits its input unclassified: it does not fit the output topic's schema.
    Unencodable,
    /// Fails retryably on its first call, then succeeds.
    FailOnce,
}

#[derive(Clone, Default)]
struct FaultStage {
    acts: Arc<HashMap<String, Act>>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Stage for FaultStage {
    async fn process(
        &self,
        mut input: Envelope,
        _cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let id = input.document.id.clone();
        let first = {
            let mut seen = self.seen.lock().expect("seen");
            seen.push(id.clone());
            seen.iter().filter(|s| **s == id).count() == 1
        };
        match self.acts.get(&id) {
            Some(Act::Panic) => panic!("stage bug on {id}"),
            Some(Act::Unencodable) => return Ok(vec![Emit::main(input)]),
            Some(Act::FailOnce) if first => return Err(StageError::retryable("503")),
            Some(Act::Huge(n)) => input.document.content = "x".repeat(*n),
            _ => {}
        }
        input.classification = Some(Classification {
            label: "a".into(),
            confidence: 1.0,
            model: "test".into(),
            prompt_version: None,
        });
        Ok(vec![Emit::main(input)])
    }
}

fn stage(acts: &[(&str, Act)]) -> FaultStage {
    let acts = acts.iter().map(|(id, a)| (id.to_string(), *a)).collect();
    FaultStage { acts: Arc::new(acts), ..Default::default() }
}

/// Runs the harness's stage until `done` holds (30 s at most), then shuts it down.
async fn run_until<F: std::future::Future<Output = bool>>(
    h: &Harness,
    stage: FaultStage,
    done: impl FnMut() -> F,
) -> bool {
    let codec = Arc::new(h.codec().await);
    let shutdown = Shutdown::new();
    let _stop = common::StopOnDrop(shutdown.clone());
    let (spec, topology, s2) = (h.topology.stages[0].clone(), h.topology.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        runner::run(stage, &spec, &topology, codec, Arc::new(Semaphore::new(100)), s2).await
    });
    let finished = wait_until(Duration::from_secs(30), done).await;
    shutdown.request();
    task.await.expect("runner task").expect("runner ends cleanly");
    finished
}

fn field<'v>(value: &'v Value, name: &str) -> &'v Value {
    let Value::Record(fields) = value else { panic!("not a record: {value:?}") };
    let v = &fields.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no field {name}")).1;
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// The dead letters on the harness's dead-letter topic: key → (error message, original value).
async fn dead_letters(h: &Harness) -> HashMap<String, (String, Option<Vec<u8>>)> {
    h.read_all(&h.dlq())
        .await
        .into_iter()
        .map(|(_, _, key, value)| {
            let v = value.expect("dead letters decode");
            let original = match field(&v, "original_value") {
                Value::Bytes(b) => Some(b.clone()),
                _ => None,
            };
            (key.unwrap_or_default(), (text(field(&v, "error_message")), original))
        })
        .collect()
}

/// Adds a header whose key is not UTF-8 (rdkafka's safe API cannot write one).
fn with_non_utf8_key(headers: OwnedHeaders) -> OwnedHeaders {
    let native = headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders
        as *mut rdkafka::bindings::rd_kafka_headers_t;
    let (key, value) = (b"k\xff\xfe", b"v");
    // SAFETY: `native` is the live headers object of `headers`; the sizes match the buffers.
    unsafe {
        rdkafka::bindings::rd_kafka_header_add(
            native,
            key.as_ptr().cast(),
            key.len() as isize,
            value.as_ptr().cast(),
            value.len() as isize,
        );
    }
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_retry_headers_are_dead_lettered_and_the_partition_keeps_moving() {
    let h =
        Harness::start(&one_stage_topology(1, "{ max_in_flight: 4, per_partition: 4 }", "")).await;
    let codec = h.codec().await;
    let producer = h.producer();
    let input = h.input();
    let forged: [(&str, &[(&str, &str)]); 4] = [
        ("rung-overflow", &[("sluice-retry-rung", "18446744073709551615")]),
        (
            "due-forever",
            &[("sluice-retry-rung", "0"), ("sluice-retry-due-ms", "9223372036854775807")],
        ),
        (
            "attempts-overflow",
            &[("sluice-retry-rung", "0"), ("sluice-retry-attempts", "4294967295")],
        ),
        ("history-garbage", &[("sluice-retry-rung", "0"), ("sluice-retry-history", "[[1,")]),
    ];
    let mut sent = Vec::new();
    for (i, (id, headers)) in forged.iter().enumerate() {
        let mut h2 = OwnedHeaders::new();
        for (k, v) in *headers {
            h2 = h2.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        sent.push((id.to_string(), h2, i));
    }
    sent.push(("odd-key".into(), with_non_utf8_key(OwnedHeaders::new()), 4));
    sent.push(("plain".into(), OwnedHeaders::new(), 5));
    for (id, headers, _) in sent {
        let doc = sluice::avro::Document {
            id: id.clone(),
            tenant: "t".into(),
            content: "hello".into(),
            metadata: Default::default(),
        };
        let value = Envelope::new(doc).to_value(SchemaKind::Document).expect("value");
        let bytes = codec.encode(&input, &value).expect("encode");
        let record = FutureRecord::to(&input).key(&id).payload(&bytes).headers(headers);
        producer.send(record, Timeout::After(Duration::from_secs(10))).await.expect("produce");
    }
    let done = run_until(&h, stage(&[]), || async { h.committed(1) == vec![6] }).await;
    assert!(done, "every record finishes, committed {:?}", h.committed(1));
    let letters = dead_letters(&h).await;
    for (id, headers) in forged {
        let (reason, original) = letters.get(id).unwrap_or_else(|| panic!("{id} dead-lettered"));
        assert!(reason.contains(headers.last().unwrap().0), "{id}: {reason}");
        assert!(original.is_some(), "{id}: the original bytes travel along");
    }
    let mut out: Vec<String> = h.ids_on(&h.output()).await.into_keys().collect();
    out.sort();
    assert_eq!(out, ["odd-key", "plain"]);
    assert_eq!(letters.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_stage_dead_letters_the_record_and_frees_its_slot() {
    let h =
        Harness::start(&one_stage_topology(1, "{ max_in_flight: 1, per_partition: 1 }", "")).await;
    h.produce_docs(0..5, None, |_| None).await;
    let done =
        run_until(&h, stage(&[("id-1", Act::Panic)]), || async { h.committed(1) == vec![5] }).await;
    assert!(done, "the partition moves past the panic, committed {:?}", h.committed(1));
    let letters = dead_letters(&h).await;
    assert!(letters["id-1"].0.contains("panicked: stage bug on id-1"), "{:?}", letters["id-1"]);
    assert_eq!(h.ids_on(&h.output()).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_the_broker_refuses_dead_letters_the_input_with_its_own_bytes() {
    let limit = "message.max.bytes: \"2000\"";
    let h = Harness::start(&one_stage_topology(1, "{ max_in_flight: 4, per_partition: 4 }", limit))
        .await;
    h.produce_docs(0..4, None, |_| None).await;
    let inputs: HashMap<Vec<u8>, Vec<u8>> =
        common::each_record(&h.topology.kafka, &h.input(), |m| {
            use rdkafka::message::Message;
            (m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec())
        })
        .await
        .into_iter()
        .collect();
    let acts = [("id-2", Act::Huge(10_000))];
    let done = run_until(&h, stage(&acts), || async { h.committed(1) == vec![4] }).await;
    assert!(
        done,
        "the refused output does not wedge the partition, committed {:?}",
        h.committed(1)
    );
    let letters = dead_letters(&h).await;
    let (reason, original) = &letters["id-2"];
    assert!(reason.contains("refused by the broker"), "{reason}");
    assert_eq!(
        original.as_deref(),
        Some(inputs[b"id-2".as_slice()].as_slice()),
        "the input's bytes, not the output"
    );
    assert_eq!(h.ids_on(&h.output()).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacting_stage_with_an_unencodable_output_dead_letters_no_pii() {
    let retry = "{ attempts: 1 }\n    redact_input: true";
    let yaml =
        one_stage_topology_with_retry(1, "{ max_in_flight: 4, per_partition: 4 }", "", retry);
    let h = Harness::start(&yaml).await;
    let codec = h.codec().await;
    let producer = h.producer();
    let doc = sluice::avro::Document {
        id: "pii".into(),
        tenant: "t".into(),
        content: "write to alice@example.com".into(),
        metadata: Default::default(),
    };
    let value = Envelope::new(doc).to_value(SchemaKind::Document).expect("value");
    let bytes = codec.encode(&h.input(), &value).expect("encode");
    h.send_raw(&producer, &h.input(), Some(b"pii"), &bytes, None).await;
    let acts = [("pii", Act::Unencodable)];
    assert!(run_until(&h, stage(&acts), || async { h.count(&h.dlq()).await == 1 }).await);
    let letters = dead_letters(&h).await;
    let (reason, original) = &letters["pii"];
    assert!(reason.contains("does not fit the schema"), "{reason}");
    let original = original.as_ref().expect("a redacted re-encoding");
    let decoded = codec.decode_any(Some(original)).await.expect("decodes").1;
    let content = text(field(&decoded, "content"));
    assert!(!content.contains("alice@example.com"), "PII reached the dead letter: {content}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_carry_the_records_headers_but_not_its_retry_state() {
    let retry = "{ attempts: 1, ladder: [50ms] }";
    let yaml =
        one_stage_topology_with_retry(1, "{ max_in_flight: 4, per_partition: 4 }", "", retry);
    let h = Harness::start(&yaml).await;
    h.produce_docs(0..2, None, |_| None).await;
    let acts = [("id-0", Act::FailOnce)];
    assert!(run_until(&h, stage(&acts), || async { h.count(&h.output()).await == 2 }).await);
    let headers = raw_headers(&h, &h.output()).await;
    assert_eq!(headers.len(), 2);
    for h in headers {
        let leaked: Vec<&String> = h.keys().filter(|k| k.starts_with("sluice-")).collect();
        assert!(leaked.is_empty(), "retry state leaked into an output: {leaked:?}");
    }
}
