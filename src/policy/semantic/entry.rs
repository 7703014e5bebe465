//! A semantic cache entry and its value on sluice's compacted entries topic.
//!
//! The value is `SLSC` (magic), a version byte (1), a u32 (little-endian) length and that many
//! bytes of JSON (the key, the text, whose answer it is, when it expires, the exact cache's
//! [`Entry`]), then a u32 dimension count and the vector as little-endian f32s. The topic may
//! be written by anyone who can produce to it, so [`SemanticEntry::decode`] bounds every part
//! and refuses, with a reason, anything sluice would not have written: a wrong magic or
//! version, a truncated or oversized value, a vector of no or too many dimensions or with a NaN,
//! an expiry before creation, a record key that is not the entry's own.
//!
//! The record key (for compaction) is [`record_key`]: a hash of the cache key and the variable
//! text with case and spacing normalised, so an entry stored again replaces the older one.

use serde::{Deserialize, Serialize};

use super::key::SemanticKey;
use crate::call::stable_hash;
use crate::policy::cache::{Answer, Entry};

pub const MAGIC: &[u8; 4] = b"SLSC";
pub const VERSION: u8 = 1;
/// The most dimensions a vector may have (the largest common embedding models have 3072).
pub const MAX_DIMENSIONS: usize = 4096;
/// The longest variable text kept with an entry.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// The largest value read from the topic.
pub const MAX_VALUE_BYTES: usize = 2 * 1024 * 1024;

/// An earlier answer and the question it answered.
#[derive(Debug, Clone)]
pub struct SemanticEntry {
    pub key: SemanticKey,
    /// The variable part of the prompt the answer was for (the guard compares it with a lookup's).
    pub text: String,
    /// The variable text's embedding, L2-normalised.
    pub vector: Vec<f32>,
    /// The document whose answer this is (the audit trail of a reuse).
    pub document_id: String,
    pub created_ms: i64,
    /// When it stops answering (the stage's TTL after creation).
    pub expires_ms: i64,
    /// The answer, its model, and the cost event of the call that paid for it.
    pub cached: Entry,
}

/// Why a value read from the topic is not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes, more than the {MAX_VALUE_BYTES} an entry may have")]
    TooLarge(usize),
    #[error("not a semantic cache entry (wrong magic)")]
    Magic,
    #[error("entry version {0}, this sluice reads version {VERSION}")]
    Version(u8),
    #[error("truncated entry")]
    Truncated,
    #[error("{0} bytes after the entry")]
    Trailing(usize),
    #[error("entry header: {0}")]
    Header(String),
    #[error("a vector of {0} dimensions (1 to {MAX_DIMENSIONS})")]
    Dimensions(usize),
    #[error("a vector with a value that is not finite, or of length zero")]
    Vector,
    #[error("a text of {0} bytes, more than {MAX_TEXT_BYTES}")]
    Text(usize),
    #[error("expires before it was created")]
    Expiry,
    #[error("not a chat answer")]
    Answer,
    #[error("the record key is not the entry's")]
    RecordKey,
}

/// What the JSON part holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    key: SemanticKey,
    text: String,
    document_id: String,
    created_ms: i64,
    expires_ms: i64,
    cached: Entry,
}

/// The compaction key of the entry for `text` under `key`: 32 hex digits.
pub fn record_key(key: &SemanticKey, text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let parts: [&[u8]; 3] = [b"semantic", &key.to_bytes(), text.as_bytes()];
    let a = stable_hash(&[&parts[..], &[b"k1"]].concat());
    let b = stable_hash(&[&parts[..], &[b"k2"]].concat());
    format!("{a:016x}{b:016x}")
}

