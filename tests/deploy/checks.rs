//! The checks: everything wrong with the manifests under [`DIR`] for a compiled topology, one
//! line per problem.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;
use sluice::config::{compile, StageSpec, Topology};

use crate::scaling;

pub const DIR: &str = "deploy/kubernetes";
pub const TOPOLOGY: &str = "topologies/support-rag.yaml";
/// After the drain, the runner flushes the producer for up to this long before it exits.
const PRODUCER_FLUSH: Duration = Duration::from_secs(10);

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
    for kind in ["Deployment", "ScaledObject", "PodDisruptionBudget"] {
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
    let deployment = one(manifests, "Deployment", &name, problems);
    let scaled = one(manifests, "ScaledObject", &name, problems);
    let pdb = one(manifests, "PodDisruptionBudget", &name, problems);
    for m in [deployment, scaled, pdb].into_iter().flatten() {
        if at(&m.doc, &["metadata", "labels"]) != Some(&labels) {
            problems.push(format!(
                "{}: {} {name}: metadata.labels are not the stage's (app, pipeline, stage)",
                m.file, m.kind
            ));
        }
    }
    let bootstrap = deployment.and_then(|d| self::deployment(spec, d, &labels, problems));
    if let Some(pdb) = pdb {
        if at(&pdb.doc, &["spec", "selector", "matchLabels"]) != Some(&labels) {
            problems.push(format!(
                "{}: PodDisruptionBudget {name}: selector is not the Deployment's",
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
        scaling::scaled_object(spec, t, s, bootstrap.as_deref(), problems);
    }
}

/// Checks the Deployment; returns the bootstrap servers its pods use.
fn deployment(
    spec: &StageSpec,
    d: &Manifest,
    labels: &Value,
    problems: &mut Vec<String>,
) -> Option<String> {
    let mut bad =
        |what: String| problems.push(format!("{}: Deployment {}: {what}", d.file, d.name));
    if at(&d.doc, &["spec", "selector", "matchLabels"]) != Some(labels) {
        bad("selector.matchLabels are not the stage's labels (app, pipeline, stage)".into());
    }
    if at(&d.doc, &["spec", "template", "metadata", "labels"]) != Some(labels) {
        bad("the pod template's labels are not the selector's".into());
    }
    if at(&d.doc, &["spec", "replicas"]).is_some() {
        bad("sets replicas, which the ScaledObject's autoscaler owns".into());
    }
    let pod = at(&d.doc, &["spec", "template", "spec"])?;
    let grace = Duration::from_secs(
        int_at(pod, &["terminationGracePeriodSeconds"]).unwrap_or(30).max(0) as u64,
    );
    if grace <= spec.shutdown_grace || grace < spec.shutdown_grace + PRODUCER_FLUSH {
        bad(format!(
            "terminationGracePeriodSeconds {grace:?} must exceed shutdown_grace {:?} plus the \
             producer flush {PRODUCER_FLUSH:?}",
            spec.shutdown_grace
        ));
    }
    let containers = at(pod, &["containers"]).and_then(Value::as_sequence);
    let Some(c) =
        containers.and_then(|c| c.iter().find(|c| str_at(c, &["name"]) == Some("sluice")))
    else {
        bad("no container named sluice".into());
        return None;
    };
    let args: Vec<&str> = at(c, &["args"])
        .and_then(Value::as_sequence)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let arg = |flag: &str| args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1));
    if args.first() != Some(&"run") || arg("--stage") != Some(&spec.name.as_str()) {
        bad(format!("args {args:?} do not run `--stage {}`", spec.name));
    }
    if arg("--topology") != Some(&TOPOLOGY) {
        bad(format!("args {args:?} do not name --topology {TOPOLOGY}"));
    }
    let env = |key: &str| {
        at(c, &["env"])?
            .as_sequence()?
            .iter()
            .find(|e| str_at(e, &["name"]) == Some(key))
            .and_then(|e| str_at(e, &["value"]))
    };
    // `sluice run` reads --metrics-addr, or SLUICE_METRICS_ADDR (clap's `env`).
    let addr = arg("--metrics-addr").copied().or_else(|| env("SLUICE_METRICS_ADDR"));
    let Some(port) = addr.and_then(|a| a.parse::<SocketAddr>().ok()).map(|a| i64::from(a.port()))
    else {
        bad(format!("serves no metrics: --metrics-addr / SLUICE_METRICS_ADDR is {addr:?}"));
        return None;
    };
    let ports = at(c, &["ports"]).and_then(Value::as_sequence);
    let exposed =
        ports.and_then(|p| p.iter().find(|p| int_at(p, &["containerPort"]) == Some(port)));
    if exposed.is_none() {
        bad(format!("the container does not expose the metrics port {port}"));
    }
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = at(c, &[probe, "httpGet"]);
        let probe_port = get.and_then(|g| g.get("port")).and_then(|p| match p {
            Value::Number(n) => n.as_i64(),
            Value::String(name) => ports?
                .iter()
                .find(|p| str_at(p, &["name"]) == Some(name))
                .and_then(|p| int_at(p, &["containerPort"])),
            _ => None,
        });
        if get.and_then(|g| str_at(g, &["path"])) != Some(path) || probe_port != Some(port) {
            bad(format!("{probe} must GET {path} on the metrics port {port}"));
        }
    }
    let scraped =
        str_at(&d.doc, &["spec", "template", "metadata", "annotations", "prometheus.io/port"]);
    if scraped.is_some_and(|p| p != port.to_string()) {
        bad(format!("prometheus.io/port {scraped:?} is not the metrics port {port}"));
    }
    env("KAFKA_BOOTSTRAP_SERVERS").map(str::to_owned)
}
