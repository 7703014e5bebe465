//! The KEDA ScaledObjects: what they watch (the stage's group on its input topic, never past its
//! partitions, persistent lag excluded) and how often they may scale. Every scaling step is a
//! consumer-group rebalance, so the HPA behavior must filter lag spikes and bound the steps per
//! period; deploy/kubernetes/README.md derives the worst case per hour from these bounds.

use std::time::Duration;

use serde_yaml_ng::Value;
use sluice::config::{StageSpec, Topology};

use crate::checks::{at, int_at, partitions, str_at, Manifest};

/// The HPA controller's sync period (kube-controller-manager
/// `--horizontal-pod-autoscaler-sync-period`, default 15 s): a lag sample is up to this old.
const HPA_SYNC: Duration = Duration::from_secs(15);
/// The longest a member that stopped without leaving is waited out: a KIP-848 group's
/// `group.consumer.session.timeout.ms` (broker default 45 s, which clients cannot lower); the
/// classic protocol's, as sluice sets it, is 10 s.
const LONGEST_SESSION: Duration = Duration::from_secs(45);
/// Scale-down stabilization: at least the HPA's own default (300 s).
const MIN_DOWN_WINDOW: Duration = Duration::from_secs(300);
/// Scale-up steps (rebalances) an hour that the policies may allow: one a minute.
const MAX_UPS_PER_HOUR: i64 = 60;
/// Scale-down steps an hour that the policies may allow: one every two minutes.
const MAX_DOWNS_PER_HOUR: i64 = 30;

pub fn scaled_object(
    spec: &StageSpec,
    t: &Topology,
    s: &Manifest,
    workload: Option<&Manifest>,
    bootstrap: Option<&str>,
    problems: &mut Vec<String>,
) {
    let mut bad =
        |what: String| problems.push(format!("{}: ScaledObject {}: {what}", s.file, s.name));
    let target = at(&s.doc, &["spec", "scaleTargetRef"]);
    // KEDA's defaults: apps/v1, Deployment.
    let kind = target.and_then(|t| str_at(t, &["kind"])).unwrap_or("Deployment");
    let name = target.and_then(|t| str_at(t, &["name"]));
    if let Some(w) = workload.filter(|w| (w.kind.as_str(), Some(w.name.as_str())) != (kind, name)) {
        bad(format!("scaleTargetRef ({kind} {name:?}) is not the stage's {} {}", w.kind, w.name));
    }
    let partitions = partitions(t, spec);
    let max = int_at(&s.doc, &["spec", "maxReplicaCount"]);
    let min = int_at(&s.doc, &["spec", "minReplicaCount"]).unwrap_or(0);
    if !max.zip(partitions).is_some_and(|(max, p)| max >= min && max <= i64::from(p)) {
        bad(format!(
            "maxReplicaCount {max:?} must be set, at least minReplicaCount {min} and at most the \
             {partitions:?} partitions of {}",
            spec.input
        ));
    }
    behavior(spec, s, min, &mut bad);
    let triggers = at(&s.doc, &["spec", "triggers"]).and_then(Value::as_sequence);
    let kafka: Vec<&Value> = triggers
        .map(|t| t.iter().filter(|t| str_at(t, &["type"]) == Some("kafka")).collect())
        .unwrap_or_default();
    let [trigger] = kafka.as_slice() else {
        bad(format!("{} kafka triggers (want one)", kafka.len()));
        return;
    };
    let meta = |key: &str| str_at(trigger, &["metadata", key]);
    if meta("consumerGroup") != Some(spec.group.as_str()) {
        bad(format!(
            "consumerGroup {:?} is not the stage's group {}",
            meta("consumerGroup"),
            spec.group
        ));
    }
    if meta("topic") != Some(spec.input.as_str()) {
        bad(format!("topic {:?} is not the stage's input {}", meta("topic"), spec.input));
    }
    if meta("excludePersistentLag") != Some("true") {
        bad("excludePersistentLag must be \"true\": a stuck partition must not scale the group"
            .into());
    }
    if meta("lagThreshold").and_then(|l| l.parse::<u64>().ok()).is_none_or(|l| l == 0) {
        bad(format!("lagThreshold {:?} is not a positive integer", meta("lagThreshold")));
    }
    let reset = t.kafka.consumer.get("auto.offset.reset").map_or("earliest", String::as_str);
    if meta("offsetResetPolicy") != Some(reset) {
        bad(format!(
            "offsetResetPolicy {:?} is not the consumers' {reset}",
            meta("offsetResetPolicy")
        ));
    }
    if meta("bootstrapServers").is_none() || meta("bootstrapServers") != bootstrap {
        bad(format!(
            "bootstrapServers {:?} are not the pods' KAFKA_BOOTSTRAP_SERVERS {bootstrap:?}",
            meta("bootstrapServers")
        ));
    }
}

