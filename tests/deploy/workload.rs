//! A stage's workload: a Deployment (dynamic group members) or a StatefulSet (static members,
//! `SLUICE_GROUP_INSTANCE_ID` from the pod name). Its pods run the stage, outlive its drain, serve
//! probes and metrics on the port they expose; its replica count belongs to a ScaledObject or is
//! fixed within the input's partitions.

use std::net::SocketAddr;
use std::time::Duration;

use serde_yaml_ng::Value;
use sluice::config::{StageSpec, Topology};

use crate::checks::{at, int_at, partitions, str_at, Manifest, TOPOLOGY};

/// After the drain, the runner flushes the producer for up to this long before it exits.
const PRODUCER_FLUSH: Duration = Duration::from_secs(10);
/// `sluice run --instance-id`'s variable: set, the member is static (KIP-345).
const INSTANCE_ID: &str = "SLUICE_GROUP_INSTANCE_ID";

/// Checks the workload `w`; returns the bootstrap servers its pods use.
pub fn check(
    spec: &StageSpec,
    t: &Topology,
    w: &Manifest,
    autoscaled: bool,
    manifests: &[Manifest],
    labels: &Value,
    problems: &mut Vec<String>,
) -> Option<String> {
    let mut bad =
        |what: String| problems.push(format!("{}: {} {}: {what}", w.file, w.kind, w.name));
    if at(&w.doc, &["spec", "selector", "matchLabels"]) != Some(labels) {
        bad("selector.matchLabels are not the stage's labels (app, pipeline, stage)".into());
    }
    if at(&w.doc, &["spec", "template", "metadata", "labels"]) != Some(labels) {
        bad("the pod template's labels are not the selector's".into());
    }
    let replicas = at(&w.doc, &["spec", "replicas"]);
    let partitions = partitions(t, spec);
    match (autoscaled, replicas.and_then(Value::as_i64)) {
        (true, _) if replicas.is_some() => {
            bad("sets replicas, which the ScaledObject's autoscaler owns".into())
        }
        (false, n) if !n.zip(partitions).is_some_and(|(n, p)| n >= 1 && n <= i64::from(p)) => {
            bad(format!(
                "replicas {n:?}: no ScaledObject scales it, so it must set between 1 and the \
                 {partitions:?} partitions of {}",
                spec.input
            ))
        }
        _ => {}
    }
    let pod = at(&w.doc, &["spec", "template", "spec"])?;
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
    membership(w, c, manifests, labels, &mut bad);
    container(spec, w, c, &mut bad)
}

/// The `env` entry named `key`.
fn env<'a>(c: &'a Value, key: &str) -> Option<&'a Value> {
    at(c, &["env"])?.as_sequence()?.iter().find(|e| str_at(e, &["name"]) == Some(key))
}

/// A Deployment's members are dynamic: its pod names change on every rollout, so a static id
/// taken from them would never come back, and each member that left would be waited out for a
/// session timeout. A StatefulSet's are static, each with its own pod's name.
fn membership(
    w: &Manifest,
    c: &Value,
    manifests: &[Manifest],
    labels: &Value,
    bad: &mut impl FnMut(String),
) {
    let args = at(c, &["args"]).and_then(Value::as_sequence);
    if args.is_some_and(|a| a.iter().any(|a| a.as_str() == Some("--instance-id"))) {
        bad("names --instance-id in the pod template: every replica would share the id and \
             fence the others; take SLUICE_GROUP_INSTANCE_ID from the pod name"
            .into());
    }
    let id = env(c, INSTANCE_ID);
    if w.kind == "Deployment" {
        if id.is_some() {
            bad(format!(
                "sets {INSTANCE_ID}: a Deployment's pod names change on every rollout, so a \
                 static member never comes back and each one that left waits out a session \
                 timeout; use a StatefulSet"
            ));
        }
        return;
    }
    if id.and_then(|e| str_at(e, &["valueFrom", "fieldRef", "fieldPath"])) != Some("metadata.name")
    {
        bad(format!(
            "{INSTANCE_ID} must come from the pod name (valueFrom.fieldRef metadata.name)"
        ));
    }
    if str_at(&w.doc, &["spec", "podManagementPolicy"]) != Some("Parallel") {
        bad("podManagementPolicy must be Parallel: OrderedReady starts and stops members one at \
             a time, one rebalance or session timeout after another"
            .into());
    }
    let service = str_at(&w.doc, &["spec", "serviceName"]);
    let headless =
        manifests.iter().find(|m| m.kind == "Service" && Some(m.name.as_str()) == service);
    if !headless.is_some_and(|s| {
        str_at(&s.doc, &["spec", "clusterIP"]) == Some("None")
            && at(&s.doc, &["spec", "selector"]) == Some(labels)
    }) {
        bad(format!(
            "serviceName {service:?} names no headless Service (clusterIP: None) selecting the \
             stage's pods"
        ));
    }
}

/// The sluice container runs the stage and serves probes and metrics on the port it exposes;
/// returns the bootstrap servers it uses.
fn container(
    spec: &StageSpec,
    w: &Manifest,
    c: &Value,
    bad: &mut impl FnMut(String),
) -> Option<String> {
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
    let value = |key: &str| env(c, key).and_then(|e| str_at(e, &["value"]));
    // `sluice run` reads --metrics-addr, or SLUICE_METRICS_ADDR (clap's `env`).
    let addr = arg("--metrics-addr").copied().or_else(|| value("SLUICE_METRICS_ADDR"));
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
        str_at(&w.doc, &["spec", "template", "metadata", "annotations", "prometheus.io/port"]);
    if scraped.is_some_and(|p| p != port.to_string()) {
        bad(format!("prometheus.io/port {scraped:?} is not the metrics port {port}"));
    }
    value("KAFKA_BOOTSTRAP_SERVERS").map(str::to_owned)
}
