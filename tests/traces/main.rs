//! Traces as a collector receives them: a real OTLP/HTTP receiver on loopback decodes what sluice
//! posts with the official OpenTelemetry protobuf definitions. One connected trace follows a
//! document from its producer through all five stages, a retry hop included; `sluice demo`
//! exports its traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and connects nowhere without it.
//!
//! The in-process test installs the process's one tracing subscriber, so these tests live in
//! their own binary and run one at a time.

#[path = "../common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use common::{unique, wait_until, Harness};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use sluice::avro::SchemaKind;
use sluice::telemetry::OtelSettings;

/// One at a time: the in-process test owns the subscriber, and two demos would share two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod receiver;

use receiver::{record_spans, Got, Receiver};

const STAGES: [&str; 5] = ["classify", "embed", "retrieve", "generate", "review"];

/// `topologies/support-rag.yaml` on the mock provider, its classify stage retrying on a ladder
/// of two short rungs and nothing in process.
fn support_rag_on(url: &str, dir: &std::path::Path) -> String {
    let original = std::fs::read_to_string("topologies/support-rag.yaml").expect("topology");
    let start_at = original.find("\nproviders:").expect("providers block");
    let end_at = original.find("\n# Logical models").expect("models block");
    let classify_retry =
        "retry: { attempts: 4, initial_backoff: 50ms, max_backoff: 2s, ladder: [10s, 1m, 10m] }";
    assert!(original.contains(classify_retry), "classify's retry policy");
    format!(
        "{}\nproviders:\n  sim:\n    kind: openai\n    base_url: {url}\n    \
         embedding_dimensions: 64\n    model_names: {{ sim-small: gpt-4o-mini, sim-small-2: \
         gpt-4.1-mini, sim-large: gpt-4o, sim-embed: text-embedding-3-small }}\n    \
         limits:\n      \"*\": {{ requests_per_second: 200, burst: 20, tokens_per_minute: 2000000 }}\n{}",
        &original[..start_at],
        &original[end_at..]
    )
    .replacen(classify_retry, "retry: { attempts: 1, ladder: [2s, 2s] }", 1)
    .replace("../examples/kb.jsonl", "examples/kb.jsonl")
    .replace("../.sluice/support-rag-kb", &dir.join("kb").display().to_string())
    .replace("../.sluice/support-rag-cache", &dir.join("cache").display().to_string())
    .replace("support.", &format!("{}.", unique("otel")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_follows_a_document_through_five_stages_and_a_retry_hop() {
    let _one = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start("127.0.0.1:0").await;
    let settings = OtelSettings {
        endpoint: format!("{}/v1/traces", receiver.base_url()),
        service_name: Some("sluice-trace-test".into()),
        queue_size: 4096,
    };
    let guard = sluice::telemetry::init_with(false, Some(&settings)).expect("exporter");
    assert!(guard.exporting(), "the first subscriber of this process exports");

    let server = common::mock_provider(sluice::mock_provider::MockConfig {
        embedding_dim: 1536,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let h = Harness::start(&support_rag_on(&server.openai_url(), dir.path())).await;
    let t = h.topology.clone();
    let running = h.start_pipeline();
    let codec = h.codec().await;
    let input = t.inputs[0].name.clone();
    let producer = h.producer();
    let send = |id: &'static str, traceparent: Option<&'static str>| {
        // An empty document is dead-lettered by classify.
        let content = match id {
            "tr-4" => String::new(),
            _ => format!("I was charged twice this month for order {id}, please refund"),
        };
        let doc = common::document(id, "acme", &content);
        let payload = codec
            .encode(&input, &doc.to_value(SchemaKind::Document).expect("value"))
            .expect("encode");
        let (producer, input) = (producer.clone(), input.clone());
        async move {
            let mut record = FutureRecord::to(&input).key(id).payload(&payload);
            if let Some(tp) = traceparent {
                let headers =
                    OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(tp) });
                record = record.headers(headers);
            }
            producer.send(record, Duration::from_secs(10)).await.expect("produce");
        }
    };

    // Both classify models answer 503 until the first attempt has failed over to the backup:
    // the document waits on classify's first retry rung, then goes on.
    server.set_fault("gpt-4o-mini", Some(503));
    server.set_fault("gpt-4.1-mini", Some(503));
    let producer_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let producer_span = "00f067aa0ba902b7";
    send("tr-1", Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")).await;
    let failed_over = wait_until(Duration::from_secs(30), || async {
        server.ledger().calls.iter().any(|c| c.model == "gpt-4.1-mini" && c.status == 503)
    });
    assert!(failed_over.await, "classify's first attempt failed on both models");
    server.set_fault("gpt-4o-mini", None);
    server.set_fault("gpt-4.1-mini", None);
    // A malformed header never fails a record; a document without one starts a trace.
    send("tr-2", Some("00-not-a-trace-context")).await;
    send("tr-3", None).await;
    // The dead-letter hop continues the trace too.
    let letter_trace = "0af7651916cd43dd8448eb211c80319c";
    send("tr-4", Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")).await;

    let review = t.stages.iter().find(|s| s.name == "review").expect("review stage");
    let mut finals: Vec<String> = review.output_topics().into_iter().map(str::to_owned).collect();
    finals.extend(t.stages.iter().map(|s| s.dead_letter_topic.clone()));
    let final_refs: Vec<&str> = finals.iter().map(String::as_str).collect();
    running
        .until(Duration::from_secs(90), "the four documents finish", || async {
            h.count_many(&final_refs).await >= 4
        })
        .await;
    running.stop().await.expect("the pipeline runs");
    // Where each document ended, with the trace context its final record carries.
    let mut ended: HashMap<String, (String, String)> = HashMap::new();
    for topic in &finals {
        let records = common::each_record(&t.kafka, topic, |m| {
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
            let tp = m.headers().and_then(|hs| {
                hs.iter()
                    .find(|hd| hd.key == "traceparent")
                    .and_then(|hd| hd.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            });
            (key, tp.unwrap_or_default())
        })
        .await;
        for (key, tp) in records {
            ended.insert(key, (topic.clone(), tp));
        }
    }
    assert_eq!(ended.len(), 4, "{ended:?}");
    for (id, (topic, _)) in &ended {
        let dead = topic == &t.stages[0].dead_letter_topic;
        assert_eq!(dead, id == "tr-4", "{id} ended on {topic}");
    }
    let guard = tokio::task::spawn_blocking(move || {
        guard.flush();
        guard
    })
    .await
    .expect("flush");
    let ours = |trace: &str| -> Vec<Got> {
        receiver.spans().into_iter().filter(|s| s.trace == trace).collect()
    };
    let complete = wait_until(Duration::from_secs(30), || async {
        let by_stage = record_spans(&ours(producer_trace));
        let batched = batched_call_traced(&receiver.spans());
        STAGES.iter().all(|s| by_stage.contains_key(*s)) && batched
    });
    assert!(complete.await, "record spans of all five stages arrive");
    assert!(
        receiver.refused().is_empty(),
        "every export is OTLP protobuf: {:?}",
        receiver.refused()
    );

    // One connected trace: every span's parent is in it, or is the producer's span.
    let trace = ours(producer_trace);
    let ids: HashSet<&str> = trace.iter().map(|s| s.id.as_str()).collect();
    for s in &trace {
        assert!(
            ids.contains(s.parent.as_str()) || s.parent == producer_span,
            "{} ({}) hangs off unknown span '{}'",
            s.name,
            s.attr("sluice.stage"),
            s.parent
        );
        assert_eq!(s.resource.get("service.name").map(String::as_str), Some("sluice-trace-test"));
    }
    let by_id: HashMap<&str, &Got> = trace.iter().map(|s| (s.id.as_str(), s)).collect();
    let by_stage = record_spans(&trace);

    // The retry hop: classify once on the input topic (a child of the producer's span), and
    // again on its first retry rung, a child of the first visit.
    let classify = &by_stage["classify"];
    assert_eq!(classify.len(), 2, "two visits to classify: {classify:#?}");
    let first = classify.iter().find(|s| s.parent == producer_span).expect("first visit");
    let retry_topic = &t.stages[0].retry.retry_topics()[0].0;
    let second = classify.iter().find(|s| s.parent == first.id).expect("the retry hop");
    assert_eq!(first.attr("messaging.destination.name"), input);
    assert_eq!(second.attr("messaging.destination.name"), retry_topic.as_str());
    // The first visit produces to the retry topic (and its failed calls' cost events to the
    // metering topic, in no particular order).
    let parked = trace
        .iter()
        .filter(|s| s.kind == SpanKind::Producer && s.parent == first.id)
        .find(|s| s.attr("messaging.destination.name") == retry_topic.as_str())
        .expect("the produce to the retry topic");
    assert_eq!(parked.attr("messaging.operation.type"), "send");

    // Each stage's record span is a child of the previous stage's.
    let mut upstream = second.id.clone();
    for stage in &STAGES[1..] {
        let spans = &by_stage[*stage];
        assert_eq!(spans.len(), 1, "{stage} handled the document once");
        let s = &spans[0];
        assert_eq!(s.parent, upstream, "{stage} continues the trace of the stage before");
        upstream = s.id.clone();
    }
    for s in trace.iter().filter(|s| s.kind == SpanKind::Consumer) {
        let spec = t.stages.iter().find(|x| x.name == s.attr("sluice.stage")).expect("stage");
        assert_eq!(s.attr("messaging.system"), "kafka");
        assert_eq!(s.attr("messaging.operation.type"), "process");
        assert_eq!(s.attr("messaging.consumer.group.name"), spec.group);
        assert!(s.attr("messaging.destination.partition.id").parse::<i32>().is_ok(), "{s:?}");
        assert!(s.attr("messaging.kafka.offset").parse::<i64>().is_ok(), "{s:?}");
        assert_eq!(s.name, format!("process {}", s.attr("messaging.destination.name")));
    }

    // Model calls: children of the record span whose stage made them.
    let calls: Vec<&Got> = trace.iter().filter(|s| s.kind == SpanKind::Client).collect();
    let stage_of =
        |s: &Got| by_id.get(s.parent.as_str()).map(|p| p.attr("sluice.stage").to_owned());
    let classify_calls: Vec<&&Got> =
        calls.iter().filter(|c| stage_of(c).as_deref() == Some("classify")).collect();
    let failed: Vec<&&&Got> =
        classify_calls.iter().filter(|c| !c.attr("error.type").is_empty()).collect();
    assert_eq!(failed.len(), 2, "the model and its fallback failed: {failed:#?}");
    assert!(failed
        .iter()
        .all(|c| c.error && c.attr("sluice.attempt") == "1" && c.parent == first.id));
    let answered = classify_calls
        .iter()
        .find(|c| c.attr("error.type").is_empty())
        .expect("classify's second attempt answered");
    assert_eq!(answered.parent, second.id);
    assert_eq!(answered.name, "chat gpt-4o-mini");
    assert_eq!(answered.attr("gen_ai.operation.name"), "chat");
    assert_eq!(answered.attr("gen_ai.provider.name"), "openai");
    assert_eq!(answered.attr("gen_ai.request.model"), "gpt-4o-mini");
    assert!(!answered.attr("gen_ai.response.model").is_empty());
    assert!(answered.attr("gen_ai.response.id").starts_with("chatcmpl-mock-"), "{answered:?}");
    assert!(answered.attr("gen_ai.usage.input_tokens").parse::<u64>().expect("tokens") > 0);
    assert!(answered.attr("gen_ai.usage.output_tokens").parse::<u64>().expect("tokens") > 0);
    assert_eq!(answered.attr("sluice.tenant"), "acme");
    assert_eq!(answered.attr("sluice.prompt.version"), "classify@1");
    assert_eq!(answered.attr("sluice.cached"), "false");
    assert_eq!(answered.attr("sluice.attempt"), "2");
    assert!(answered.attr("sluice.cost.usd").parse::<f64>().expect("cost") > 0.0);
    assert!(
        batched_call_traced(&receiver.spans()),
        "the embed stage's batched call, traced below an embed record's span"
    );
    let generated =
        calls.iter().find(|c| stage_of(c).as_deref() == Some("generate")).expect("generate's call");
    assert!(generated.attr("sluice.prompt.version").starts_with("answer@"));
    // Waiting for the budget and the rate limiter, below the call that waited.
    for what in ["wait budget", "wait rate_limit"] {
        let wait = trace.iter().find(|s| s.name == what).unwrap_or_else(|| panic!("{what}"));
        assert_eq!(by_id[wait.parent.as_str()].kind, SpanKind::Client, "{what}");
    }

    // The final record carries the review span's context, not the producer's.
    let (_, tp) = &ended["tr-1"];
    let review_span = &by_stage["review"][0];
    assert_eq!(tp, &format!("00-{producer_trace}-{}-01", review_span.id));

    // A malformed header and no header each start a trace of their own at classify.
    for id in ["tr-2", "tr-3"] {
        let (_, tp) = &ended[id];
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{id} ends with a W3C traceparent: {tp}");
        let (trace_id, span_id) = (parts[1], parts[2]);
        assert_ne!(trace_id, producer_trace);
        let arrived = wait_until(Duration::from_secs(30), || async {
            let spans = ours(trace_id);
            STAGES.iter().all(|s| record_spans(&spans).contains_key(*s))
        });
        assert!(arrived.await, "{id}'s trace has every stage");
        let spans = ours(trace_id);
        let by_stage = record_spans(&spans);
        assert!(by_stage["classify"][0].parent.is_empty(), "{id}'s trace starts at classify");
        assert_eq!(by_stage["review"][0].id, span_id);
    }
    // The dead letter carries the trace on, from the classify span that gave up.
    let (_, tp) = &ended["tr-4"];
    let letter = ours(letter_trace);
    let gave_up = record_spans(&letter).remove("classify").expect("classify's span")[0].clone();
    assert_eq!(tp, &format!("00-{letter_trace}-{}-01", gave_up.id));
    let dlq = &t.stages[0].dead_letter_topic;
    assert!(letter.iter().any(|s| s.kind == SpanKind::Producer
        && s.parent == gave_up.id
        && s.attr("messaging.destination.name") == dlq.as_str()));
    assert_eq!(guard.dropped(), 0, "nothing dropped with a collector that keeps up");
    tokio::task::spawn_blocking(move || drop(guard)).await.expect("exporter stops");
}

/// Runs `sluice demo` with `env` (and every `OTEL_*` endpoint variable of this process removed).
async fn demo(env: &[(&str, String)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["demo", "--timeout", "90s"])
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || command.output().expect("run demo"))
        .await
        .expect("demo");
    assert!(
        out.status.success(),
        "demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_exports_its_traces_when_an_endpoint_is_set() {
    let _one = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start("127.0.0.1:0").await;
    let out = demo(&[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url())]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exporting traces over OTLP/HTTP"), "{stderr}");
    // The demo flushed its spans before exiting.
    let spans = receiver.spans();
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
    assert!(spans
        .iter()
        .all(|s| s.resource.get("service.name").map(String::as_str) == Some("sluice")));
    let mut traces: HashMap<&str, Vec<Got>> = HashMap::new();
    for s in &spans {
        traces.entry(s.trace.as_str()).or_default().push(s.clone());
    }
    let whole = traces
        .values()
        .filter(|spans| {
            let by_stage = record_spans(spans);
            STAGES.iter().all(|s| by_stage.contains_key(*s))
        })
        .count();
    assert!(whole >= 7, "seven documents pass every stage, each in one trace; {whole} did");
    assert!(spans.iter().any(|s| s.attr("gen_ai.provider.name") == "simulated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_the_demo_connects_to_no_collector() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Where an exporter with no endpoint configured would send (the OTLP/HTTP default).
    let receiver = Receiver::start("127.0.0.1:4318").await;
    let out = demo(&[
        ("OTEL_SERVICE_NAME", "sluice-off".into()),
        ("OTEL_TRACES_SAMPLER", "always_on".into()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
    ])
    .await;
    assert_eq!(receiver.requests(), 0, "nothing was exported");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("exporting traces"), "no exporter:\n{stderr}");
}

/// Whether an embeddings call is traced below an embed record's span. The embed stage batches:
/// its call is traced below the first record of the batch, which can be another document's (tr-2
/// and tr-3 catch up with tr-1 while it waits on its retry rung when the machine is slow), so it
/// is looked for in every trace received.
fn batched_call_traced(spans: &[Got]) -> bool {
    let embed_records: HashSet<&str> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Consumer && s.attr("sluice.stage") == "embed")
        .map(|s| s.id.as_str())
        .collect();
    spans.iter().any(|c| {
        c.kind == SpanKind::Client
            && c.attr("gen_ai.operation.name") == "embeddings"
            && embed_records.contains(c.parent.as_str())
    })
}
