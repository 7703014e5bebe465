use std::path::Path;
use std::time::Duration;

use crate::config::{
    compile, ConfigError, Exclusion, SemanticCacheSpec, SemanticScope, TextPart, TopicRole,
    Topology,
};

/// A generate stage `answer` with `cache` lines under it, beside an embedding model `minilm`
/// (OpenAI-compatible, priced), a model `claude` on Anthropic and a rule-based classify stage
/// `triage` with `triage` lines under it.
fn topology(cache: &str, triage: &str) -> String {
    format!(
        r#"
pipeline: p
providers:
  sim: {{ kind: simulated }}
  local: {{ kind: openai, base_url: "http://127.0.0.1:9/v1" }}
  claude: {{ kind: anthropic, api_key_env: ANTHROPIC_API_KEY }}
models:
  small: {{ provider: sim, name: sim-small }}
  minilm: {{ provider: local, name: all-minilm-l6-v2 }}
  unpriced: {{ provider: local, name: bge-small }}
  claude: {{ provider: claude, name: claude-haiku }}
prices:
  set_on: 2026-11-01
  models:
    minilm: {{ input: 0.01, output: 0 }}
    claude: {{ input: 1, output: 5 }}
prompts:
  answer@1: {{ user: "{{{{document}}}}" }}
inputs: {{ docs: {{}} }}
stages:
  triage:
    kind: classify
    input: docs
    output: labelled
    classify: {{ labels: [legal, other], rules: {{ legal: [contract] }} }}
{triage}
  answer:
    kind: generate
    input: labelled
    output: answers
    model: small
    generate: {{ prompt: answer@1 }}
{cache}
"#
    )
}

fn compiled(cache: &str) -> Topology {
    let yaml = topology(cache, "");
    compile(Path::new("t.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn problems(cache: &str, triage: &str) -> Vec<ConfigError> {
    match compile(Path::new("t.yaml"), &topology(cache, triage)) {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

fn spec(t: &Topology) -> &SemanticCacheSpec {
    t.stage("answer").and_then(|s| s.semantic_cache.as_ref()).expect("a semantic cache")
}

#[test]
fn defaults_are_the_measured_threshold_tenant_scope_a_week_and_the_documents_variable_text() {
    let t = compiled("    cache: { semantic: { embedding: minilm } }");
    let s = spec(&t);
    assert_eq!((s.threshold, s.embedding.as_str()), (0.94, "minilm"));
    assert_eq!(s.scope, SemanticScope::Tenant);
    assert_eq!(s.ttl, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(s.text, [TextPart::Document, TextPart::Passages]);
    assert_eq!(s.exclude, Exclusion::default());
    assert_eq!(t.semantic_cache_topic.as_deref(), Some("p.semantic-cache"));
}

#[test]
fn every_field_is_read() {
    let t = compiled(
        r#"    cache:
      semantic:
        threshold: 1
        embedding: minilm
        scope: global
        ttl: 36h
        text: [label, document]
        exclude: { labels: [legal], metadata: { confidential: ["yes"] } }"#,
    );
    let s = spec(&t);
    assert_eq!((s.threshold, s.scope), (1.0, SemanticScope::Global));
    assert_eq!(s.ttl, Duration::from_secs(36 * 3600));
    assert_eq!(s.text, [TextPart::Label, TextPart::Document]);
    let metadata = |k: &str, v: &str| std::collections::BTreeMap::from([(k.into(), v.into())]);
    assert!(s.exclude.excludes(Some("legal"), &metadata("x", "y")));
    assert!(s.exclude.excludes(Some("billing"), &metadata("confidential", "yes")));
    assert!(!s.exclude.excludes(Some("billing"), &metadata("confidential", "no")));
    assert!(!s.exclude.excludes(None, &Default::default()));
}

#[test]
fn the_entries_topic_is_planned_compacted_only_when_a_stage_has_a_semantic_cache() {
    let t = compiled("    cache: { semantic: { threshold: 0.9, embedding: minilm } }");
    let topics = t.topics();
    let planned: Vec<_> = topics.iter().filter(|t| t.role == TopicRole::SemanticCache).collect();
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].name, "p.semantic-cache");
    assert_eq!(planned[0].role.configs(), &[("cleanup.policy", "compact")]);
    assert_eq!(planned[0].schema, None, "entries are sluice's own binary, not Avro");
    assert!(!crate::pipeline::schema_pairs(&t).iter().any(|(n, _)| n == "p.semantic-cache"));

    let without = compiled("");
    assert_eq!(without.semantic_cache_topic, None);
    assert!(!without.topics().iter().any(|t| t.role == TopicRole::SemanticCache));
}

#[test]
fn every_problem_of_the_block_is_reported_together() {
    let found = problems(
        r#"    cache:
      semantic:
        threshold: 1.5
        embedding: claude
        scope: everyone
        ttl: 0s
        text: [document, instructions, document]
        exclude: { labels: [legal], tenants: [acme] }
      exact: true"#,
        "",
    );
    let at = |field: &str, says: &str| {
        assert!(
            found.iter().any(|p| p.stage.as_deref() == Some("answer")
                && p.field == field
                && p.message.contains(says)),
            "no '{says}' at {field}: {found:#?}"
        );
    };
    at("cache.semantic.threshold", "in (0, 1]");
    at("cache.semantic.scope", "unknown scope 'everyone'");
    at("cache.semantic.ttl", "greater than zero");
    at("cache.semantic.text", "unknown part 'instructions'");
    at("cache.semantic.text", "'document' is listed twice");
    at("cache.semantic.exclude.tenants", "unknown key");
    at("cache.exact", "unknown key");
    assert_eq!(found.len(), 7, "{found:#?}");
}

#[test]
fn the_embedding_model_must_exist_embed_and_have_a_price() {
    let only = |cache: &str, says: &str| {
        let found = problems(cache, "");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].field, "cache.semantic.embedding", "{found:#?}");
        assert!(found[0].message.contains(says), "{}", found[0].message);
    };
    only("    cache: { semantic: { threshold: 0.9, embedding: nope } }", "unknown model 'nope'");
    only("    cache: { semantic: { threshold: 0.9, embedding: claude } }", "no embeddings API");
    only("    cache: { semantic: { threshold: 0.9, embedding: unpriced } }", "has no price");
    let missing = problems("    cache: { semantic: { threshold: 0 } }", "");
    let fields: Vec<&str> = missing.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["cache.semantic.threshold", "cache.semantic.embedding"], "{missing:#?}");
    let no_embedding = problems("    cache: { semantic: {} }", "");
    let fields: Vec<_> = no_embedding.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["cache.semantic.embedding"],
        "the threshold has a default: {no_embedding:#?}"
    );
}

#[test]
fn only_generate_stages_can_have_one() {
    let found = problems("", "    cache: { semantic: { threshold: 0.9, embedding: minilm } }");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        (found[0].stage.as_deref(), found[0].field.as_str()),
        (Some("triage"), "cache.semantic")
    );
    assert!(found[0].message.contains("not classify stages"), "{}", found[0].message);
}
