//! The dead letter (`schemas/dead_letter.avsc`): why a record was given up on, the record
//! itself, and its Avro value both ways — [`DeadLetter::to_value`], which the runner writes, and
//! [`DeadLetter::from_value`], which the operator's commands read back.

use apache_avro::types::Value;

use super::value_fields::Fields;

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
    /// Every class, in the order of the schema's enum symbols: the one list that parsing,
    /// encoding and every listing of classes use.
    pub const ALL: [DeadLetterClass; 3] = [Self::Decode, Self::Permanent, Self::RetriesExhausted];

    pub fn symbol(self) -> &'static str {
        match self {
            Self::Decode => "DECODE",
            Self::Permanent => "PERMANENT",
            Self::RetriesExhausted => "RETRIES_EXHAUSTED",
        }
    }

    /// A class as written by people or in a record: `PERMANENT`, `retries-exhausted`, …
    pub fn parse(text: &str) -> Result<Self, String> {
        let symbol = text.trim().to_uppercase().replace('-', "_");
        Self::ALL.into_iter().find(|c| c.symbol() == symbol).ok_or_else(|| {
            let all: Vec<&str> = Self::ALL.iter().map(|c| c.symbol()).collect();
            format!("'{text}' is not one of {}", all.join(", "))
        })
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
        let class_index =
            DeadLetterClass::ALL.iter().position(|c| *c == class).expect("closed set") as u32;
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

    /// A dead letter from its Avro value (resolved to `schemas/dead_letter.avsc`), or what about
    /// the value is not a dead letter: the inverse of [`DeadLetter::to_value`]. Letters written
    /// before `delivered_outputs` existed read with none.
    pub fn from_value(value: &Value) -> Result<DeadLetter, String> {
        let f = Fields::of(value, "the dead letter")?;
        let original_headers = f
            .array("original_headers")?
            .iter()
            .map(|h| {
                let h = Fields::of(h, "a header")?;
                Ok((h.string("key")?, h.opt_bytes("value")?))
            })
            .collect::<Result<_, String>>()?;
        let attempts = f
            .array("attempts")?
            .iter()
            .map(|a| {
                let a = Fields::of(a, "an attempt")?;
                Ok(AttemptRecord {
                    attempt: u32::try_from(a.long("attempt")?).unwrap_or(0),
                    at_ms: a.long("at_ms")?,
                    error_class: a.string("error_class")?,
                    message: a.string("message")?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(DeadLetter {
            pipeline: f.string("pipeline")?,
            stage: f.string("stage")?,
            consumer_group: f.string("consumer_group")?,
            original_topic: f.string("original_topic")?,
            original_partition: i32::try_from(f.long("original_partition")?)
                .map_err(|_| "original_partition is out of range".to_owned())?,
            original_offset: f.long("original_offset")?,
            original_timestamp_ms: f.opt_long("original_timestamp_ms")?,
            original_key: f.opt_bytes("original_key")?,
            original_value: f.opt_bytes("original_value")?,
            original_headers,
            error_class: DeadLetterClass::parse(&f.string("error_class")?)?,
            error_message: f.string("error_message")?,
            attempts,
            failed_at_ms: f.long("failed_at_ms")?,
            model: f.opt_string("model")?,
            prompt_version: f.opt_string("prompt_version")?,
            // Absent from letters written before the field existed.
            delivered_outputs: match f.array("delivered_outputs") {
                Ok(items) => items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(format!("a delivered output is {other:?}")),
                    })
                    .collect::<Result<_, String>>()?,
                Err(_) => Vec::new(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::SchemaKind;

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

    #[test]
    fn a_dead_letter_reads_back_from_its_avro_value() {
        let letter = dead_letter();
        assert_eq!(DeadLetter::from_value(&letter.to_value()), Ok(letter.clone()));
        let other = DeadLetter {
            original_value: None,
            original_key: Some(b"k".to_vec()),
            original_timestamp_ms: None,
            prompt_version: Some("answer@2".into()),
            delivered_outputs: vec!["o".into()],
            ..letter
        };
        assert_eq!(DeadLetter::from_value(&other.to_value()), Ok(other));
        assert!(DeadLetter::from_value(&Value::Null).is_err());
    }

    #[test]
    fn every_class_parses_from_its_symbol_and_as_people_write_it() {
        for class in DeadLetterClass::ALL {
            assert_eq!(DeadLetterClass::parse(class.symbol()), Ok(class));
        }
        assert_eq!(
            DeadLetterClass::parse("retries-exhausted"),
            Ok(DeadLetterClass::RetriesExhausted)
        );
        let e = DeadLetterClass::parse("fatal").unwrap_err();
        assert!(e.contains("DECODE, PERMANENT, RETRIES_EXHAUSTED"), "{e}");
    }
}
