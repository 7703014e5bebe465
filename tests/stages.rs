//! Stage semantics against the mock provider over HTTP, without Kafka: micro-batched embedding,
//! retrieval from the example knowledge base, review's redaction and routing, rule-based
//! classification and the generate stage's prompt versions and routing.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice::avro::{Answer, Classification, Envelope, Passage, Verdict};
use sluice::config::compile;
use sluice::mock_provider::{serve, MockConfig, MockProvider};
use sluice::policy::Gateway;
use sluice::stage::{AnyStage, Emit, Port, Stage, StageContext};

struct Setup {
    server: MockProvider,
    stages: Vec<(String, Arc<AnyStage>)>,
    _dir: tempfile::TempDir,
}

/// Builds every stage of `stages_yaml` with an `openai` provider `m` at a fresh mock; the
/// example knowledge base is at `kb.jsonl` beside the topology.
async fn setup(models: &str, stages_yaml: &str) -> Setup {
    let server = serve(
        "127.0.0.1:0".parse().expect("addr"),
        MockConfig { embedding_dim: 64, ..MockConfig::default() },
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy("examples/kb.jsonl", dir.path().join("kb.jsonl")).expect("kb");
    let yaml = format!(
        r#"
pipeline: p
providers:
  m: {{ kind: openai, base_url: {url} }}
models:
{models}
prompts:
  answer@1: {{ system: "Answer from the passages.", user: "{{{{passages}}}}\nQ: {{{{document}}}}" }}
  answer@2: {{ system: "Answer briefly.", user: "{{{{label}}}}: {{{{document}}}}\n{{{{passages}}}}" }}
pii:
  patterns: {{ ticket: "TCK-[0-9]{{6}}" }}
prices:
  set_on: 2026-11-01
  models:
    emb: {{ input: 0.02, output: 0 }}
    judge: {{ input: 0.15, output: 0.6 }}
    small: {{ input: 0.15, output: 0.6 }}
    large: {{ input: 2.5, output: 10 }}
inputs: {{ docs: {{}} }}
stages:
{stages_yaml}
"#,
        url = server.openai_url()
    );
    let path = dir.path().join("t.yaml");
    let t = compile(&path, &yaml).unwrap_or_else(|e| panic!("{e}"));
    let gateway = Arc::new(Gateway::new(&t).expect("gateway"));
    let mut stages = Vec::new();
    for spec in &t.stages {
        let stage = AnyStage::build(spec, &t, gateway.clone()).await.expect("stage builds");
        stages.push((spec.name.clone(), Arc::new(stage)));
    }
    Setup { server, stages, _dir: dir }
}

fn doc(id: &str, content: &str) -> Envelope {
    common::document(id, "acme", content)
}

async fn run(stage: &AnyStage, input: Envelope) -> Vec<Emit> {
    let cx = StageContext::unmetered("t", 1);
    stage.process(input, cx).await.expect("stage succeeds")
}

#[tokio::test]
async fn embed_sends_one_call_per_micro_batch_across_records() {
    let s = setup(
        "  emb: { provider: m, name: text-embedding-3-small }",
        "  e: { kind: embed, input: docs, output: out, model: emb, embed: { chunk_tokens: 16, chunk_overlap: 0, batch_size: 8, linger: 300ms, dimensions: 64 } }",
    )
    .await;
    let stage = s.stages[0].1.clone();
    // 12 documents of different lengths: 1 to 4 chunks of 16 tokens each.
    let docs: Vec<Envelope> = (0..12)
        .map(|i| {
            let words = 10 + (i % 4) * 16;
            doc(
                &format!("d{i}"),
                &(0..words).map(|w| format!("w{w}")).collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    let tasks: Vec<_> = docs
        .into_iter()
        .map(|d| {
            let stage = stage.clone();
            tokio::spawn(async move { run(&stage, d).await })
        })
        .collect();
    let mut chunks = 0;
    for t in tasks {
        let out = t.await.expect("task");
        let record = &out[0].record;
        assert!(!record.chunks.is_empty());
        assert!(record.chunks.iter().all(|c| c.vector.len() == 64));
        assert_eq!(record.embedding_model.as_deref(), Some("m/text-embedding-3-small"));
        chunks += record.chunks.len();
    }
    let ledger = s.server.ledger();
    let calls = ledger.totals("text-embedding-3-small").calls as usize;
    assert_eq!(calls, chunks.div_ceil(8), "{chunks} chunks in batches of 8");
    let embedded: usize = ledger.calls.iter().map(|c| c.inputs).sum();
    assert_eq!(embedded, chunks);
}

#[tokio::test]
async fn retrieve_finds_the_expected_passages_of_the_example_knowledge_base() {
    let s = setup(
        "  emb: { provider: m, name: text-embedding-3-small }",
        "  r: { kind: retrieve, input: docs, output: out, model: emb, retrieve: { store: { kind: embedded, path: store }, knowledge_base: kb.jsonl, top_k: 3, dimensions: 64 } }",
    )
    .await;
    let stage = &s.stages[0].1;
    let cases = [
        ("How do I reset my password? The sign-in page rejects it.", "kb-password"),
        ("When are refunds for duplicate charges issued to my payment method?", "kb-refund"),
        ("Our uploads fail with a technical timeout for large files", "kb-timeout"),
        ("Can we configure SAML single sign-on?", "kb-sso"),
    ];
    for (question, expected) in cases {
        let out = run(stage, doc("q", question)).await;
        let passages = &out[0].record.passages;
        assert_eq!(passages.len(), 3);
        assert_eq!(passages[0].id, expected, "for {question:?}: {passages:?}");
        assert!(passages.windows(2).all(|w| w[0].score >= w[1].score));
    }
    assert!(s._dir.path().join("store/vectors.f32").exists(), "the store is persisted");
}

#[tokio::test]
async fn retrieve_works_against_qdrants_rest_api_and_indexes_only_an_empty_collection() {
    let qdrant = common::qdrant::serve().await;
    let stage = |dims: usize| {
        format!(
            "  r: {{ kind: retrieve, input: docs, output: out, model: emb, retrieve: {{ store: {{ kind: qdrant, url: {qdrant}, collection: kb }}, knowledge_base: kb.jsonl, top_k: 2, dimensions: {dims} }} }}"
        )
    };
    let s = setup("  emb: { provider: m, name: text-embedding-3-small }", &stage(64)).await;
    let out = run(&s.stages[0].1, doc("q", "Can we configure SAML single sign-on?")).await;
    let passages = &out[0].record.passages;
    assert_eq!(passages.len(), 2);
    assert_eq!(passages[0].id, "kb-sso");
    assert_eq!(passages[0].source, "support-handbook");
    let embedded: usize = s.server.ledger().calls.iter().map(|c| c.inputs).sum();
    assert_eq!(embedded, 10 + 1, "ten passages indexed, one query");

    // A second worker finds the collection filled and does not index again.
    let again = setup("  emb: { provider: m, name: text-embedding-3-small }", &stage(64)).await;
    assert_eq!(again.server.ledger().totals("text-embedding-3-small").calls, 0);
    drop(again);

    // The collection's vector size is checked against the stage's.
    let spec = sluice::config::StoreSpec::Qdrant {
        url: qdrant.clone(),
        collection: "kb".into(),
        api_key: None,
    };
    let err = sluice::store::VectorStore::open(&spec, 32).await.err().expect("size mismatch");
    assert!(err.to_string().contains("64-dimensional"), "{err}");
}

fn answered(id: &str, text: &str, passages: bool) -> Envelope {
    let mut e = doc(id, "Where is my refund?");
    e.classification = Some(Classification {
        label: "billing".into(),
        confidence: 0.9,
        model: "m".into(),
        prompt_version: None,
    });
    if passages {
        e.passages = vec![Passage {
            id: "kb-refund".into(),
            text: "Refunds take 5 days.".into(),
            score: 0.9,
            source: "kb".into(),
        }];
    }
    e.answer = Some(Answer {
        text: text.into(),
        model: "m/x".into(),
        prompt_version: "answer@1".into(),
        input_tokens: 1,
        output_tokens: 1,
        finish_reason: "stop".into(),
        latency_ms: 1,
        cache: "none".into(),
        similarity: None,
        reused_from: None,
    });
    e
}

#[tokio::test]
async fn review_redacts_every_planted_value_and_routes_by_verdict() {
    let s = setup(
        "  judge: { provider: m, name: judge-model }",
        "  v: { kind: review, input: docs, output: ok, needs_human_output: human, rejected_output: rejected, review: { blocked_terms: [guaranteed refund], judge: { model: judge, threshold: 0.5 } } }",
    )
    .await;
    let stage = &s.stages[0].1;
    let planted = [
        "jane.doe@example.com",
        "+44 20 7946 0958",
        "4111 1111 1111 1111",
        "GB82 WEST 1234 5698 7654 32",
        "TCK-123456",
    ];
    let text = format!(
        "Refunds take 5 days [kb-refund]. Contact {} or {}; card {} and IBAN {} noted, ticket {}.",
        planted[0], planted[1], planted[2], planted[3], planted[4]
    );
    let out = run(stage, answered("a", &text, true)).await;
    assert_eq!(out[0].port, Port::Main);
    let r = &out[0].record;
    let answer = &r.answer.as_ref().expect("answer").text;
    for value in planted {
        assert!(!answer.contains(value), "{value} survived: {answer}");
    }
    for marker in ["[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]", "[TICKET]"] {
        assert!(answer.contains(marker), "{marker} missing: {answer}");
    }
    let review = r.review.as_ref().expect("review");
    assert_eq!((review.verdict, review.redactions), (Verdict::Approved, 5));

    let out = run(stage, answered("b", "We offer a guaranteed refund.", true)).await;
    assert_eq!(out[0].port, Port::Rejected);
    assert!(out[0].record.review.as_ref().expect("review").reasons[0].contains("guaranteed refund"));

    // The judge (over HTTP) scores an ungrounded answer low: a human must look.
    let out = run(stage, answered("c", "This is ungrounded speculation.", true)).await;
    assert_eq!(out[0].port, Port::NeedsHuman);
    let reasons = &out[0].record.review.as_ref().expect("review").reasons;
    assert!(reasons.iter().any(|r| r.starts_with("judge: groundedness 0.20")), "{reasons:?}");
    assert_eq!(
        s.server.ledger().totals("judge-model").calls,
        2,
        "the judge skips rejected answers"
    );
}

#[tokio::test]
async fn rules_classify_without_a_model_call_and_generate_routes_and_splits_prompts() {
    let s = setup(
        "  small: { provider: m, name: small-model, context_window: 4096 }\n  large: { provider: m, name: large-model, context_window: 16384 }",
        r#"  c: { kind: classify, input: docs, output: c1, classify: { labels: [billing, legal, other], rules: { billing: ["refund", "invoice"], legal: ["contract|gdpr"] } } }
  g:
    kind: generate
    input: c1
    output: g1
    model: small
    routes: [ { when: { labels: [legal] }, model: large }, { when: { min_tokens: 300 }, model: large } ]
    generate: { prompt: answer@1, ab: { prompt: answer@2, weight: 0.5 }, max_output_tokens: 64 }"#,
    )
    .await;
    let (classify, generate) = (&s.stages[0].1, &s.stages[1].1);
    let mut versions = BTreeMap::new();
    let inputs = [
        ("Please refund my invoice", "billing", "m/small-model"),
        ("Is the GDPR clause in our contract binding?", "legal", "m/large-model"),
        ("Hello there", "other", "m/small-model"),
    ];
    for (i, (content, label, model)) in inputs.iter().enumerate() {
        let out = run(classify, doc(&format!("d{i}"), content)).await;
        let c = out[0].record.classification.as_ref().expect("classified");
        assert_eq!((c.label.as_str(), c.model.as_str()), (*label, "rules"));
        assert_eq!(c.prompt_version, None, "rules use no prompt");
        let out = run(generate, out[0].record.clone()).await;
        let a = out[0].record.answer.as_ref().expect("answer");
        assert_eq!(a.model, *model, "routing for {content:?}");
        *versions.entry(a.prompt_version.clone()).or_insert(0) += 1;
    }
    let long = (0..400).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
    let out = run(generate, doc("long", &long)).await;
    assert_eq!(out[0].record.answer.as_ref().expect("answer").model, "m/large-model");
    let ledger = s.server.ledger();
    assert_eq!(ledger.totals("small-model").calls + ledger.totals("large-model").calls, 4);

    // The A/B split is a hash of the document id: over 20 documents, both prompts serve (with a
    // weight of 0.5, all 20 on one side would be a one-in-500,000 hash split).
    for i in 0..20 {
        let out = run(generate, doc(&format!("ab{i}"), "Where is my refund?")).await;
        let a = out[0].record.answer.as_ref().expect("answer");
        *versions.entry(a.prompt_version.clone()).or_insert(0) += 1;
    }
    assert_eq!(
        versions.keys().map(String::as_str).collect::<Vec<_>>(),
        ["answer@1", "answer@2"],
        "both prompt versions serve, and no other: {versions:?}"
    );
}
