//! The console in a real browser (Debian's Chromium driven by playwright-core through
//! `tools/browser/console_flow.mjs`) against a dev stack on Apache Kafka: a generate → review
//! pipeline calling the mock provider over HTTP fills the review queue and, with the provider
//! refusing one document, the dead-letter topic. In the browser a reviewer logs in, checks that
//! record text renders inert, approves one item with an edited answer, rejects another with a
//! note, previews and executes the redrive of the dead letter, and opens the pipeline page.
//! Then the topics must hold both decisions with the reviewer, and the redriven document must
//! have gone through the pipeline again (back in the review queue).
//!
//! Needs `scripts/browser` (Chromium, playwright-core) and a real broker (`scripts/with-kafka`:
//! the pipeline page asks the admin API):
//!   scripts/browser scripts/with-kafka cargo test --test console_browser -- --include-ignored
//! With SLUICE_CONSOLE_SCREENSHOTS=DIR the flow's screenshots are kept there (docs/console).

mod common;
#[path = "console_browser/dead_letters.rs"]
mod dead_letters;
#[path = "console_browser/review.rs"]
mod review;

use std::collections::HashMap;
use std::time::Duration;

use common::{document, unique, wait_until, Harness};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use sluice::avro::{Envelope, HumanDecision};
use sluice::console::{self, ConsoleOptions};
use sluice::devstack::DevStack;
use sluice::mock_provider::MockConfig;

const TIMEOUT: Duration = Duration::from_secs(60);
const EDITED: &str = "Refunds take 5 business days (edited by a reviewer).";
const NOTE: &str = "checked against the billing policy";

fn topology(p: &str, url: &str) -> String {
    format!(
        r#"
pipeline: {p}
kafka: {{ partitions: 1, consumer: {{ auto.commit.interval.ms: "200" }} }}
providers:
  m: {{ kind: openai, base_url: {url} }}
prices: {{ set_on: 2026-11-01, models: {{ m/gen: {{ input: 0.15, output: 0.6 }} }} }}
prompts:
  answer@1: {{ system: "Answer from the passages.", user: "{{{{document}}}}" }}
inputs: {{ {p}.docs: {{ partitions: 1 }} }}
stages:
  generate:
    kind: generate
    input: {p}.docs
    output: {p}.generated
    model: {{ provider: m, name: gen }}
    generate: {{ prompt: answer@1 }}
    retry: {{ attempts: 1 }}
  review:
    kind: review
    input: {p}.generated
    output: {p}.approved
    needs_human_output: {p}.needs-human
    rejected_output: {p}.rejected
"#
    )
}

async fn produce(h: &Harness, id: &str, content: &str) {
    let (codec, topic) = (h.codec().await, h.input());
    let bytes = h.encode(&codec, &topic, &document(id, "acme", content));
    let record = FutureRecord::to(&topic).key(id).payload(&bytes);
    h.producer().send(record, Timeout::After(TIMEOUT)).await.expect("produce");
}

/// The documents on `topic`, decoded.
async fn envelopes(h: &Harness, topic: &str) -> Vec<Envelope> {
    let codec = h.codec().await;
    let raw = common::each_record(&h.topology.kafka, topic, |m| {
        rdkafka::message::Message::payload(m).map(<[u8]>::to_vec)
    })
    .await;
    let mut out = Vec::new();
    for payload in raw {
        let d = codec.decode(payload.as_deref()).await.expect("decodes");
        out.push(Envelope::from_value(d.kind, d.value).expect("envelope"));
    }
    out
}

