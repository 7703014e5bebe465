//! Rust types mirroring the shipped schemas. Stages see an [`Envelope`]: the document with
//! everything earlier stages added, whichever stage-output schema it arrived in.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::SchemaKind;

/// A document entering the pipeline (`schemas/document.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub tenant: String,
    pub content: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub label: String,
    pub confidence: f64,
    pub model: String,
    /// Prompt template version; `None` for rule-based labels.
    #[serde(default)]
    pub prompt_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub index: i32,
    pub text: String,
    pub vector: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub id: String,
    pub text: String,
    pub score: f64,
    pub source: String,
}

/// The `cache` of an answer a model call produced (what records written before the field
/// existed read as).
pub const MODEL_CALL: &str = "none";

fn model_call() -> String {
    MODEL_CALL.to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    pub model: String,
    pub prompt_version: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub finish_reason: String,
    pub latency_ms: i64,
    /// How the answer was produced: `none` (a model call), `exact` or `semantic` (a cache).
    #[serde(default = "model_call")]
    pub cache: String,
    /// Semantic cache only: the similarity of this record's variable text to the reused one's.
    #[serde(default)]
    pub similarity: Option<f64>,
    /// Semantic cache only: the document whose answer was reused.
    #[serde(default)]
    pub reused_from: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Approved,
    NeedsHuman,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub redactions: i32,
}

/// What a reviewer decided on a needs-human record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HumanDecision {
    Approved,
    Rejected,
}

/// A reviewer's decision as the approved and rejected topics carry it: the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HumanReview {
    pub reviewer: String,
    pub decision: HumanDecision,
    #[serde(default)]
    pub note: String,
    pub decided_at_ms: i64,
    /// The generated answer, when the reviewer edited it.
    #[serde(default)]
    pub original_answer: Option<String>,
    /// `<review-claims topic>/0/<offset>` of the decision: the same on a repeated delivery.
    pub decision_id: String,
}

/// One step of a review on the review-claims topic (`schemas/review_event.avsc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewStep {
    Claim,
    Release,
    Decide,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewEvent {
    pub item_partition: i32,
    pub item_offset: i64,
    pub step: ReviewStep,
    pub reviewer: String,
    pub holder: String,
    pub at_ms: i64,
    pub expires_ms: i64,
    #[serde(default)]
    pub decision: Option<HumanDecision>,
    #[serde(default)]
    pub answer: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// The needs-human record's document id; `None`: undecodable (the item is its own document).
    #[serde(default)]
    pub document: Option<String>,
    /// The document's tenant.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// The document and what the stages so far added to it. Each stage-output schema is a view of
/// this type; encoding resolves it against the target schema, which keeps only that schema's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub document: Document,
    #[serde(default)]
    pub classification: Option<Classification>,
    #[serde(default)]
    pub chunks: Vec<Chunk>,
    #[serde(default)]
    pub embedding_model: Option<String>,
    #[serde(default)]
    pub passages: Vec<Passage>,
    #[serde(default)]
    pub answer: Option<Answer>,
    #[serde(default)]
    pub review: Option<Review>,
    /// A person's decision from the review queue (approved and rejected topics only).
    #[serde(default)]
    pub human_review: Option<HumanReview>,
}

impl Envelope {
    pub fn new(document: Document) -> Self {
        Self {
            document,
            classification: None,
            chunks: Vec::new(),
            embedding_model: None,
            passages: Vec::new(),
            answer: None,
            review: None,
            human_review: None,
        }
    }

    /// Reads a value already resolved to `kind`'s schema.
    pub fn from_value(kind: SchemaKind, value: Value) -> Result<Self, apache_avro::Error> {
        match (kind, value) {
            (SchemaKind::Document, value) => Ok(Self::new(apache_avro::from_value(&value)?)),
            // Sections that are required in this schema are optional in the envelope: present
            // them as the non-null branch of a union, which is how serde reads an `Option`.
            (_, Value::Record(fields)) => {
                let fields = fields
                    .into_iter()
                    .map(|(name, v)| match (name.as_str(), v) {
                        (_, v @ Value::Union(..)) => (name, v),
                        ("classification" | "embedding_model" | "answer" | "review", v) => {
                            (name, Value::Union(1, Box::new(v)))
                        }
                        (_, v) => (name, v),
                    })
                    .collect();
                apache_avro::from_value(&Value::Record(fields))
            }
            (_, value) => apache_avro::from_value(&value),
        }
    }

    /// The Avro value of this envelope for `kind`'s schema.
    pub fn to_value(&self, kind: SchemaKind) -> Result<Value, apache_avro::Error> {
        let value = match kind {
            SchemaKind::Document => apache_avro::to_value(&self.document)?,
            _ => apache_avro::to_value(self)?,
        };
        value.resolve(kind.schema())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        Document {
            id: "d1".into(),
            tenant: "acme".into(),
            content: "hello".into(),
            metadata: BTreeMap::from([("k".into(), "v".into())]),
        }
    }

    #[test]
    fn envelope_round_trips_through_every_stage_schema() {
        let mut env = Envelope::new(doc());
        env.classification = Some(Classification {
            label: "billing".into(),
            confidence: 0.9,
            model: "m".into(),
            prompt_version: Some("classify@1".into()),
        });
        let v = env.to_value(SchemaKind::Classified).expect("classified");
        assert_eq!(Envelope::from_value(SchemaKind::Classified, v).expect("back"), env);

        env.chunks = vec![Chunk { index: 0, text: "hello".into(), vector: vec![0.5, 0.25] }];
        env.embedding_model = Some("e".into());
        let v = env.to_value(SchemaKind::Embedded).expect("embedded");
        assert_eq!(Envelope::from_value(SchemaKind::Embedded, v).expect("back"), env);

        // Retrieved drops the chunks: they are not in its schema.
        env.passages =
            vec![Passage { id: "p".into(), text: "t".into(), score: 0.7, source: "kb".into() }];
        let v = env.to_value(SchemaKind::Retrieved).expect("retrieved");
        let back = Envelope::from_value(SchemaKind::Retrieved, v).expect("back");
        assert!(back.chunks.is_empty());
        assert_eq!(back.passages, env.passages);
    }

    #[test]
    fn document_value_has_only_document_fields() {
        let v = Envelope::new(doc()).to_value(SchemaKind::Document).expect("document");
        assert_eq!(Envelope::from_value(SchemaKind::Document, v).expect("back").document, doc());
    }

    #[test]
    fn encoding_a_stage_output_without_its_section_fails() {
        assert!(Envelope::new(doc()).to_value(SchemaKind::Generated).is_err());
    }
}
