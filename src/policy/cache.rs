//! The exact response cache: embedded on disk (one JSON file per key, written to a temporary
//! name and renamed, so a crash leaves either the whole entry or none) or in Redis. The key hashes everything
//! that determines an answer — template version, logical model, parameters and the full input —
//! so a hit is the answer the same call would have paid for. Each entry keeps the cost event of
//! the call that filled it: a hit re-emits it (the same id, removed as a duplicate when it was
//! already delivered), which also covers a crash between the call and its event's delivery.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::resp::Redis;
use crate::call::{stable_hash, CostEvent};
use crate::config::CacheSpec;
use crate::provider::ChatRequest;

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

/// Where answers are kept.
pub enum ResponseCache {
    /// A directory: one file per answer. Processes share it only if they share the directory.
    Disk(DiskCache),
    /// Redis: shared by every replica that points at it; entries expire after `ttl`.
    Redis { client: Redis, ttl: Duration },
}

#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
}

impl ResponseCache {
    pub fn open(spec: &CacheSpec) -> Result<Self, String> {
        Ok(match spec {
            CacheSpec::Embedded { path } => Self::Disk(
                DiskCache::open(path)
                    .map_err(|e| format!("response cache {}: {e}", path.display()))?,
            ),
            CacheSpec::Redis { url, ttl } => {
                Self::Redis { client: Redis::new(url, 8).map_err(|e| e.to_string())?, ttl: *ttl }
            }
        })
    }

    /// The entry under `key`; an unreadable entry or an unreachable Redis is a miss.
    pub async fn get(&self, key: &str) -> Option<Entry> {
        match self {
            Self::Disk(d) => d.get(key).await,
            Self::Redis { client, .. } => match client.get(&redis_key(key)).await {
                Ok(bytes) => serde_json::from_slice(&bytes?).ok(),
                Err(e) => {
                    tracing::warn!(error = %e, "response cache unreachable: calling the model");
                    None
                }
            },
        }
    }

    pub async fn put(&self, key: &str, entry: &Entry) {
        match self {
            Self::Disk(d) => d.put(key, entry).await,
            Self::Redis { client, ttl } => {
                let bytes = serde_json::to_vec(entry).expect("entries serialize");
                if let Err(e) = client.set(&redis_key(key), &bytes, *ttl).await {
                    tracing::warn!(error = %e, "cannot write response cache entry to redis");
                }
            }
        }
    }
}

fn redis_key(key: &str) -> String {
    format!("sluice:cache:{key}")
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

impl DiskCache {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The entry under `key`; an unreadable entry is a miss (and is overwritten on the next put).
    pub async fn get(&self, key: &str) -> Option<Entry> {
        let bytes = tokio::fs::read(self.path(key)).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub async fn put(&self, key: &str, entry: &Entry) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = self.path(key);
        // A temporary name of its own per write, so concurrent writers never share one.
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        let bytes = serde_json::to_vec(entry).expect("entries serialize");
        let write = async {
            tokio::fs::create_dir_all(path.parent().expect("entries live in a subdirectory"))
                .await?;
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            // A cache that cannot write costs money on replays, not correctness.
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write response cache entry");
        }
    }
}