fn ids(envelopes: &[Envelope]) -> Vec<String> {
    envelopes.iter().map(|e| e.document.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs scripts/browser and a real broker: scripts/browser scripts/with-kafka cargo test --test console_browser -- --include-ignored"]
async fn a_reviewer_decides_in_a_browser_and_redrives_a_dead_letter() {
    let flow = std::env::var("SLUICE_BROWSER_FLOW")
        .expect("SLUICE_BROWSER_FLOW is set by scripts/browser (run the test through it)");
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .expect("KAFKA_BOOTSTRAP_SERVERS is set by scripts/with-kafka (the pipeline page needs a real broker)");
    sluice::telemetry::init_logging(false);
    let server = common::mock_provider(MockConfig::default()).await;
    let p = unique("console");
    let yaml = topology(&p, &server.openai_url());
    let mut t = sluice::config::compile(std::path::Path::new("t.yaml"), &yaml).expect("compiles");
    let stack = DevStack::start_on(&mut t, "127.0.0.1:0".parse().expect("addr"), Some(bootstrap))
        .await
        .expect("dev stack on the real broker");
    let h = Harness { stack, topology: t };
    let running = h.start_pipeline();
    let dlq = h.topology.stage("generate").expect("stage").dead_letter_topic.clone();
    let needs_human = format!("{p}.needs-human");

    server.set_fault("gen", Some(400));
    produce(&h, "doc-redrive", "Where is my parcel?").await;
    assert!(wait_until(TIMEOUT, || async { h.count(&dlq).await == 1 }).await, "a dead letter");
    server.set_fault("gen", None);
    produce(&h, "doc-approve", "I was billed twice, can I get a refund?").await;
    produce(&h, "doc-reject", "Tell me a joke about invoices.").await;
    let xss =
        "<script>window.__sluiceXss=1</script><img src=x onerror=\"window.__sluiceXss=2\"> why?";
    produce(&h, "doc-xss", xss).await;
    assert!(
        wait_until(TIMEOUT, || async { h.count(&needs_human).await == 3 }).await,
        "no passages: review holds every answer for a person"
    );

    // The stages run in this process: its metrics endpoint is theirs.
    let metrics_addr = sluice::telemetry::http::serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("metrics endpoint");
    let metrics = format!("http://{metrics_addr}/metrics");
    let opts = ConsoleOptions {
        addr: "127.0.0.1:0".parse().expect("addr"),
        access: Default::default(),
        claim_ttl: Duration::from_secs(600),
        finish_after: Duration::from_secs(60),
        metrics: vec![metrics],
        limits: Default::default(),
    };
    let c = console::start(&h.topology, opts).await.expect("console");
    let shots = std::env::var("SLUICE_CONSOLE_SCREENSHOTS").ok();
    let tmp = tempfile::tempdir().expect("tmp");
    let shot_dir = shots.unwrap_or_else(|| tmp.path().display().to_string());
    let env: HashMap<&'static str, String> = [
        ("CONSOLE_URL", format!("http://{}", c.addr)),
        ("CONSOLE_REVIEWER", "alice".into()),
        ("CONSOLE_APPROVE_DOC", "doc-approve".into()),
        ("CONSOLE_REJECT_DOC", "doc-reject".into()),
        ("CONSOLE_XSS_DOC", "doc-xss".into()),
        ("CONSOLE_EDITED_ANSWER", EDITED.into()),
        ("CONSOLE_NOTE", NOTE.into()),
        ("CONSOLE_DLQ_STAGE", "generate".into()),
        ("CONSOLE_REDRIVE_DOC", "doc-redrive".into()),
        ("SCREENSHOT_DIR", shot_dir),
    ]
    .into_iter()
    .collect();
    let stdout = common::browser::run_flow(&flow, env).await;
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON summary");
    assert_eq!(summary["screenshots"].as_array().map(Vec::len), Some(6), "{summary}");

    let approved = envelopes(&h, &format!("{p}.approved")).await;
    assert_eq!(ids(&approved), ["doc-approve"]);
    let human = approved[0].human_review.clone().expect("a person's decision");
    assert_eq!((human.reviewer.as_str(), human.decision), ("alice", HumanDecision::Approved));
    assert_eq!(approved[0].answer.as_ref().map(|a| a.text.as_str()), Some(EDITED));
    assert!(human.original_answer.is_some_and(|a| a != EDITED), "the generated answer is kept");
    let rejected = envelopes(&h, &format!("{p}.rejected")).await;
    assert_eq!(ids(&rejected), ["doc-reject"]);
    let human = rejected[0].human_review.clone().expect("a person's decision");
    assert_eq!((human.reviewer.as_str(), human.note.as_str()), ("alice", NOTE));
    assert!(
        wait_until(TIMEOUT, || async {
            ids(&envelopes(&h, &needs_human).await).contains(&"doc-redrive".to_owned())
        })
        .await,
        "the redriven document went through generate and review again"
    );
    let table = common::console::pipeline_table(&format!("http://{}", c.addr)).await;
    assert!(table.contains(r#"id="breakers""#) && table.contains("<td>m</td>"), "{table}");
    running.stop().await.expect("pipeline runs");
}

#[path = "console_browser/pipeline.rs"]
mod pipeline;
