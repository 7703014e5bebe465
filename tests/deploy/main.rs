//! The Kubernetes manifests under `deploy/kubernetes/` against the topology they deploy
//! (`topologies/support-rag.yaml`, compiled): every stage has one workload (a Deployment of
//! dynamic members, or a StatefulSet of static members named after their pods), a
//! PodDisruptionBudget, and either a KEDA ScaledObject or a fixed size, all with matching names
//! and labels; the ScaledObject watches the stage's group on its input topic, never scales past
//! the topic's partitions, ignores persistent lag, and bounds its steps (each a rebalance) the way
//! the README says; the pod outlives the stage's shutdown grace; the probes ask `/healthz` and
//! `/readyz` on the port the container exposes and serves its metrics on. Each check is shown to
//! bite by breaking it in a copy of the files.

mod checks;
mod scaling;
mod variants;
mod workload;
mod worst_case;

use checks::{check, files, topology, TOPOLOGY};

fn shipped_topology() -> String {
    std::fs::read_to_string(TOPOLOGY).expect("shipped topology")
}

#[test]
fn the_manifests_deploy_every_stage_of_the_topology_consistently() {
    let t = topology(&shipped_topology());
    assert_eq!(t.stages.len(), 5, "classify, embed, retrieve, generate, review");
    let problems = check(&files(), &t);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `files()` with `from` replaced by `to` in `file` (exactly once: the break must land).
fn broken(file: &str, from: &str, to: &str) -> Vec<(String, String)> {
    let mut files = files();
    let (_, text) = files.iter_mut().find(|(f, _)| f == file).expect("file exists");
    assert_eq!(text.matches(from).count(), 1, "{from:?} occurs once in {file}");
    *text = text.replacen(from, to, 1);
    files
}

#[test]
fn each_check_bites_when_its_manifest_is_broken() {
    let t = topology(&shipped_topology());
    let pdb_selector = "  maxUnavailable: 1\n  selector:\n    matchLabels: { app: sluice, \
                        pipeline: support-rag, stage: generate }";
    let embed_scaler =
        "kind: ScaledObject\nmetadata:\n  name: sluice-embed\n  labels: { app: sluice, \
                        pipeline: support-rag, stage: embed }";
    let embed_relabelled = embed_scaler.replace("stage: embed }", "stage: classify }");
    let pdb_reselected = pdb_selector.replace("generate }", "review }");
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "support-rag-embed.yaml",
            embed_scaler,
            &embed_relabelled,
            "ScaledObject sluice-embed: metadata.labels",
        ),
        (
            "support-rag-embed.yaml",
            "      labels: { app: sluice, pipeline: support-rag, stage: embed }",
            "      labels: { app: sluice, stage: embed }",
            "the pod template's labels are not the selector's",
        ),
        (
            "support-rag-embed.yaml",
            // Labels in another order are the same labels.
            "reset it).\n  selector:\n    matchLabels: { app: sluice, pipeline: support-rag, \
             stage: embed }\n",
            "reset it).\n  replicas: 3\n  selector:\n    matchLabels: { stage: embed, app: sluice, \
             pipeline: support-rag }\n",
            "sets replicas",
        ),
        (
            "support-rag-embed.yaml",
            "consumerGroup: sluice.support-rag.embed",
            "consumerGroup: support-rag.embed",
            "consumerGroup",
        ),
        (
            "support-rag-classify.yaml",
            "topic: support.documents",
            "topic: support.classified",
            "is not the stage's input",
        ),
        (
            "support-rag-classify.yaml",
            "maxReplicaCount: 6",
            "maxReplicaCount: 12",
            "maxReplicaCount",
        ),
        (
            "support-rag-review.yaml",
            "excludePersistentLag: \"true\"",
            "excludePersistentLag: \"false\"",
            "excludePersistentLag",
        ),
        (
            "support-rag-retrieve.yaml",
            "terminationGracePeriodSeconds: 45",
            "terminationGracePeriodSeconds: 35",
            "terminationGracePeriodSeconds",
        ),
        (
            "support-rag-classify.yaml",
            "path: /readyz",
            "path: /healthz",
            "readinessProbe must GET /readyz",
        ),
        (
            "support-rag-classify.yaml",
            "path: /healthz",
            "path: /metrics",
            "livenessProbe must GET /healthz",
        ),
        (
            "support-rag-embed.yaml",
            "value: \"0.0.0.0:9464\"",
            "value: \"0.0.0.0:9000\"",
            "does not expose the metrics port 9000",
        ),
        (
            "support-rag-embed.yaml",
            "containerPort: 9464 }",
            "containerPort: 8080 }",
            "does not expose the metrics port 9464",
        ),
        (
            "support-rag-generate.yaml",
            pdb_selector,
            &pdb_reselected,
            "PodDisruptionBudget sluice-generate: selector",
        ),
        (
            "support-rag-review.yaml",
            "\"--stage\", \"review\"",
            "\"--stage\", \"generate\"",
            "do not run `--stage review`",
        ),
        (
            "support-rag-review.yaml",
            "kind: Deployment\nmetadata:\n  name: sluice-review\n",
            "kind: Deployment\nmetadata:\n  name: sluice-reviews\n",
            "0 workloads (Deployment or StatefulSet) named sluice-review",
        ),
        (
            "support-rag-embed.yaml",
            "bootstrapServers: \"kafka:9092\"",
            "bootstrapServers: \"kafka-0:9092\"",
            "bootstrapServers",
        ),
        (
            "support-rag-retrieve.yaml",
            "offsetResetPolicy: earliest",
            "offsetResetPolicy: latest",
            "offsetResetPolicy",
        ),
        (
            "support-rag-embed.yaml",
            "stabilizationWindowSeconds: 120",
            "stabilizationWindowSeconds: 60",
            "scaleUp.stabilizationWindowSeconds 60 is under 90 s",
        ),
        (
            "support-rag-classify.yaml",
            "          stabilizationWindowSeconds: 120\n",
            "",
            "scaleUp.stabilizationWindowSeconds 0 is under 90 s",
        ),
        (
            "support-rag-retrieve.yaml",
            "{ type: Pods, value: 1, periodSeconds: 60 }",
            "{ type: Pods, value: 1, periodSeconds: 15 }",
            "scaleUp.policies must be `Pods` policies allowing at most 60 steps (rebalances) an \
             hour; they allow 240",
        ),
        (
            "support-rag-review.yaml",
            "{ type: Pods, value: 1, periodSeconds: 60 }",
            "{ type: Percent, value: 100, periodSeconds: 60 }",
            "they allow an unbounded number",
        ),
        (
            "support-rag-review.yaml",
            "policies: [{ type: Pods, value: 1, periodSeconds: 60 }]",
            "selectPolicy: Max",
            "they allow an unbounded number",
        ),
        (
            "support-rag-embed.yaml",
            "{ type: Pods, value: 1, periodSeconds: 120 }",
            "{ type: Pods, value: 1, periodSeconds: 120 }, { type: Pods, value: 4, periodSeconds: 600 }",
            "scaleDown.policies must be `Pods` policies allowing at most 30 steps (rebalances) an \
             hour; they allow 54",
        ),
        (
            "support-rag-classify.yaml",
            "stabilizationWindowSeconds: 300",
            "stabilizationWindowSeconds: 0",
            "scaleDown.stabilizationWindowSeconds 0 is under 300 s",
        ),
        (
            "support-rag-retrieve.yaml",
            "        scaleUp:\n",
            "        scaleUpp:\n",
            "sets no scaleUp behavior",
        ),
        (
            "support-rag-review.yaml",
            "minReplicaCount: 1",
            "minReplicaCount: 0",
            "minReplicaCount 0 scales to zero",
        ),
        (
            "support-rag-generate.yaml",
            "fieldPath: metadata.name",
            "fieldPath: metadata.uid",
            "SLUICE_GROUP_INSTANCE_ID must come from the pod name",
        ),
        (
            "support-rag-generate.yaml",
            "podManagementPolicy: Parallel",
            "podManagementPolicy: OrderedReady",
            "StatefulSet sluice-generate: podManagementPolicy must be Parallel",
        ),
        (
            "support-rag-generate.yaml",
            "serviceName: sluice-generate",
            "serviceName: generate",
            "serviceName Some(\"generate\") names no headless Service",
        ),
        (
            "support-rag-generate.yaml",
            "  clusterIP: None\n",
            "",
            "serviceName Some(\"sluice-generate\") names no headless Service",
        ),
        (
            "support-rag-generate.yaml",
            "replicas: 3",
            "replicas: 8",
            "replicas Some(8): no ScaledObject scales it, so it must set between 1 and the \
             Some(6) partitions of support.retrieved",
        ),
        (
            "support-rag-generate.yaml",
            "  replicas: 3\n",
            "",
            "StatefulSet sluice-generate: replicas None",
        ),
        (
            "support-rag-generate.yaml",
            "terminationGracePeriodSeconds: 45",
            "terminationGracePeriodSeconds: 35",
            "StatefulSet sluice-generate: terminationGracePeriodSeconds",
        ),
        (
            "support-rag-embed.yaml",
            "            - { name: SLUICE_METRICS_ADDR, value: \"0.0.0.0:9464\" }\n",
            "            - { name: SLUICE_METRICS_ADDR, value: \"0.0.0.0:9464\" }\n            - \
             name: SLUICE_GROUP_INSTANCE_ID\n              valueFrom: { fieldRef: { fieldPath: \
             metadata.name } }\n",
            "Deployment sluice-embed: sets SLUICE_GROUP_INSTANCE_ID",
        ),
        (
            "support-rag-generate.yaml",
            "\"--stage\", \"generate\",",
            "\"--stage\", \"generate\", \"--instance-id\", \"generate\",",
            "names --instance-id in the pod template",
        ),
        (
            "support-rag-generate.yaml",
            "kind: Service\nmetadata:\n  name: sluice-generate\n",
            "kind: Service\nmetadata:\n  name: sluice-generator\n",
            "Service sluice-generator deploys no stage",
        ),
        (
            "kustomization.yaml",
            "  - support-rag-review.yaml\n",
            "",
            "does not list support-rag-review.yaml",
        ),
        (
            "support-rag-classify.yaml",
            "kind: PodDisruptionBudget",
            "kind: PodDisruptionBudget\n  bad: [",
            "does not parse",
        ),
    ];
    for &(file, from, to, expected) in cases {
        let problems = check(&broken(file, from, to), &t);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{file}: {from:?} → {to:?} should be caught with {expected:?}; got {problems:#?}"
        );
    }
}

