//! The Redis response cache on the maintained `redis` client: one multiplexed connection per
//! process, reconnected by its connection manager. Every command's reply is matched to the
//! command that asked for it, also when the caller is cancelled between writing the command and
//! reading the reply (a stage deadline or timeout): the reply is then discarded, never handed to
//! the next caller — a cached answer can only ever be read under its own key.

use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::Entry;
use crate::telemetry::{CacheBackend, CacheReadFailed, CacheWriteFailed};

/// How long a cache command may take before it counts as a miss (or an unkept write): a slow
/// cache must not hold a model call up for long.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Connection attempts are not retried here: a command that finds Redis unreachable is a miss at
/// once, and the next command tries to connect again.
const RECONNECT_ATTEMPTS: usize = 0;

pub struct RedisCache {
    client: redis::Client,
    /// Made on first use, inside the runtime; it connects lazily and reconnects by itself.
    manager: OnceLock<ConnectionManager>,
    ttl: Duration,
}

impl RedisCache {
    /// `redis://host:port[/db]`; the connection is made on first use, so an unreachable Redis
    /// at startup only means misses until it is reachable.
    pub fn open(url: &str, ttl: Duration) -> Result<Self, redis::RedisError> {
        Ok(Self { client: redis::Client::open(url)?, manager: OnceLock::new(), ttl })
    }

    fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        if let Some(m) = self.manager.get() {
            return Ok(m.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_ATTEMPTS);
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        // Two first callers at once: one manager wins, the other is dropped unused.
        Ok(self.manager.get_or_init(|| manager).clone())
    }

    /// The entry under `key`; an unreachable Redis or an undecodable entry is a miss.
    pub async fn get(&self, key: &str) -> Option<Entry> {
        let read = async {
            let bytes: Option<Vec<u8>> = self.connection()?.get(redis_key(key)).await?;
            Ok::<_, redis::RedisError>(bytes)
        };
        let bytes = match read.await {
            Ok(bytes) => bytes?,
            Err(e) => {
                CacheReadFailed { backend: CacheBackend::Redis, error: &e }.emit();
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(entry) => Some(entry),
            Err(e) => {
                let error = format!("undecodable entry: {e}");
                CacheReadFailed { backend: CacheBackend::Redis, error: &error }.emit();
                None
            }
        }
    }

    /// Keeps `entry` under `key` for the cache's ttl.
    pub async fn put(&self, key: &str, entry: &Entry) {
        let bytes = serde_json::to_vec(entry).expect("entries serialize");
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let write = async {
            let () = self.connection()?.pset_ex(redis_key(key), bytes, ttl_ms).await?;
            Ok::<_, redis::RedisError>(())
        };
        if let Err(e) = write.await {
            CacheWriteFailed { backend: CacheBackend::Redis, error: &e }.emit();
        }
    }
}

fn redis_key(key: &str) -> String {
    format!("sluice:cache:{key}")
}
