//! Whole stages on the embedded broker calling the mock provider over HTTP: Retry-After honoured
//! by the runner, long waits parked on the retry topic, and `support-rag.yaml` end to end.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::run::PipelineRun;
use common::{unique, wait_until, Harness};
use sluice::avro::SchemaKind;
use sluice::mock_provider::MockConfig;
use sluice::records_io::produce_json_lines;

fn classify_topology(p: &str, url: &str, retry: &str) -> String {
    format!(
        r#"
pipeline: {p}
kafka:
  partitions: 1
  consumer: {{ auto.commit.interval.ms: "200" }}
providers:
  m: {{ kind: openai, base_url: {url} }}
prices: {{ set_on: 2026-11-01, models: {{ m/cls: {{ input: 0.15, output: 0.6 }} }} }}
inputs: {{ {p}.docs: {{ partitions: 1 }} }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    model: {{ provider: m, name: cls }}
    classify: {{ labels: [billing, other] }}
    retry: {retry}
"#
    )
}

/// The pipeline running in the background; stopped before the broker goes away, or its
/// consumers would wait out their session timeouts while the test's runtime shuts down.
fn start(h: &Harness) -> PipelineRun {
    h.start_pipeline()
}

/// Stops the pipeline and checks it ran without error.
async fn stop(running: PipelineRun) {
    running.stop().await.expect("pipeline runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_is_honoured_no_call_comes_before_the_due_time() {
    let server = common::mock_provider(MockConfig {
        retry_after: Duration::from_secs(1),
        ..MockConfig::default()
    })
    .await;
    server.set_fault("cls", Some(429));
    let p = unique("ra");
    let h = Harness::start(&classify_topology(
        &p,
        &server.openai_url(),
        "{ attempts: 5, initial_backoff: 10ms, max_backoff: 50ms }",
    ))
    .await;
    let running = start(&h);
    h.produce_docs(0..1, None, |_| None).await;
    assert!(
        wait_until(Duration::from_secs(30), || async { server.ledger().calls.len() >= 3 }).await
    );
    server.set_fault("cls", None);
    assert!(
        wait_until(Duration::from_secs(20), || async { h.count(&h.output()).await == 1 }).await
    );
    let times: Vec<u64> = server.ledger().calls.iter().map(|c| c.at_us).collect();
    for pair in times.windows(2).take(2) {
        let gap = Duration::from_micros(pair[1] - pair[0]);
        assert!(gap >= Duration::from_secs(1), "a call came {gap:?} after a 429 asking for 1 s");
    }
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_retry_after_parks_the_record_on_the_retry_topic_with_that_due_time() {
    let server = common::mock_provider(MockConfig {
        retry_after: Duration::from_secs(30),
        ..MockConfig::default()
    })
    .await;
    server.set_fault("cls", Some(429));
    let p = unique("park");
    let h = Harness::start(&classify_topology(
        &p,
        &server.openai_url(),
        "{ attempts: 5, max_inline_wait: 2s, ladder: [1s] }",
    ))
    .await;
    let running = start(&h);
    let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    h.produce_docs(0..1, None, |_| None).await;
    let retry_topic = format!("{p}.work.retry.1");
    assert!(
        wait_until(Duration::from_secs(20), || async { h.count(&retry_topic).await == 1 }).await
    );
    assert_eq!(server.ledger().calls.len(), 1, "one call, then no waiting in flight");
    let records = common::raw_headers(&h, &retry_topic).await;
    let due: i64 =
        records[0].get("sluice-retry-due-ms").and_then(|v| v.parse().ok()).expect("due header");
    assert!(due >= before + 30_000, "due {} ms after the produce", due - before);
    stop(running).await;
}

/// A record's W3C `traceparent` travels to its outputs and its cost events carry the trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_trace_id_of_a_record_reaches_its_outputs_and_cost_events() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let server = common::mock_provider(MockConfig::default()).await;
    let p = unique("trace");
    let h = Harness::start(&classify_topology(&p, &server.openai_url(), "{ attempts: 2 }")).await;
    let running = start(&h);
    let codec = h.codec().await;
    let doc = sluice::avro::Envelope::new(sluice::avro::Document {
        id: "tr1".into(),
        tenant: "acme".into(),
        content: "refund my invoice".into(),
        metadata: Default::default(),
    });
    let payload = codec
        .encode(&h.input(), &doc.to_value(SchemaKind::Document).expect("value"))
        .expect("encode");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let headers =
        OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(traceparent) });
    let input = h.input();
    let record = FutureRecord::to(&input).key("tr1").payload(&payload).headers(headers);
    h.producer().send(record, Duration::from_secs(10)).await.expect("produce");
    assert!(
        wait_until(Duration::from_secs(20), || async { h.count(&h.output()).await == 1 }).await
    );
    let out = common::raw_headers(&h, &h.output()).await;
    assert_eq!(out[0].get("traceparent").map(String::as_str), Some(traceparent));
    let events = sluice::metering::read_events(&h.topology).await.expect("metering");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!((events[0].tenant.as_str(), events[0].document_id.as_str()), ("acme", "tr1"));
    let metering = common::raw_headers(&h, &h.topology.metering_topic).await;
    assert_eq!(metering[0].get("traceparent").map(String::as_str), Some(traceparent));
    stop(running).await;
}

