//! The topics a topology uses, each with its role and the schema of its records.

use std::time::Duration;

use super::model::{StageKindSpec, Topology};
use crate::avro::SchemaKind;

/// Why a topic exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRole {
    /// Written by applications; documents enter here.
    Input,
    /// Written by a stage on success.
    StageOutput { stage: String },
    /// Rung of a stage's retry ladder: records wait here until `delay` after they failed.
    Retry { stage: String, delay: Duration },
    /// Records a stage gave up on, in a dead-letter envelope.
    DeadLetter { stage: String },
    /// One cost event per model call.
    Metering,
    /// Records of over-budget tenants, waiting for the next budget window.
    Deferred { stage: String },
    /// Budget claims of every replica, decided in log order (one partition).
    BudgetLedger,
    /// A review stage's needs-human records: the human review queue. Kept until deleted by
    /// hand: an undecided item must not expire (what is done is the console group's commit).
    ReviewQueue { stage: String },
    /// The review queue's claims and decisions for a review stage's needs-human topic, decided
    /// in log order (one partition) by every console replica.
    ReviewClaims { stage: String },
    /// The semantic cache's entries of every stage that has one, read by every replica at
    /// start: the latest entry per key is what matters (a tombstone removes it).
    SemanticCache,
}

impl TopicRole {
    pub fn describe(&self) -> String {
        match self {
            Self::Input => "input".to_owned(),
            Self::StageOutput { stage } => format!("output of stage '{stage}'"),
            Self::Retry { stage, delay } => {
                format!("retry of stage '{stage}' (delay {})", humantime::format_duration(*delay))
            }
            Self::DeadLetter { stage } => format!("dead-letter of stage '{stage}'"),
            Self::Metering => "metering".to_owned(),
            Self::Deferred { stage } => format!("deferred records of stage '{stage}'"),
            Self::BudgetLedger => "budget ledger".to_owned(),
            Self::ReviewClaims { stage } => format!("review claims of stage '{stage}'"),
            Self::ReviewQueue { stage } => format!("human review queue of stage '{stage}'"),
            Self::SemanticCache => "semantic cache entries".to_owned(),
        }
    }

    /// Topic configs a topic of this role is created with, over the broker's defaults.
    pub fn configs(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            // Every replica rebuilds its totals from the whole ledger: a claim deleted by the
            // default retention (7 days) would under-count a monthly window, granting money twice.
            Self::BudgetLedger | Self::ReviewQueue { .. } => &[("retention.ms", "-1")],
            // The latest step per item is what a replica needs (a claim, a decision, or done);
            // the console writes a tombstone once the queue's group committed past an item.
            // Steps younger than a week are never compacted: a decision a stopped replica left
            // without its DONE keeps its claim beside it until a console finishes it.
            Self::ReviewClaims { .. } => {
                &[("cleanup.policy", "compact"), ("min.compaction.lag.ms", "604800000")]
            }
            // Entries expire in the index (their TTL); compaction keeps one value per key and
            // drops what a tombstone (a false-hit report) removed.
            Self::SemanticCache => &[("cleanup.policy", "compact")],
            _ => &[],
        }
    }
}

/// One topic of the plan.
#[derive(Debug, Clone)]
pub struct PlannedTopic {
    pub name: String,
    pub role: TopicRole,
    pub partitions: i32,
    /// The Avro schema of its records; `None` for a topic of sluice's own binary entries (the
    /// semantic cache's, see `policy::semantic::entry`).
    pub schema: Option<SchemaKind>,
}

/// The schema of records a stage of this kind writes to its outputs.
pub fn output_schema(kind: &StageKindSpec) -> SchemaKind {
    match kind {
        StageKindSpec::Classify { .. } => SchemaKind::Classified,
        StageKindSpec::Embed { .. } => SchemaKind::Embedded,
        StageKindSpec::Retrieve { .. } => SchemaKind::Retrieved,
        StageKindSpec::Generate { .. } => SchemaKind::Generated,
        StageKindSpec::Review { .. } => SchemaKind::Reviewed,
    }
}

impl Topology {
    /// The schema of records on `topic`, if the topology knows the topic.
    pub fn schema_of(&self, topic: &str) -> Option<SchemaKind> {
        self.topics().into_iter().find(|t| t.name == topic).and_then(|t| t.schema)
    }

