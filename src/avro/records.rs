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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    pub model: String,
    pub prompt_version: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub finish_reason: String,
    pub latency_ms: i64,
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

/// Why a record was dead-lettered (`ErrorClass` in `schemas/dead_letter.avsc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterClass {
    /// The value could not be decoded: bad bytes, wrong magic byte, unknown schema id.
    Decode,
    /// The stage rejected it: bad input, content policy, schema mismatch.
    Permanent,
    /// A retryable error outlasted every attempt.
    RetriesExhausted,
}

impl DeadLetterClass {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Decode => "DECODE",
            Self::Permanent => "PERMANENT",
            Self::RetriesExhausted => "RETRIES_EXHAUSTED",
        }
    }
}

/// One failed attempt, for the dead-letter history.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub at_ms: i64,
    pub error_class: String,
    pub message: String,
}

/// A record a stage gave up on (`schemas/dead_letter.avsc`), with what it takes to redrive it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub pipeline: String,
    pub stage: String,
    pub consumer_group: String,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub original_timestamp_ms: Option<i64>,
    pub original_key: Option<Vec<u8>>,
    pub original_value: Option<Vec<u8>>,
    pub original_headers: Vec<(String, Option<Vec<u8>>)>,
    pub error_class: DeadLetterClass,
    pub error_message: String,
    pub attempts: Vec<AttemptRecord>,
    pub failed_at_ms: i64,
    /// The model the failed attempt called (`provider/model`), if it called one: with the prompt
    /// version, what an operator needs to decide whether a redrive can succeed now.
    pub model: Option<String>,
    /// The prompt template version (`name@version`) of the failed attempt, if it used one.
    pub prompt_version: Option<String>,
    /// Topics of the record's outputs that were acknowledged before the broker refused another
    /// (the record then sits both there and here); empty otherwise.
    pub delivered_outputs: Vec<String>,
}

