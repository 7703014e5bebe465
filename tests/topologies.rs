//! Golden tests: every shipped topology compiles; a broken one reports all of its problems.

use std::collections::BTreeSet;
use std::path::Path;

use sluice::config::{compile, load, StageKindSpec, TopicRole};

#[test]
fn every_shipped_topology_compiles() {
    let mut count = 0;
    for entry in std::fs::read_dir("topologies").expect("topologies/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let t = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!t.stages.is_empty(), "{}", path.display());
            count += 1;
        }
    }
    assert!(count >= 2, "support-rag and backfill-embed ship");
}

#[test]
fn support_rag_chains_the_five_stages() {
    let t = load(Path::new("topologies/support-rag.yaml")).expect("compiles");
    let kinds: Vec<&str> = t.stages.iter().map(|s| s.kind.name()).collect();
    assert_eq!(kinds, ["classify", "embed", "retrieve", "generate", "review"]);
    for pair in t.stages.windows(2) {
        assert_eq!(pair[0].output, pair[1].input, "{} feeds {}", pair[0].name, pair[1].name);
    }
    let topics = t.topics();
    let role = |name: &str| topics.iter().find(|p| p.name == name).map(|p| p.role.clone());
    assert_eq!(role("support.documents"), Some(TopicRole::Input));
    assert_eq!(
        role("support-rag.generate.dlq"),
        Some(TopicRole::DeadLetter { stage: "generate".into() })
    );
    assert!(matches!(role("support-rag.generate.retry.1"), Some(TopicRole::Retry { .. })));
    assert_eq!(role("support-rag.metering"), Some(TopicRole::Metering));
}

#[test]
fn backfill_embed_uses_large_batches_and_a_deep_window() {
    let t = load(Path::new("topologies/backfill-embed.yaml")).expect("compiles");
    let s = &t.stages[0];
    let StageKindSpec::Embed { batch_size, .. } = s.kind else { panic!("embed stage") };
    assert!(batch_size >= 32);
    assert!(s.concurrency.per_partition >= 256);
}

#[test]
fn a_bad_topology_reports_every_problem_with_stage_and_field() {
    let errors =
        load(Path::new("tests/fixtures/bad-topology.yaml")).expect_err("must not compile").0;
    let found: BTreeSet<(Option<&str>, &str)> =
        errors.iter().map(|e| (e.stage.as_deref(), e.field.as_str())).collect();
    let expected: BTreeSet<(Option<&str>, &str)> = [
        (None, "kafka.partitons"),
        (None, "providers.sim.latency"),
        (None, "providers.sim.failure_rate"),
        (Some("classify"), "concurrency.per_partition"),
        (Some("classify"), "classify.labels"),
        (Some("classify"), "model.provider"),
        (Some("embed"), "retry.ladder[1]"),
        (Some("embed"), "embed.chunk_overlap"),
        (Some("embed"), "colour"),
        (Some("embed"), "input"),
        (Some("embed"), "group"),
        (Some("mystery"), "kind"),
        (None, "providers.openai.api_key"),
        (None, "models.big.fallbacks"),
        (None, "models.bigger.fallbacks"),
        (None, "prompts.answer"),
        (None, "prompts.answer.user"),
        (Some("generate"), "generate.prompt"),
        (Some("generate"), "routes[0].model"),
        (Some("generate"), "routes[1].model"),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected);
    assert!(errors.iter().all(|e| e.file.ends_with("bad-topology.yaml")));
    let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(
        text.contains("stage 'embed': field 'input': topic 'nowhere' is written by no stage"),
        "{text}"
    );
    assert!(text.contains("model 'gpt' has no price"), "{text}");
}

#[test]
fn cross_checks_catch_loops_and_shared_topics() {
    let yaml = r#"
pipeline: p
providers: { sim: { kind: simulated } }
prompts: { answer@1: { user: "{{document}}" } }
inputs: { docs: {} }
stages:
  a: { kind: generate, input: docs, output: docs, model: { provider: sim, name: m }, generate: { prompt: answer@1 } }
  b: { kind: generate, input: docs, output: x, model: { provider: sim, name: m }, generate: { prompt: answer@1 } }
  c: { kind: classify, input: x, output: x2, model: { provider: sim, name: m }, classify: { labels: [l] }, rejected_output: r }
"#;
    let errors = compile(Path::new("loop.yaml"), yaml).expect_err("invalid").0;
    let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(
        text.contains("stage 'a': field 'output': a stage must not write to its own input topic"),
        "{text}"
    );
    assert!(text.contains("topic 'docs' is written by more than one source"), "{text}");
    assert!(
        text.contains("stage 'c': field 'rejected_output': only review stages have this output"),
        "{text}"
    );
}

#[test]
fn yaml_syntax_errors_are_reported_not_panicked() {
    let errors = compile(Path::new("broken.yaml"), "stages: [unclosed").expect_err("invalid").0;
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.starts_with("not valid YAML"));
}
