//! Avro on every topic: the schemas shipped in `schemas/`, the record types that mirror them,
//! the Confluent wire format codec, registry registration and checks, and JSON conversion for
//! the CLI.

mod codec;
mod dead_letter;
mod json;
mod records;
mod registry;
mod value_fields;

use std::sync::OnceLock;

use apache_avro::Schema;

pub use codec::{Codec, CodecError, Decoded};
pub use dead_letter::{AttemptRecord, DeadLetter, DeadLetterClass};
pub use json::{avro_to_json, json_to_avro};
pub use records::*;
pub use registry::{check_registered, register_all, RegistryError};

/// The closed set of schemas sluice writes. The `.avsc` files are compiled into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    Document,
    Classified,
    Embedded,
    Retrieved,
    Generated,
    Reviewed,
    DeadLetter,
    CostEvent,
    BudgetClaim,
    ReviewEvent,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 10] = [
        Self::Document,
        Self::Classified,
        Self::Embedded,
        Self::Retrieved,
        Self::Generated,
        Self::Reviewed,
        Self::DeadLetter,
        Self::CostEvent,
        Self::BudgetClaim,
        Self::ReviewEvent,
    ];

    /// The schema's JSON text, as shipped in `schemas/`.
    pub fn text(self) -> &'static str {
        match self {
            Self::Document => include_str!("../../schemas/document.avsc"),
            Self::Classified => include_str!("../../schemas/classified.avsc"),
            Self::Embedded => include_str!("../../schemas/embedded.avsc"),
            Self::Retrieved => include_str!("../../schemas/retrieved.avsc"),
            Self::Generated => include_str!("../../schemas/generated.avsc"),
            Self::Reviewed => include_str!("../../schemas/reviewed.avsc"),
            Self::DeadLetter => include_str!("../../schemas/dead_letter.avsc"),
            Self::CostEvent => include_str!("../../schemas/cost_event.avsc"),
            Self::BudgetClaim => include_str!("../../schemas/budget_claim.avsc"),
            Self::ReviewEvent => include_str!("../../schemas/review_event.avsc"),
        }
    }

    /// Full name of the top-level record, e.g. `sluice.Document`.
    pub fn full_name(self) -> &'static str {
        match self {
            Self::Document => "sluice.Document",
            Self::Classified => "sluice.Classified",
            Self::Embedded => "sluice.Embedded",
            Self::Retrieved => "sluice.Retrieved",
            Self::Generated => "sluice.Generated",
            Self::Reviewed => "sluice.Reviewed",
            Self::DeadLetter => "sluice.DeadLetter",
            Self::CostEvent => "sluice.CostEvent",
            Self::BudgetClaim => "sluice.BudgetClaim",
            Self::ReviewEvent => "sluice.ReviewEvent",
        }
    }

    pub fn from_full_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.full_name() == name)
    }

    /// The parsed schema (parsed once per process).
    pub fn schema(self) -> &'static Schema {
        static PARSED: OnceLock<Vec<Schema>> = OnceLock::new();
        let all = PARSED.get_or_init(|| {
            Self::ALL
                .iter()
                .map(|k| {
                    Schema::parse_str(k.text()).expect("shipped schemas parse (checked by tests)")
                })
                .collect()
        });
        &all[Self::ALL.iter().position(|k| *k == self).expect("every kind is in ALL")]
    }
}

/// The Confluent topic-name strategy: records on `topic` use subject `<topic>-value`.
pub fn subject_for(topic: &str) -> String {
    format!("{topic}-value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_schema_parses_and_names_itself() {
        for kind in SchemaKind::ALL {
            let schema = kind.schema();
            let Schema::Record(r) = schema else { panic!("{kind:?} is not a record") };
            assert_eq!(r.name.fullname(None), kind.full_name());
            assert_eq!(SchemaKind::from_full_name(kind.full_name()), Some(kind));
        }
    }

    #[test]
    fn nested_document_is_identical_in_every_stage_schema() {
        let doc = SchemaKind::Document.schema().canonical_form();
        for kind in [
            SchemaKind::Classified,
            SchemaKind::Embedded,
            SchemaKind::Retrieved,
            SchemaKind::Generated,
            SchemaKind::Reviewed,
        ] {
            let Schema::Record(r) = kind.schema() else { unreachable!() };
            let field = r.fields.iter().find(|f| f.name == "document").expect("document field");
            assert_eq!(field.schema.canonical_form(), doc, "{kind:?} embeds a different Document");
        }
    }
}