/// A stage with `document_deadline` dead-letters stale documents without calling a model.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documents_past_their_deadline_are_dead_lettered_without_a_model_call() {
    use rdkafka::producer::FutureRecord;
    let server = common::mock_provider(MockConfig::default()).await;
    let p = unique("expiry");
    let yaml = classify_topology(&p, &server.openai_url(), "{ attempts: 1 }").replace(
        "    retry: { attempts: 1 }",
        "    retry: { attempts: 1 }\n    document_deadline: 30s",
    );
    let h = Harness::start(&yaml).await;
    let running = start(&h);
    let codec = h.codec().await;
    let input = h.input();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    for (id, written) in [("stale", now - 120_000), ("fresh", now)] {
        let doc = sluice::avro::Envelope::new(sluice::avro::Document {
            id: id.into(),
            tenant: "t".into(),
            content: "refund my invoice".into(),
            metadata: Default::default(),
        });
        let payload = codec
            .encode(&input, &doc.to_value(SchemaKind::Document).expect("value"))
            .expect("encode");
        let record = FutureRecord::to(&input).key(id).payload(&payload).timestamp(written);
        h.producer().send(record, Duration::from_secs(10)).await.expect("produce");
    }
    let inputs = || ["stale".to_owned(), "fresh".to_owned()];
    running
        .until(Duration::from_secs(20), "both documents ended", || async {
            h.oracle(inputs()).await.all_ended()
        })
        .await;
    let oracle = h.oracle(inputs()).await;
    oracle.check();
    assert_eq!(oracle.delivered(), ["fresh"].into());
    assert_eq!(oracle.dead_lettered(), ["stale"].into());
    let (_, _, _, value) = h.read_all(&h.dlq()).await.remove(0);
    let reason = sluice::avro::avro_to_json(&value.expect("decodes"))["error_message"].to_string();
    assert!(reason.contains("document expired: written 2m"), "{reason}");
    assert_eq!(server.ledger().calls.len(), 1, "only the fresh document reached the model");
    stop(running).await;
}

/// With `redact_input`, a dead letter carries the record re-encoded with its PII redacted, and
/// redacted error texts; the model never saw the raw values either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_of_a_redacting_stage_carry_no_pii() {
    let server = common::mock_provider(MockConfig::default()).await;
    server.set_fault("cls", Some(400));
    let p = unique("pii");
    let yaml = classify_topology(&p, &server.openai_url(), "{ attempts: 1 }").replace(
        "    retry: { attempts: 1 }",
        "    retry: { attempts: 1 }\n    redact_input: true",
    );
    let h = Harness::start(&yaml).await;
    let running = start(&h);
    let codec = h.codec().await;
    let doc = r#"{"id": "p1", "tenant": "t", "content": "Mail jane@example.com, card 4111 1111 1111 1111"}"#;
    produce_json_lines(&h.topology.kafka, &codec, &h.input(), SchemaKind::Document, doc, |_, _| {})
        .await
        .expect("produced");
    assert!(wait_until(Duration::from_secs(20), || async { h.count(&h.dlq()).await == 1 }).await);
    let (_, _, _, value) = h.read_all(&h.dlq()).await.remove(0);
    let value = value.expect("dead letter decodes");
    let text = sluice::avro::avro_to_json(&value).to_string();
    assert!(!text.contains("jane@example.com") && !text.contains("4111"), "{text}");
    let apache_avro::types::Value::Bytes(bytes) = common::field(&value, "original_value") else {
        panic!("{value:?}")
    };
    let (_, doc) = codec.decode_any(Some(bytes)).await.expect("the redacted original decodes");
    let doc = sluice::avro::avro_to_json(&doc);
    assert_eq!(doc["content"], "Mail [EMAIL], card [CARD]");
    assert_eq!(server.ledger().calls.len(), 1, "one call, rejected");
    stop(running).await;
}