#[test]
fn the_checks_follow_the_topology_not_a_copy_of_it() {
    // A topology that names its own group, or drains for longer, needs other manifests.
    let text = shipped_topology();
    let grouped = text.replace(
        "  classify:\n    kind: classify\n",
        "  classify:\n    kind: classify\n    group: support-classifiers\n",
    );
    let problems = check(&files(), &topology(&grouped));
    assert!(
        problems.iter().any(|p| p.contains("is not the stage's group support-classifiers")),
        "{problems:#?}"
    );
    let slow = text.replace(
        "  generate:\n    kind: generate\n",
        "  generate:\n    kind: generate\n    shutdown_grace: 40s\n",
    );
    let problems = check(&files(), &topology(&slow));
    assert!(
        problems.iter().any(|p| p.contains("sluice-generate: terminationGracePeriodSeconds")),
        "{problems:#?}"
    );
    // A longer drain stalls a rebalance for longer: the scale-up window must outlast it.
    let slow = text.replace(
        "  embed:\n    kind: embed\n",
        "  embed:\n    kind: embed\n    shutdown_grace: 90s\n",
    );
    let problems = check(&files(), &topology(&slow));
    assert!(
        problems.iter().any(|p| p.contains(
            "sluice-embed: scaleUp.stabilizationWindowSeconds 120 is under 150 s (shutdown_grace 90s"
        )),
        "{problems:#?}"
    );
}