/// The HPA behavior KEDA hands on: a scale-up stabilization window longer than the lag one
/// rebalance can build (the stage's drain, then a session timeout, then a stale sample), and
/// explicit `Pods` policies that bound the steps per hour in each direction.
fn behavior(spec: &StageSpec, s: &Manifest, min: i64, bad: &mut impl FnMut(String)) {
    if min < 1 {
        bad(format!(
            "minReplicaCount {min} scales to zero through KEDA's cooldownPeriod, outside the HPA \
             behavior that bounds the rebalances"
        ));
    }
    let rules = ["spec", "advanced", "horizontalPodAutoscalerConfig", "behavior"];
    let up_window = spec.shutdown_grace + LONGEST_SESSION + HPA_SYNC;
    // (direction, the HPA's default window, the least window wanted, the most steps an hour)
    let directions = [
        ("scaleUp", 0, up_window, MAX_UPS_PER_HOUR),
        ("scaleDown", 300, MIN_DOWN_WINDOW, MAX_DOWNS_PER_HOUR),
    ];
    for (direction, default_window, window, per_hour) in directions {
        let Some(rule) = at(&s.doc, &rules).and_then(|b| b.get(direction)) else {
            bad(format!(
                "sets no {direction} behavior: the HPA's default {} every 15 s, each step a \
                 rebalance",
                if direction == "scaleUp" { "adds up to 4 pods or 100%" } else { "removes 100%" }
            ));
            continue;
        };
        let stabilization = int_at(rule, &["stabilizationWindowSeconds"]).unwrap_or(default_window);
        if stabilization < 0 || (stabilization as u64) < window.as_secs() {
            bad(format!(
                "{direction}.stabilizationWindowSeconds {stabilization} is under {} s{}",
                window.as_secs(),
                if direction == "scaleUp" {
                    format!(
                        " (shutdown_grace {:?} + a {LONGEST_SESSION:?} session + a {HPA_SYNC:?} \
                         sample): the lag one rebalance builds would scale the group again",
                        spec.shutdown_grace
                    )
                } else {
                    String::new()
                }
            ));
        }
        let policies = rule.get("policies").and_then(Value::as_sequence);
        // Each step changes the count by at least one pod, so a `Pods` policy of `value` per
        // `periodSeconds` allows at most `value` steps per period; several policies, at most the
        // sum (whichever selectPolicy picks).
        let steps = policies.filter(|p| !p.is_empty()).and_then(|p| {
            p.iter().try_fold(0, |sum, p| {
                let value = int_at(p, &["value"]).filter(|v| *v > 0)?;
                let period = int_at(p, &["periodSeconds"]).filter(|s| *s > 0)?;
                (str_at(p, &["type"]) == Some("Pods")).then(|| sum + value * 3600 / period)
            })
        });
        if steps.is_none_or(|n| n > per_hour) {
            bad(format!(
                "{direction}.policies must be `Pods` policies allowing at most {per_hour} steps \
                 (rebalances) an hour; they allow {}",
                steps.map_or("an unbounded number".into(), |n| n.to_string())
            ));
        }
    }
}