    /// Every topic of the topology, inputs first, then per stage its outputs, retries and
    /// dead letters, then metering. Retry topics carry the stage's input records unchanged.
    pub fn topics(&self) -> Vec<PlannedTopic> {
        let parts = self.kafka.partitions;
        let mut out: Vec<PlannedTopic> = self
            .inputs
            .iter()
            .map(|i| PlannedTopic {
                name: i.name.clone(),
                role: TopicRole::Input,
                partitions: i.partitions,
                schema: Some(SchemaKind::Document),
            })
            .collect();
        for s in &self.stages {
            let needs_human = s.review_queue().map(|(n, ..)| n);
            for topic in s.output_topics() {
                let stage = s.name.clone();
                out.push(PlannedTopic {
                    name: topic.to_owned(),
                    role: if Some(topic) == needs_human {
                        TopicRole::ReviewQueue { stage }
                    } else {
                        TopicRole::StageOutput { stage }
                    },
                    partitions: parts,
                    schema: Some(output_schema(&s.kind)),
                });
            }
        }
        for s in &self.stages {
            let input_schema = out
                .iter()
                .find(|t| t.name == s.input)
                .map_or(Some(SchemaKind::Document), |t| t.schema);
            for (name, delay) in s.retry.retry_topics() {
                let role = TopicRole::Retry { stage: s.name.clone(), delay };
                out.push(PlannedTopic { name, role, partitions: parts, schema: input_schema });
            }
            if self.budgets.is_some() {
                out.push(PlannedTopic {
                    name: s.deferred_topic.clone(),
                    role: TopicRole::Deferred { stage: s.name.clone() },
                    partitions: parts,
                    schema: input_schema,
                });
            }
            out.push(PlannedTopic {
                name: s.dead_letter_topic.clone(),
                role: TopicRole::DeadLetter { stage: s.name.clone() },
                partitions: parts,
                schema: Some(SchemaKind::DeadLetter),
            });
        }
        for s in &self.stages {
            if let Some(name) = s.review_claims_topic() {
                out.push(PlannedTopic {
                    name,
                    role: TopicRole::ReviewClaims { stage: s.name.clone() },
                    partitions: 1,
                    schema: Some(SchemaKind::ReviewEvent),
                });
            }
        }
        out.push(PlannedTopic {
            name: self.metering_topic.clone(),
            role: TopicRole::Metering,
            partitions: parts,
            schema: Some(SchemaKind::CostEvent),
        });
        if let Some(b) = &self.budgets {
            out.push(PlannedTopic {
                name: b.ledger_topic.clone(),
                role: TopicRole::BudgetLedger,
                partitions: 1,
                schema: Some(SchemaKind::BudgetClaim),
            });
        }
        if let Some(name) = &self.semantic_cache_topic {
            out.push(PlannedTopic {
                name: name.clone(),
                role: TopicRole::SemanticCache,
                partitions: parts,
                schema: None,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_budget_ledger_is_kept_forever_and_other_topics_use_the_broker_defaults() {
        let yaml = r#"
pipeline: p
providers:
  sim: { kind: simulated }
budgets: { window: month, tenants: { t: { limit: 1.0 } } }
inputs:
  p.docs: { partitions: 2 }
stages:
  work:
    kind: classify
    input: p.docs
    output: p.out
    model: { provider: sim, name: m }
    classify: { labels: [a] }
"#;
        let t = crate::config::compile(Path::new("t.yaml"), yaml).expect("compiles");
        let topics = t.topics();
        let ledger: Vec<_> = topics.iter().filter(|t| t.role == TopicRole::BudgetLedger).collect();
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].role.configs(), &[("retention.ms", "-1")]);
        assert_eq!(ledger[0].partitions, 1, "claims are decided in one log order");
        for other in topics.iter().filter(|t| {
            !matches!(
                t.role,
                TopicRole::BudgetLedger
                    | TopicRole::ReviewClaims { .. }
                    | TopicRole::ReviewQueue { .. }
                    | TopicRole::SemanticCache
            )
        }) {
            assert!(other.role.configs().is_empty(), "{}", other.name);
        }
    }

    #[test]
    fn a_review_queue_never_expires_and_its_claims_are_one_compacted_partition() {
        let yaml = r#"
pipeline: p
providers:
  sim: { kind: simulated }
inputs:
  p.in: { partitions: 3 }
stages:
  review:
    kind: review
    input: p.in
    output: p.ok
    needs_human_output: p.human
    rejected_output: p.no
"#;
        let t = crate::config::compile(Path::new("t.yaml"), yaml).expect("compiles");
        let topics = t.topics();
        let find = |name: &str| topics.iter().find(|t| t.name == name).expect("planned");
        let queue = find("p.human");
        assert_eq!(queue.role, TopicRole::ReviewQueue { stage: "review".into() });
        assert_eq!(queue.role.configs(), &[("retention.ms", "-1")]);
        let claims = find("p.human.claims");
        assert_eq!((claims.partitions, claims.schema), (1, Some(SchemaKind::ReviewEvent)));
        assert!(claims.role.configs().contains(&("cleanup.policy", "compact")));
        assert_eq!(find("p.ok").role, TopicRole::StageOutput { stage: "review".into() });
    }
}
