//! Registering sluice's schemas under the topic-name strategy (`<topic>-value`) and checking
//! at worker startup that the registry has them.

use schema_registry_converter::async_impl::schema_registry::{
    perform_sr_call, post_schema, SrSettings,
};
use schema_registry_converter::schema_registry_common::{SchemaType, SrCall, SuppliedSchema};

use super::{subject_for, SchemaKind};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry unreachable: {0}")]
    Unavailable(String),
    #[error("subject '{subject}' does not hold sluice's {kind:?} schema ({detail}); run `sluice schemas register --topology FILE`")]
    NotRegistered { subject: String, kind: SchemaKind, detail: String },
    #[error("registry refused schema for subject '{subject}': {detail}")]
    Refused { subject: String, detail: String },
}

/// Registers `kind`'s schema under `topic`'s subject (idempotent: an identical schema keeps
/// its id). Returns the schema id.
pub async fn register(
    settings: &SrSettings,
    topic: &str,
    kind: SchemaKind,
) -> Result<u32, RegistryError> {
    let subject = subject_for(topic);
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, kind.text().to_owned());
    match post_schema(settings, subject.clone(), supplied).await {
        Ok(registered) => Ok(registered.id),
        Err(e) if e.retriable => Err(RegistryError::Unavailable(e.to_string())),
        Err(e) => Err(RegistryError::Refused { subject, detail: e.to_string() }),
    }
}

/// Registers every (topic, schema) pair; returns (subject, id) per pair.
pub async fn register_all(
    settings: &SrSettings,
    pairs: &[(String, SchemaKind)],
) -> Result<Vec<(String, u32)>, RegistryError> {
    let mut out = Vec::with_capacity(pairs.len());
    for (topic, kind) in pairs {
        out.push((subject_for(topic), register(settings, topic, *kind).await?));
    }
    Ok(out)
}

/// The id under which `topic`'s subject holds exactly `kind`'s schema, without registering it.
pub async fn lookup_id(
    settings: &SrSettings,
    topic: &str,
    kind: SchemaKind,
) -> Result<u32, RegistryError> {
    let subject = subject_for(topic);
    let body = serde_json::json!({ "schema": kind.text(), "schemaType": "AVRO" }).to_string();
    match perform_sr_call(settings, SrCall::PostForVersion(&subject, &body)).await {
        Ok(raw) => raw.id.ok_or_else(|| RegistryError::NotRegistered {
            subject,
            kind,
            detail: "the registry answered without an id".into(),
        }),
        Err(e) if e.retriable => Err(RegistryError::Unavailable(e.to_string())),
        Err(e) => Err(RegistryError::NotRegistered { subject, kind, detail: e.to_string() }),
    }
}

/// Checks every pair is registered; returns every missing subject, not just the first.
pub async fn check_registered(
    settings: &SrSettings,
    pairs: &[(String, SchemaKind)],
) -> Result<(), Vec<RegistryError>> {
    let mut missing = Vec::new();
    for (topic, kind) in pairs {
        match lookup_id(settings, topic, *kind).await {
            Ok(_) => {}
            Err(e @ RegistryError::Unavailable(_)) => return Err(vec![e]),
            Err(e) => missing.push(e),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}
