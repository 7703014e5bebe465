//! The workload shapes the checks accept and refuse beyond the shipped ones: a StatefulSet scaled
//! by a ScaledObject that targets it, a Deployment with a fixed size, and a stage run by two
//! workloads or by one that nothing sizes.

use crate::checks::{check, files, topology};
use crate::shipped_topology;

/// The document of `kind` in `file` of `files`.
fn document(files: &[(String, String)], file: &str, kind: &str) -> String {
    let (_, text) = files.iter().find(|(f, _)| f == file).expect("file exists");
    let kind = format!("\nkind: {kind}\n");
    text.split("\n---\n").find(|d| d.contains(&kind)).expect("document of that kind").to_owned()
}

/// `files` with `text` in place of `file`'s.
fn with(files: &[(String, String)], file: &str, text: String) -> Vec<(String, String)> {
    let mut files = files.to_vec();
    files.iter_mut().find(|(f, _)| f == file).expect("file exists").1 = text;
    files
}

const GENERATE: &str = "support-rag-generate.yaml";

/// The generate file with `replicas` dropped and embed's ScaledObject, renamed, appended with
/// `target_kind` (none: KEDA's default, Deployment).
fn generate_autoscaled(keep_replicas: bool, target_kind: Option<&str>) -> Vec<(String, String)> {
    let files = files();
    let scaler = document(&files, "support-rag-embed.yaml", "ScaledObject")
        .replace("embed", "generate")
        .replace("support.classified", "support.retrieved");
    let target = "  scaleTargetRef:\n    name: sluice-generate\n";
    assert_eq!(scaler.matches(target).count(), 1, "{scaler}");
    let scaler = match target_kind {
        Some(kind) => scaler.replace(target, &format!("{target}    kind: {kind}\n")),
        None => scaler,
    };
    let (_, text) = files.iter().find(|(f, _)| f == GENERATE).expect("generate file");
    let mut text = text.clone();
    if !keep_replicas {
        assert_eq!(text.matches("  replicas: 3\n").count(), 1);
        text = text.replace("  replicas: 3\n", "");
    }
    with(&files, GENERATE, format!("{text}---\n{scaler}\n"))
}

#[test]
fn a_statefulset_may_be_scaled_by_a_scaled_object_that_targets_it() {
    let t = topology(&shipped_topology());
    let problems = check(&generate_autoscaled(false, Some("StatefulSet")), &t);
    assert!(problems.is_empty(), "{problems:#?}");

    let problems = check(&generate_autoscaled(false, None), &t);
    let wrong_target = "scaleTargetRef (Deployment Some(\"sluice-generate\")) is not the stage's \
                        StatefulSet sluice-generate";
    assert!(problems.iter().any(|p| p.contains(wrong_target)), "{problems:#?}");

    let problems = check(&generate_autoscaled(true, Some("StatefulSet")), &t);
    let owned =
        "StatefulSet sluice-generate: sets replicas, which the ScaledObject's autoscaler owns";
    assert!(problems.iter().any(|p| p.contains(owned)), "{problems:#?}");
}

#[test]
fn a_stage_runs_in_exactly_one_workload_that_something_sizes() {
    let t = topology(&shipped_topology());
    let files = files();
    // generate's StatefulSet and a Deployment beside it: two sets of members in one group.
    let deployment =
        document(&files, "support-rag-embed.yaml", "Deployment").replace("embed", "generate");
    let (_, text) = files.iter().find(|(f, _)| f == GENERATE).expect("generate file");
    let doubled = with(&files, GENERATE, format!("{text}---\n{deployment}\n"));
    let problems = check(&doubled, &t);
    assert!(
        problems.iter().any(|p| p.contains(
            "2 workloads (Deployment or StatefulSet) named sluice-generate (want exactly one)"
        )),
        "{problems:#?}"
    );

    // embed without its ScaledObject: nothing sizes the Deployment, until it fixes replicas.
    let embed = "support-rag-embed.yaml";
    let (_, text) = files.iter().find(|(f, _)| f == embed).expect("embed file");
    let scaler = document(&files, embed, "ScaledObject");
    let unscaled = text.replace(&format!("{scaler}\n---\n"), "");
    assert_ne!(&unscaled, text, "the ScaledObject was removed");
    let problems = check(&with(&files, embed, unscaled.clone()), &t);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Deployment sluice-embed: replicas None: no ScaledObject")),
        "{problems:#?}"
    );
    let twice = format!("{text}---\n{scaler}\n");
    let problems = check(&with(&files, embed, twice), &t);
    assert!(
        problems.iter().any(|p| p.contains("2 ScaledObject named sluice-embed (want at most one)")),
        "{problems:#?}"
    );
    let fixed = unscaled.replacen("spec:\n", "spec:\n  replicas: 2\n", 1);
    let problems = check(&with(&files, embed, fixed), &t);
    assert!(problems.is_empty(), "{problems:#?}");
}
