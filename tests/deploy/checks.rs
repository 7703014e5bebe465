//! The checks: everything wrong with the manifests under [`DIR`] for a compiled topology, one
//! line per problem.

use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::Value;
use sluice::config::{compile, StageSpec, Topology};

use crate::{scaling, workload};

pub const DIR: &str = "deploy/kubernetes";
pub const TOPOLOGY: &str = "topologies/support-rag.yaml";
/// The kinds that run a stage's pods.
const WORKLOADS: [&str; 2] = ["Deployment", "StatefulSet"];

/// (file name, text) of every YAML file under [`DIR`].
pub fn files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(DIR)
        .expect("deploy/kubernetes exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("readable"))
        })
        .collect();
    files.sort();
    files
}

pub fn topology(text: &str) -> Topology {
    compile(Path::new(TOPOLOGY), text).expect("the shipped topology compiles")
}

pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(*key))
}

pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

pub fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

pub struct Manifest {
    pub file: String,
    pub kind: String,
    pub name: String,
    pub doc: Value,
}

/// Every document of every file; a file that does not parse, or a document without a kind or a
/// name, is a problem.
fn parse(files: &[(String, String)], problems: &mut Vec<String>) -> Vec<Manifest> {
    let mut out = Vec::new();
    for (file, text) in files {
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let doc = match Value::deserialize(doc) {
                Ok(Value::Null) => continue,
                Ok(doc) => doc,
                Err(e) => {
                    problems.push(format!("{file}: does not parse: {e}"));
                    break;
                }
            };
            let kind = str_at(&doc, &["kind"]).unwrap_or_default().to_owned();
            let name = str_at(&doc, &["metadata", "name"]).unwrap_or_default().to_owned();
            if kind.is_empty() || str_at(&doc, &["apiVersion"]).is_none() {
                problems.push(format!("{file}: a document without apiVersion or kind"));
            } else if name.is_empty() && kind != "Kustomization" {
                problems.push(format!("{file}: a {kind} without metadata.name"));
            }
            out.push(Manifest { file: file.clone(), kind, name, doc });
        }
    }
    out
}

/// Everything wrong with the manifests for `t`, one line each.
pub fn check(files: &[(String, String)], t: &Topology) -> Vec<String> {
    let mut problems = Vec::new();
    let manifests = parse(files, &mut problems);
    kustomization(files, &manifests, &mut problems);
    for kind in WORKLOADS.into_iter().chain(["Service", "ScaledObject", "PodDisruptionBudget"]) {
        for m in manifests.iter().filter(|m| m.kind == kind) {
            if !t.stages.iter().any(|s| m.name == name_of(s)) {
                problems
                    .push(format!("{}: {kind} {} deploys no stage of {TOPOLOGY}", m.file, m.name));
            }
        }
    }
    for spec in &t.stages {
        stage(spec, t, &manifests, &mut problems);
    }
    problems
}

pub fn name_of(spec: &StageSpec) -> String {
    format!("sluice-{}", spec.name)
}

/// The partitions of the stage's input topic.
pub fn partitions(t: &Topology, spec: &StageSpec) -> Option<i32> {
    t.topics().into_iter().find(|p| p.name == spec.input).map(|p| p.partitions)
}

/// `kubectl apply -k` applies what the kustomization lists: every other file.
fn kustomization(files: &[(String, String)], manifests: &[Manifest], problems: &mut Vec<String>) {
    let Some(k) = manifests.iter().find(|m| m.kind == "Kustomization") else {
        problems.push("no kustomization.yaml".into());
        return;
    };
    let listed: Vec<&str> = at(&k.doc, &["resources"])
        .and_then(Value::as_sequence)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (file, _) in files.iter().filter(|(f, _)| *f != k.file) {
        if !listed.contains(&file.as_str()) {
            problems.push(format!("{}: kustomization does not list {file}", k.file));
        }
    }
}

fn one<'a>(
    manifests: &'a [Manifest],
    kind: &str,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<&'a Manifest> {
    let found: Vec<&Manifest> =
        manifests.iter().filter(|m| m.kind == kind && m.name == name).collect();
    if found.len() != 1 {
        problems.push(format!("{} {kind} named {name} (want exactly one)", found.len()));
    }
    found.first().copied()
}

fn stage(spec: &StageSpec, t: &Topology, manifests: &[Manifest], problems: &mut Vec<String>) {
    let name = name_of(spec);
    let labels = Value::Mapping(
        [("app", "sluice"), ("pipeline", t.pipeline.as_str()), ("stage", spec.name.as_str())]
            .into_iter()
            .map(|(k, v)| (Value::from(k), Value::from(v)))
            .collect(),
    );
    let workloads: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| WORKLOADS.contains(&m.kind.as_str()) && m.name == name)
        .collect();
    if workloads.len() != 1 {
        problems.push(format!(
            "{} workloads (Deployment or StatefulSet) named {name} (want exactly one)",
            workloads.len()
        ));
    }
    let workload = workloads.first().copied();
    // A ScaledObject owns the replica count, or the workload fixes it.
    let scaled: Vec<&Manifest> =
        manifests.iter().filter(|m| m.kind == "ScaledObject" && m.name == name).collect();
    if scaled.len() > 1 {
        problems.push(format!("{} ScaledObject named {name} (want at most one)", scaled.len()));
    }
    let scaled = scaled.first().copied();
    let pdb = one(manifests, "PodDisruptionBudget", &name, problems);
    for m in [workload, scaled, pdb].into_iter().flatten() {
        if at(&m.doc, &["metadata", "labels"]) != Some(&labels) {
            problems.push(format!(
                "{}: {} {name}: metadata.labels are not the stage's (app, pipeline, stage)",
                m.file, m.kind
            ));
        }
    }
    let bootstrap = workload
        .and_then(|w| workload::check(spec, t, w, scaled.is_some(), manifests, &labels, problems));
    if let Some(pdb) = pdb {
        if at(&pdb.doc, &["spec", "selector", "matchLabels"]) != Some(&labels) {
            problems.push(format!(
                "{}: PodDisruptionBudget {name}: selector is not the stage's pods'",
                pdb.file
            ));
        }
        if int_at(&pdb.doc, &["spec", "maxUnavailable"]).is_none_or(|n| n < 1) {
            problems.push(format!(
                "{}: PodDisruptionBudget {name}: maxUnavailable must be at least 1 (a minAvailable \
                 of the replica count would block every drain)",
                pdb.file
            ));
        }
    }
    if let Some(s) = scaled {
        scaling::scaled_object(spec, t, s, workload, bootstrap.as_deref(), problems);
    }
}