/// `v` scaled to length one; `None` for a vector with a non-finite value, or of length zero.
pub fn unit_vector(v: &[f32]) -> Option<Vec<f32>> {
    if v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    (norm.is_finite() && norm > 0.0)
        .then(|| v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

impl SemanticEntry {
    /// This entry's compaction key.
    pub fn record_key(&self) -> String {
        record_key(&self.key, &self.text)
    }

    /// Bytes held in memory, roughly: the vector, the texts and the strings of the answer.
    pub fn approx_bytes(&self) -> usize {
        let e = &self.cached.event;
        let answer = match &self.cached.answer {
            Answer::Chat { text, model, finish_reason, .. } => {
                text.len() + model.len() + finish_reason.len()
            }
            Answer::Embedding { vector } => vector.len() * 4,
        };
        let event = [&e.event_id, &e.tenant, &e.pipeline, &e.stage, &e.document_id, &e.provider]
            .iter()
            .map(|s| s.len())
            .sum::<usize>()
            + e.model_requested.len()
            + e.model_served.len()
            + 256;
        std::mem::size_of::<Self>()
            + self.key.to_bytes().len()
            + self.text.len()
            + self.vector.len() * 4
            + self.document_id.len()
            + self.cached.served.len()
            + self.cached.provider.len()
            + self.cached.model_name.len()
            + answer
            + event
    }

    /// The value written to the topic.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            key: self.key.clone(),
            text: self.text.clone(),
            document_id: self.document_id.clone(),
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            cached: self.cached.clone(),
        };
        let json = serde_json::to_vec(&header).expect("an entry's header serialises");
        let mut out = Vec::with_capacity(13 + json.len() + self.vector.len() * 4);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&(self.vector.len() as u32).to_le_bytes());
        for x in &self.vector {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// Reads a record of the topic: its key and value, checked as described in the module doc.
    pub fn decode(record_key: &[u8], value: &[u8]) -> Result<Self, DecodeError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(DecodeError::TooLarge(value.len()));
        }
        let mut rest = value;
        if take(&mut rest, 4)? != MAGIC {
            return Err(DecodeError::Magic);
        }
        let version = take(&mut rest, 1)?[0];
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let length = u32_le(&mut rest)? as usize;
        let json = take(&mut rest, length)?;
        let header: Header =
            serde_json::from_slice(json).map_err(|e| DecodeError::Header(e.to_string()))?;
        let dimensions = u32_le(&mut rest)? as usize;
        if dimensions == 0 || dimensions > MAX_DIMENSIONS {
            return Err(DecodeError::Dimensions(dimensions));
        }
        let raw = take(&mut rest, dimensions * 4)?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing(rest.len()));
        }
        let floats: Vec<f32> =
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let vector = unit_vector(&floats).ok_or(DecodeError::Vector)?;
        if header.text.len() > MAX_TEXT_BYTES {
            return Err(DecodeError::Text(header.text.len()));
        }
        if header.expires_ms < header.created_ms {
            return Err(DecodeError::Expiry);
        }
        if !matches!(header.cached.answer, Answer::Chat { .. }) {
            return Err(DecodeError::Answer);
        }
        if record_key != self::record_key(&header.key, &header.text).as_bytes() {
            return Err(DecodeError::RecordKey);
        }
        Ok(Self {
            key: header.key,
            text: header.text,
            vector,
            document_id: header.document_id,
            created_ms: header.created_ms,
            expires_ms: header.expires_ms,
            cached: header.cached,
        })
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if rest.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn u32_le(rest: &mut &[u8]) -> Result<u32, DecodeError> {
    let b = take(rest, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// An entry of [`super::key::test_key`]`(tenant)` answering "answer to {text}", created at
/// `created_ms`, living 1000 ms.
#[cfg(test)]
pub(crate) fn test_entry(
    tenant: &str,
    text: &str,
    vector: &[f32],
    created_ms: i64,
) -> SemanticEntry {
    let answer = Answer::Chat {
        text: format!("answer to {text}"),
        model: "small-1".into(),
        input_tokens: 10,
        output_tokens: 5,
        cached_tokens: 0,
        estimated: false,
        finish_reason: "stop".into(),
    };
    let event = crate::call::CostEvent {
        document_id: format!("doc-{text}"),
        ..crate::call::CostEvent::sample()
    };
    SemanticEntry {
        key: super::key::test_key(tenant),
        text: text.to_owned(),
        vector: unit_vector(vector).expect("a test vector"),
        document_id: format!("doc-{text}"),
        created_ms,
        expires_ms: created_ms + 1000,
        cached: Entry {
            answer,
            served: "small".into(),
            provider: "sim".into(),
            model_name: "small-1".into(),
            event,
        },
    }
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
