//! The semantic cache through a generate stage, on the simulated provider and librdkafka's mock
//! cluster. The simulated embeddings are a bag of hashed words (not semantic), so a
//! "paraphrase" here is the same words and one more: similarity √(3/4) ≈ 0.87 for three words.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::{SEMANTIC_HIT, SEMANTIC_LOOKUP};
use crate::avro::{Answer, Classification, Document, Envelope};
use crate::call::{CallLog, CostEvent, Origin};
use crate::config::{compile, KafkaSettings, Topology};
use crate::devstack::MockKafka;
use crate::policy::semantic::{IndexLimits, SemanticStore};
use crate::policy::Gateway;
use crate::stage::{AnyStage, Stage, StageContext};

const TOPIC: &str = "sem.semantic-cache";

/// A generate stage `stage` with prompt `prompt`, a semantic cache of `scope` at threshold 0.7
/// that excludes label `legal`, and `extra` top-level lines (an exact cache).
fn topology(stage: &str, prompt: &str, scope: &str, extra: &str) -> Topology {
    let yaml = format!(
        r#"
pipeline: sem
providers:
  sim: {{ kind: simulated, latency: 1ms, jitter: 1ms, failure_rate: 0 }}
models:
  small: {{ provider: sim, name: sim-small }}
  embedder: {{ provider: sim, name: sim-embed }}
prices:
  set_on: 2026-11-01
  models:
    embedder: {{ input: 0.02, output: 0 }}
prompts:
  answer@1: {{ system: "Answer briefly.", user: "{{{{document}}}}" }}
  answer@2: {{ system: "Answer very briefly.", user: "{{{{document}}}}" }}
{extra}
inputs: {{ docs: {{}} }}
stages:
  {stage}:
    kind: generate
    input: docs
    output: answers
    model: small
    generate: {{ prompt: "{prompt}" }}
    cache:
      semantic:
        threshold: 0.7
        embedding: embedder
        scope: {scope}
        exclude: {{ labels: [legal] }}
"#
    );
    compile(Path::new("t.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// A mock cluster with the entries topic, and a store reading it.
async fn store() -> (MockKafka, Arc<SemanticStore>) {
    let kafka = MockKafka::start(1).expect("mock cluster");
    kafka.create_topic(TOPIC, 1).expect("topic");
    let settings = KafkaSettings::single_broker(kafka.bootstrap_servers(), 1);
    let store = SemanticStore::open(&settings, TOPIC, IndexLimits::default()).await.expect("open");
    (kafka, Arc::new(store))
}

/// The topology's one stage, calling models through a gateway with `store`.
struct Harness {
    stage: AnyStage,
    name: String,
}

async fn stage(t: &Topology, store: &Arc<SemanticStore>) -> Harness {
    assert_eq!(t.semantic_cache_topic.as_deref(), Some(TOPIC));
    let gateway = Gateway::new(t).expect("gateway").with_semantic(Some(store.clone()));
    let stage = AnyStage::build(&t.stages[0], t, Arc::new(gateway)).await.expect("stage");
    Harness { stage, name: t.stages[0].name.clone() }
}

fn record(id: &str, tenant: &str, content: &str) -> Envelope {
    Envelope::new(Document {
        id: id.into(),
        tenant: tenant.into(),
        content: content.into(),
        metadata: BTreeMap::new(),
    })
}

/// The record's answer and the cost events of its handling.
async fn answer(h: &Harness, input: Envelope) -> (Answer, Vec<CostEvent>) {
    let origin = Origin { topic: "docs".into(), partition: 0, offset: 1, timestamp_ms: None };
    let log = CallLog::new("sem", &h.name, origin);
    let cx = StageContext { stage: &h.name, attempt: 1, log: Some(&log) };
    let mut out = h.stage.process(input, cx).await.expect("processed");
    let answer = out.remove(0).record.answer.expect("an answer");
    (answer, log.take())
}

/// Model calls that went to the chat model (paid, not served from a cache).
fn paid_chats(events: &[CostEvent]) -> usize {
    events.iter().filter(|e| e.operation == "chat" && !e.cached).count()
}

/// `sluice_semantic_cache_lookups_total` of `stage` and `result` as the metrics page shows it.
fn lookups(stage: &str, result: &str) -> u64 {
    let series =
        format!("sluice_semantic_cache_lookups_total{{result=\"{result}\",stage=\"{stage}\"}} ");
    let text = crate::telemetry::render();
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |v| v.parse().expect("count"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_is_answered_from_cache_and_the_record_says_whose_answer() {
    let (_kafka, store) = store().await;
    let s = stage(&topology("generate", "answer@1", "tenant", ""), &store).await;
    let (first, events) = answer(&s, record("d1", "acme", "How reset password?")).await;
    assert_eq!((first.cache.as_str(), first.similarity, first.reused_from), ("none", None, None));
    assert_eq!(paid_chats(&events), 1);
    let lookup: Vec<_> = events.iter().filter(|e| e.operation == "embeddings").collect();
    assert_eq!(lookup.len(), 1, "{events:#?}");
    assert_eq!(lookup[0].purpose.as_deref(), Some(SEMANTIC_LOOKUP));
    assert!(
        lookup[0].cost_micro_usd > 0 && !lookup[0].cached,
        "the lookup is metered: {events:#?}"
    );
    assert_eq!(lookup[0].model_requested, "embedder");

    let (reused, events) = answer(&s, record("d2", "acme", "How reset password, please?")).await;
    assert_eq!(reused.cache, "semantic");
    assert_eq!(reused.reused_from.as_deref(), Some("d1"));
    let similarity = reused.similarity.expect("a similarity");
    assert!((0.7..0.99).contains(&similarity), "{similarity}");
    assert_eq!(reused.text, first.text, "the earlier answer");
    assert_eq!(paid_chats(&events), 0, "no model call: {events:#?}");
    let purposes: Vec<_> =
        events.iter().map(|e| (e.operation.as_str(), e.purpose.as_deref())).collect();
    assert_eq!(purposes, [("embeddings", Some(SEMANTIC_LOOKUP)), ("chat", Some(SEMANTIC_HIT))]);
    assert_eq!(events[1].cost_micro_usd, 0);
    assert_eq!((lookups("generate", "hit"), lookups("generate", "miss")), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_miss_the_guard_refuses_goes_to_the_model() {
    let (_kafka, store) = store().await;
    let s = stage(&topology("near-miss", "answer@1", "tenant", ""), &store).await;
    answer(&s, record("d1", "acme", "Refund order 1142 please.")).await;
    let (near, events) = answer(&s, record("d2", "acme", "Refund order 1143 please.")).await;
    assert_eq!((near.cache.as_str(), near.reused_from), ("none", None));
    assert_eq!(paid_chats(&events), 1);
    assert_eq!(lookups("near-miss", "refused"), 1, "similar enough, refused by the guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_question_misses_under_tenant_scope_and_hits_under_global() {
    let question = "Where is my parcel?";
    let (_kafka, store) = store().await;
    let tenant = stage(&topology("scoped", "answer@1", "tenant", ""), &store).await;
    answer(&tenant, record("a1", "acme", question)).await;
    let (other, _) = answer(&tenant, record("g1", "globex", question)).await;
    assert_eq!(other.cache, "none", "scope tenant: acme's answer is acme's");

    let global = stage(&topology("shared", "answer@1", "global", ""), &store).await;
    answer(&global, record("a2", "acme", question)).await;
    let (other, events) = answer(&global, record("g2", "globex", question)).await;
    assert_eq!((other.cache.as_str(), other.reused_from.as_deref()), ("semantic", Some("a2")));
    assert!(other.similarity.is_some_and(|s| s > 0.999), "{:?}", other.similarity);
    assert_eq!(paid_chats(&events), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_prompt_version_never_sees_the_old_ones_answers() {
    let question = "Can I change my billing address?";
    let (_kafka, store) = store().await;
    let v1 = stage(&topology("versioned", "answer@1", "tenant", ""), &store).await;
    answer(&v1, record("d1", "acme", question)).await;
    let (again, _) = answer(&v1, record("d2", "acme", question)).await;
    assert_eq!(again.cache, "semantic", "the same version reuses it");
    let v2 = stage(&topology("versioned", "answer@2", "tenant", ""), &store).await;
    let (fresh, events) = answer(&v2, record("d3", "acme", question)).await;
    assert_eq!((fresh.cache.as_str(), fresh.prompt_version.as_str()), ("none", "answer@2"));
    assert_eq!(paid_chats(&events), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_label_neither_looks_up_nor_leaves_an_answer() {
    let (_kafka, store) = store().await;
    let s = stage(&topology("excluding", "answer@1", "tenant", ""), &store).await;
    let legal = |id: &str| {
        let mut r = record(id, "acme", "May I terminate the contract early?");
        r.classification = Some(Classification {
            label: "legal".into(),
            confidence: 1.0,
            model: "rules".into(),
            prompt_version: None,
        });
        r
    };
    for id in ["l1", "l2"] {
        let (a, events) = answer(&s, legal(id)).await;
        assert_eq!(a.cache, "none");
        assert!(events.iter().all(|e| e.operation == "chat" && e.purpose.is_none()), "{events:#?}");
    }
    assert_eq!(store.size().0, 0, "nothing kept");
    assert_eq!(lookups("excluding", "excluded"), 2);
    let (other, _) = answer(&s, record("o1", "acme", "May I terminate the contract early?")).await;
    assert_eq!(other.cache, "none", "no legal answer was kept to reuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exact_cache_answers_first_without_an_embedding_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exact = format!("cache: {{ path: {} }}", dir.path().display());
    let (_kafka, store) = store().await;
    let s = stage(&topology("exact-first", "answer@1", "tenant", &exact), &store).await;
    answer(&s, record("d1", "acme", "Is there a student discount?")).await;
    let (again, events) = answer(&s, record("d2", "acme", "Is there a student discount?")).await;
    assert_eq!((again.cache.as_str(), again.similarity), ("exact", None));
    assert!(events.iter().all(|e| e.operation == "chat" && e.cached), "{events:#?}");
    assert_eq!(lookups("exact-first", "hit") + lookups("exact-first", "miss"), 1);
}

/// Two replicas of the stage, each with its own store on the same topic, and a third started
/// after the first two stopped: the answer one replica paid for answers the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_answers_and_a_restarted_replica_still_has_them() {
    let (kafka, first_store) = store().await;
    let settings = KafkaSettings::single_broker(kafka.bootstrap_servers(), 1);
    let open = || SemanticStore::open(&settings, TOPIC, IndexLimits::default());
    let second_store = Arc::new(open().await.expect("second replica's store"));
    let t = topology("generate", "answer@1", "tenant", "");
    let (first, second) = (stage(&t, &first_store).await, stage(&t, &second_store).await);
    let (_, events) = answer(&first, record("d1", "acme", "How reset password?")).await;
    assert_eq!(paid_chats(&events), 1);
    // The second replica learns of the entry by following the topic.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while second_store.size().0 == 0 {
        assert!(std::time::Instant::now() < deadline, "the second replica never saw the entry");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (shared, events) = answer(&second, record("d2", "acme", "How reset my password?")).await;
    assert_eq!((shared.cache.as_str(), shared.reused_from.as_deref()), ("semantic", Some("d1")));
    assert_eq!(paid_chats(&events), 0, "{events:#?}");
    drop((first, second));
    first_store.stop();
    second_store.stop();
    drop((first_store, second_store));
    // A replica started afterwards rebuilds the entries from the topic before it serves.
    let restarted_store = Arc::new(open().await.expect("restarted store"));
    let restarted = stage(&t, &restarted_store).await;
    let (kept, events) = answer(&restarted, record("d3", "acme", "How reset your password?")).await;
    assert_eq!((kept.cache.as_str(), kept.reused_from.as_deref()), ("semantic", Some("d1")));
    assert_eq!(paid_chats(&events), 0, "{events:#?}");
}
