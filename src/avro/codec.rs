//! The Confluent wire format: magic byte 0, a big-endian u32 schema id, then the Avro datum.
//! Writers encode with the schema compiled into the binary under the id the registry gave it
//! (looked up once at startup); readers fetch the writer's schema by id through
//! schema_registry_converter and resolve it to their own, so compatible evolution
//! (a new field with a default) never breaks a running consumer.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;

use super::registry::{lookup_id, RegistryError};
use super::SchemaKind;

/// A decoded record value, resolved to sluice's own schema of that kind.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub kind: SchemaKind,
    pub schema_id: u32,
    pub value: Value,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a Confluent-framed Avro record of a known schema: never retry.
    #[error("undecodable record: {0}")]
    Malformed(String),
    /// The schema registry could not be reached: back off, do not dead-letter.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The value does not fit the schema it is written with (a bug or a bad stage output).
    #[error("cannot encode for topic '{topic}': {message}")]
    Encode { topic: String, message: String },
}

impl CodecError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RegistryUnavailable(_))
    }
}

/// Encoder and decoder for one process; cheap to share behind an `Arc`.
pub struct Codec {
    decoder: AvroDecoder,
    /// Output topic → (schema kind, registry id), fixed at startup.
    writers: HashMap<String, (SchemaKind, u32)>,
}

impl Codec {
    /// Looks up the id of every schema this process writes; fails if one is not registered
    /// under `<topic>-value` (run `sluice schemas register` first).
    pub async fn connect(
        settings: &SrSettings,
        writes: &[(String, SchemaKind)],
    ) -> Result<Self, RegistryError> {
        let mut writers = HashMap::new();
        for (topic, kind) in writes {
            if writers.contains_key(topic) {
                continue;
            }
            let id = lookup_id(settings, topic, *kind).await?;
            writers.insert(topic.clone(), (*kind, id));
        }
        Ok(Self { decoder: AvroDecoder::new(settings.clone()), writers })
    }

    /// The schema kind records on `topic` are written with, if this codec writes it.
    pub fn writer_kind(&self, topic: &str) -> Option<SchemaKind> {
        self.writers.get(topic).map(|(k, _)| *k)
    }

    /// Frames `value` (already valid for the topic's schema) for `topic`.
    pub fn encode(&self, topic: &str, value: &Value) -> Result<Vec<u8>, CodecError> {
        let encode_err = |message: String| CodecError::Encode { topic: topic.to_owned(), message };
        let (kind, id) = self
            .writers
            .get(topic)
            .ok_or_else(|| encode_err("no schema prepared for this topic".into()))?;
        let mut out = Vec::with_capacity(256);
        out.push(0);
        out.extend_from_slice(&id.to_be_bytes());
        writer(*kind).write_value_ref(&mut out, value).map_err(|e| encode_err(e.to_string()))?;
        Ok(out)
    }

    /// Decodes a record into the writer's schema and resolves it to sluice's schema of the
    /// same record name.
    pub async fn decode(&self, payload: Option<&[u8]>) -> Result<Decoded, CodecError> {
        let (schema_id, writer, body) = self.writer_schema(payload).await?;
        let name = match &writer.parsed {
            Schema::Record(r) => r.name.fullname(None),
            other => {
                return Err(CodecError::Malformed(format!(
                    "schema {schema_id} is not a record but {other:?}"
                )))
            }
        };
        let kind = SchemaKind::from_full_name(&name).ok_or_else(|| {
            CodecError::Malformed(format!("schema {schema_id} is '{name}', not a sluice record"))
        })?;
        let value = read(&writer.parsed, Some(kind.schema()), body).map_err(|e| {
            CodecError::Malformed(format!(
                "Avro body does not match schema {schema_id} ({name}): {e}"
            ))
        })?;
        Ok(Decoded { kind, schema_id, value })
    }

    /// Decodes a record in its writer's schema, whatever it is (for `sluice consume`).
    pub async fn decode_any(&self, payload: Option<&[u8]>) -> Result<(u32, Value), CodecError> {
        let (schema_id, writer, body) = self.writer_schema(payload).await?;
        let value = read(&writer.parsed, None, body).map_err(|e| {
            CodecError::Malformed(format!("Avro body does not match schema {schema_id}: {e}"))
        })?;
        Ok((schema_id, value))
    }

    async fn writer_schema<'b>(
        &self,
        payload: Option<&'b [u8]>,
    ) -> Result<(u32, Arc<schema_registry_converter::avro_common::AvroSchema>, &'b [u8]), CodecError>
    {
        let bytes = payload
            .ok_or_else(|| CodecError::Malformed("the record has no value (tombstone)".into()))?;
        if bytes.is_empty() {
            return Err(CodecError::Malformed("the value is empty".into()));
        }
        if bytes[0] != 0 {
            return Err(CodecError::Malformed(format!(
                "wrong magic byte {:#04x} (expected 0x00)",
                bytes[0]
            )));
        }
        if bytes.len() < 5 {
            return Err(CodecError::Malformed(format!(
                "value of {} bytes is too short for a schema id",
                bytes.len()
            )));
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        match self.decoder.get_schema(id).await {
            Ok(schema) => Ok((id, schema, &bytes[5..])),
            Err(e) if e.retriable => Err(CodecError::RegistryUnavailable(e.to_string())),
            Err(e) => Err(CodecError::Malformed(format!(
                "schema id {id} is unknown to the registry: {}",
                e.error
            ))),
        }
    }
}

/// The datum writer of each shipped schema, built once (building one resolves the schema).
fn writer(kind: SchemaKind) -> &'static GenericDatumWriter<'static> {
    static WRITERS: OnceLock<Vec<GenericDatumWriter<'static>>> = OnceLock::new();
    let all = WRITERS.get_or_init(|| {
        SchemaKind::ALL
            .iter()
            .map(|k| {
                GenericDatumWriter::builder(k.schema()).build().expect("shipped schemas resolve")
            })
            .collect()
    });
    &all[SchemaKind::ALL.iter().position(|k| *k == kind).expect("every kind is in ALL")]
}

fn read(writer: &Schema, reader: Option<&Schema>, mut body: &[u8]) -> Result<Value, String> {
    let datum_reader = match reader {
        Some(r) => GenericDatumReader::builder(writer).reader_schema(r).build(),
        None => GenericDatumReader::builder(writer).build(),
    }
    .map_err(|e| e.to_string())?;
    let value = datum_reader.read_value(&mut body).map_err(|e| e.to_string())?;
    if !body.is_empty() {
        return Err(format!("{} trailing bytes after the record", body.len()));
    }
    Ok(value)
}
