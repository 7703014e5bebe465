//! The exact response cache, beside the gateway that uses it: embedded on disk ([`disk`]) or in
//! Redis ([`redis`]). The key hashes everything that determines an answer — template version,
//! logical model, parameters and the full input — so a hit is the answer the same call would
//! have paid for. Each entry keeps the cost event of the call that filled it: a hit re-emits it
//! (the same id, removed as a duplicate when it was already delivered), which also covers a crash
//! between the call and its event's delivery.

mod disk;
mod redis;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::disk::DiskCache;
pub use self::redis::RedisCache;
use crate::call::{stable_hash, CostEvent};
use crate::config::CacheSpec;
use crate::provider::{CallKey, ChatRequest, ChatResponse};

/// Why a configured cache cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("response cache {}", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The URL is not one the Redis client accepts; the URL itself is not repeated, as it may
    /// carry a password.
    #[error("response cache: bad Redis URL")]
    RedisUrl {
        #[source]
        source: ::redis::RedisError,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    Chat {
        text: String,
        model: String,
        input_tokens: u64,
        output_tokens: u64,
        cached_tokens: u64,
        estimated: bool,
        finish_reason: String,
    },
    Embedding {
        vector: Vec<f32>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub answer: Answer,
    /// The logical model that served the original call, its provider and its model name.
    pub served: String,
    pub provider: String,
    pub model_name: String,
    /// The original call's cost event.
    pub event: CostEvent,
}

impl Entry {
    /// The chat answer kept; `None` for an embedding's entry.
    pub fn chat_response(&self) -> Option<ChatResponse> {
        let Answer::Chat {
            text,
            model,
            input_tokens,
            output_tokens,
            cached_tokens,
            estimated,
            finish_reason,
        } = self.answer.clone()
        else {
            return None;
        };
        Some(ChatResponse {
            text,
            model,
            input_tokens,
            output_tokens,
            cached_tokens,
            tokens_estimated: estimated,
            finish_reason,
            latency: Duration::ZERO,
            response_id: self.event.response_id.clone(),
        })
    }

    /// On a cache hit, the event of the call that filled the entry again — only when that call
    /// was made for this same document and tenant at this stage (a record redone after a crash
    /// that lost the event: a duplicate by id if it was delivered, its only copy if not). An
    /// entry another record filled is that record's to meter; this record meters its own
    /// zero-cost hit.
    pub fn reemit_own(&self, key: CallKey<'_>) {
        let Some(log) = key.log else { return };
        let e = &self.event;
        if e.document_id == key.document_id && e.tenant == key.tenant && e.stage == log.stage {
            log.push(e.clone());
        }
    }
}

/// Where answers are kept.
pub enum ResponseCache {
    /// A directory: one file per answer. Processes share it only if they share the directory.
    Disk(DiskCache),
    /// Redis: shared by every replica that points at it; entries expire after the spec's `ttl`.
    Redis(RedisCache),
}

impl ResponseCache {
    pub fn open(spec: &CacheSpec) -> Result<Self, CacheError> {
        Ok(match spec {
            CacheSpec::Embedded { path } => Self::Disk(
                DiskCache::open(path)
                    .map_err(|source| CacheError::Directory { path: path.clone(), source })?,
            ),
            CacheSpec::Redis { url, ttl } => Self::Redis(
                RedisCache::open(url, *ttl).map_err(|source| CacheError::RedisUrl { source })?,
            ),
        })
    }

    /// The entry under `key`; an unreadable entry or an unreachable Redis is a miss.
    pub async fn get(&self, key: &str) -> Option<Entry> {
        match self {
            Self::Disk(d) => d.get(key).await,
            Self::Redis(r) => r.get(key).await,
        }
    }

    /// Keeps `entry`; a write that fails is reported and otherwise ignored.
    pub async fn put(&self, key: &str, entry: &Entry) {
        match self {
            Self::Disk(d) => d.put(key, entry).await,
            Self::Redis(r) => r.put(key, entry).await,
        }
    }
}

fn hex128(parts: &[&[u8]]) -> String {
    let a = stable_hash(&[parts, &[b"k1"]].concat());
    let b = stable_hash(&[parts, &[b"k2"]].concat());
    format!("{a:016x}{b:016x}")
}

/// The key of a chat call.
pub fn chat_key(prompt_version: Option<&str>, model: &str, req: &ChatRequest) -> String {
    let schema = req.json_schema.as_ref().map(ToString::to_string).unwrap_or_default();
    hex128(&[
        b"chat",
        prompt_version.unwrap_or("").as_bytes(),
        model.as_bytes(),
        &req.max_tokens.to_le_bytes(),
        schema.as_bytes(),
        req.system.as_bytes(),
        req.user.as_bytes(),
    ])
}

/// The key of one text's embedding.
pub fn embedding_key(model: &str, text: &str) -> String {
    hex128(&[b"embedding", model.as_bytes(), text.as_bytes()])
}