/// `topologies/support-rag.yaml` with only its provider block changed to an `openai` provider
/// at the mock: every document reaches exactly one final topic, models and prompt versions are
/// recorded, and the API key appears in no record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn support_rag_runs_end_to_end_through_the_mock_provider() {
    let key = "sk-test-e2e-secret-4c1f";
    std::env::set_var("SLUICE_E2E_KEY", key);
    // The mock's own vectors are 1536-dimensional; the provider asks for 64, as it would OpenAI.
    let config =
        MockConfig { api_key: Some(key.into()), embedding_dim: 1536, ..MockConfig::default() };
    let server = common::mock_provider(config).await;
    let original = std::fs::read_to_string("topologies/support-rag.yaml").expect("topology");
    let start_at = original.find("\nproviders:").expect("providers block");
    let end_at = original.find("\n# Logical models").expect("models block");
    let store = tempfile::tempdir().expect("store dir");
    let yaml = format!(
        "{}\nproviders:\n  sim:\n    kind: openai\n    base_url: {}\n    api_key_env: SLUICE_E2E_KEY\n    \
         embedding_dimensions: 64\n    model_names: {{ sim-small: gpt-4o-mini, sim-small-2: \
         gpt-4.1-mini, sim-large: gpt-4o, sim-embed: text-embedding-3-small }}\n{}",
        &original[..start_at],
        server.openai_url(),
        &original[end_at..]
    )
    .replace("../examples/kb.jsonl", "examples/kb.jsonl")
    .replace("../.sluice/support-rag-kb", &store.path().join("kb").display().to_string())
    .replace("../.sluice/support-rag-cache", &store.path().join("cache").display().to_string())
    .replace("support.", &format!("{}.", unique("rag")));
    let h = Harness::start(&yaml).await;
    let t = h.topology.clone();
    let running = start(&h);
    let codec = h.codec().await;
    let docs = std::fs::read_to_string("examples/documents.jsonl").expect("documents");
    produce_json_lines(&t.kafka, &codec, &t.inputs[0].name, SchemaKind::Document, &docs, |_, _| {})
        .await
        .expect("produced");
    let review = t.stages.iter().find(|s| s.name == "review").expect("review stage");
    let mut finals: Vec<String> = review.output_topics().into_iter().map(str::to_owned).collect();
    finals.extend(t.stages.iter().map(|s| s.dead_letter_topic.clone()));
    let final_refs: Vec<&str> = finals.iter().map(String::as_str).collect();
    let done =
        wait_until(Duration::from_secs(90), || async { h.count_many(&final_refs).await >= 8 });
    assert!(done.await, "all 8 documents finish");
    let mut seen: HashMap<String, String> = HashMap::new();
    for topic in &finals {
        for (_, _, key_of, value) in h.read_all(topic).await {
            let id = key_of.expect("keyed by document id");
            assert!(
                seen.insert(id.clone(), topic.clone()).is_none(),
                "{id} reached two final topics"
            );
            let text = format!("{value:?}");
            assert!(!text.contains(key), "the API key leaked into a record on {topic}");
            if topic == &review.output || topic.ends_with("needs-human") {
                let json = sluice::avro::avro_to_json(&value.expect("decodes"));
                let model = json["answer"]["model"].as_str().expect("model").to_owned();
                let version =
                    json["answer"]["prompt_version"].as_str().expect("version").to_owned();
                assert!(version == "answer@1" || version == "answer@2");
                assert_eq!(json["classification"]["prompt_version"], "classify@1");
                assert!(json["classification"]["model"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("sim/")));
                if id == "doc-004" {
                    assert_eq!(model, "sim/gpt-4o", "legal documents route to the large model");
                } else {
                    assert!(model.starts_with("sim/"), "{model}");
                }
            }
        }
    }
    assert_eq!(seen.len(), 8);
    assert!(seen["doc-008"].ends_with(".dlq"), "the empty document is dead-lettered");
    let ledger = server.ledger();
    assert!(
        ledger.totals("text-embedding-3-small").calls >= 2,
        "knowledge base and documents embedded over HTTP"
    );
    assert!(ledger.totals("gpt-4o-mini").calls >= 7);
    assert_eq!(ledger.rate_limited(), 0);
    stop(running).await;
}