impl DeadLetter {
    /// Built by hand rather than through serde so `bytes` fields stay Avro bytes.
    pub fn to_value(&self) -> Value {
        let opt_bytes = |b: &Option<Vec<u8>>| match b {
            Some(b) => Value::Union(1, Box::new(Value::Bytes(b.clone()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let opt_string = |s: &Option<String>| match s {
            Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let headers = self
            .original_headers
            .iter()
            .map(|(k, v)| {
                Value::Record(vec![
                    ("key".into(), Value::String(k.clone())),
                    ("value".into(), opt_bytes(v)),
                ])
            })
            .collect();
        let attempts = self
            .attempts
            .iter()
            .map(|a| {
                Value::Record(vec![
                    ("attempt".into(), Value::Int(a.attempt as i32)),
                    ("at_ms".into(), Value::Long(a.at_ms)),
                    ("error_class".into(), Value::String(a.error_class.clone())),
                    ("message".into(), Value::String(a.message.clone())),
                ])
            })
            .collect();
        let class = self.error_class;
        let class_index = [
            DeadLetterClass::Decode,
            DeadLetterClass::Permanent,
            DeadLetterClass::RetriesExhausted,
        ]
        .iter()
        .position(|c| *c == class)
        .expect("closed set") as u32;
        Value::Record(vec![
            ("pipeline".into(), Value::String(self.pipeline.clone())),
            ("stage".into(), Value::String(self.stage.clone())),
            ("consumer_group".into(), Value::String(self.consumer_group.clone())),
            ("original_topic".into(), Value::String(self.original_topic.clone())),
            ("original_partition".into(), Value::Int(self.original_partition)),
            ("original_offset".into(), Value::Long(self.original_offset)),
            (
                "original_timestamp_ms".into(),
                match self.original_timestamp_ms {
                    Some(t) => Value::Union(1, Box::new(Value::Long(t))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            ("original_key".into(), opt_bytes(&self.original_key)),
            ("original_value".into(), opt_bytes(&self.original_value)),
            ("original_headers".into(), Value::Array(headers)),
            ("error_class".into(), Value::Enum(class_index, class.symbol().into())),
            ("error_message".into(), Value::String(self.error_message.clone())),
            ("attempts".into(), Value::Array(attempts)),
            ("failed_at_ms".into(), Value::Long(self.failed_at_ms)),
            ("model".into(), opt_string(&self.model)),
            ("prompt_version".into(), opt_string(&self.prompt_version)),
            (
                "delivered_outputs".into(),
                Value::Array(
                    self.delivered_outputs.iter().map(|t| Value::String(t.clone())).collect(),
                ),
            ),
        ])
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

    fn dead_letter() -> DeadLetter {
        DeadLetter {
            pipeline: "p".into(),
            stage: "s".into(),
            consumer_group: "g".into(),
            original_topic: "t".into(),
            original_partition: 1,
            original_offset: 7,
            original_timestamp_ms: Some(5),
            original_key: None,
            original_value: Some(vec![1, 2, 3]),
            original_headers: vec![("h".into(), Some(b"v".to_vec()))],
            error_class: DeadLetterClass::Decode,
            error_message: "bad".into(),
            attempts: vec![AttemptRecord {
                attempt: 1,
                at_ms: 5,
                error_class: "decode".into(),
                message: "bad".into(),
            }],
            failed_at_ms: 9,
            model: None,
            prompt_version: None,
            delivered_outputs: vec![],
        }
    }

    #[test]
    fn dead_letter_value_validates_against_its_schema() {
        assert!(dead_letter().to_value().validate(SchemaKind::DeadLetter.schema()));
        let dl = DeadLetter {
            model: Some("sim/sim-small".into()),
            prompt_version: Some("answer@2".into()),
            ..dead_letter()
        };
        let value = dl.to_value();
        assert!(value.validate(SchemaKind::DeadLetter.schema()));
        let json = super::super::avro_to_json(&value);
        assert_eq!(
            (json["model"].as_str(), json["prompt_version"].as_str()),
            (Some("sim/sim-small"), Some("answer@2"))
        );
    }

    /// Fields added to the dead letter since its first version.
    const ADDED: [&str; 3] = ["model", "prompt_version", "delivered_outputs"];

    /// The schema as it was before `model`, `prompt_version` and `delivered_outputs`.
    fn dead_letter_schema_before_model() -> apache_avro::Schema {
        let mut json: serde_json::Value =
            serde_json::from_str(SchemaKind::DeadLetter.text()).expect("schema JSON");
        let fields = json["fields"].as_array_mut().expect("fields");
        fields.retain(|f| !ADDED.iter().any(|name| f["name"] == *name));
        apache_avro::Schema::parse(&json).expect("previous schema")
    }

    #[test]
    fn the_added_fields_are_a_fully_compatible_evolution_of_the_dead_letter_schema() {
        use apache_avro::schema_compatibility::SchemaCompatibility;
        let (old, new) = (dead_letter_schema_before_model(), SchemaKind::DeadLetter.schema());
        SchemaCompatibility::can_read(&old, new).expect("new readers read old dead letters");
        SchemaCompatibility::can_read(new, &old).expect("old readers read new dead letters");

        // An old dead letter, read with the new schema: both fields default to null.
        let mut old_value = dead_letter().to_value();
        let Value::Record(fields) = &mut old_value else { panic!("record") };
        fields.retain(|(name, _)| !ADDED.contains(&name.as_str()));
        let mut bytes = Vec::new();
        apache_avro::writer::datum::GenericDatumWriter::builder(&old)
            .build()
            .expect("old writer")
            .write_value_ref(&mut bytes, &old_value)
            .expect("old datum");
        let read = apache_avro::reader::datum::GenericDatumReader::builder(&old)
            .reader_schema(new)
            .build()
            .expect("resolving reader")
            .read_value(&mut bytes.as_slice())
            .expect("resolved to the new schema");
        let Value::Record(fields) = read else { panic!("record") };
        let model = fields.iter().find(|(n, _)| n == "model").expect("model field");
        assert_eq!(model.1, Value::Union(0, Box::new(Value::Null)));
        let delivered = fields.iter().find(|(n, _)| n == "delivered_outputs").expect("field");
        assert_eq!(delivered.1, Value::Array(vec![]));
    }
}
