//! Events of the response cache. Lookups are counted by stage, model and result (hit, miss), for
//! the hit ratio. A cache that cannot be read or written costs money on replays, never
//! correctness (the call goes to the model), so a failure is a warning and a count by backend and
//! operation; the error text goes to the log only.

use std::fmt::Display;
use std::sync::OnceLock;

use prometheus::{IntCounterVec, Opts};

use super::metrics;

/// `sluice_cache_errors_total{backend, operation}`, registered in the one registry on first use.
fn cache_errors() -> &'static IntCounterVec {
    static ERRORS: OnceLock<IntCounterVec> = OnceLock::new();
    ERRORS.get_or_init(|| {
        let c = IntCounterVec::new(
            Opts::new(
                "cache_errors_total",
                "Response cache reads and writes that failed (the call went to the model).",
            ),
            &["backend", "operation"],
        )
        .expect("valid");
        metrics().registry.register(Box::new(c.clone())).expect("unique metric");
        c
    })
}

/// `sluice_cache_lookups_total{stage, model, result}`, registered in the one registry on first use.
fn cache_lookups() -> &'static IntCounterVec {
    static LOOKUPS: OnceLock<IntCounterVec> = OnceLock::new();
    LOOKUPS.get_or_init(|| {
        let c = IntCounterVec::new(
            Opts::new(
                "cache_lookups_total",
                "Response cache lookups by stage, model and result (hit: no model call).",
            ),
            &["stage", "model", "result"],
        )
        .expect("valid");
        metrics().registry.register(Box::new(c.clone())).expect("unique metric");
        c
    })
}

/// The response cache was asked for the answers of one call: `hits` answered from it, `misses`
/// go to the model (an embeddings call looks up each input; a chat call one answer).
pub struct CacheLookups<'a> {
    pub stage: &'a str,
    /// The provider's model name of the logical model asked for.
    pub model: &'a str,
    pub hits: u64,
    pub misses: u64,
}

impl CacheLookups<'_> {
    pub fn emit(self) {
        let c = cache_lookups();
        c.with_label_values(&[self.stage, self.model, "hit"]).inc_by(self.hits);
        c.with_label_values(&[self.stage, self.model, "miss"]).inc_by(self.misses);
    }
}

/// Which cache failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheBackend {
    Disk,
    Redis,
}

impl CacheBackend {
    fn label(self) -> &'static str {
        match self {
            Self::Disk => "disk",
            Self::Redis => "redis",
        }
    }
}

/// A cache read that failed or found an entry it cannot decode: served as a miss.
pub struct CacheReadFailed<'a> {
    pub backend: CacheBackend,
    pub error: &'a dyn Display,
}

impl CacheReadFailed<'_> {
    pub fn emit(self) {
        cache_errors().with_label_values(&[self.backend.label(), "get"]).inc();
        tracing::warn!(
            backend = self.backend.label(),
            error = %self.error,
            "response cache read failed: calling the model"
        );
    }
}

/// A cache write that failed: the answer is not kept, and a replay pays for it again.
pub struct CacheWriteFailed<'a> {
    pub backend: CacheBackend,
    pub error: &'a dyn Display,
}

impl CacheWriteFailed<'_> {
    pub fn emit(self) {
        cache_errors().with_label_values(&[self.backend.label(), "put"]).inc();
        tracing::warn!(
            backend = self.backend.label(),
            error = %self.error,
            "response cache write failed: the answer is not kept"
        );
    }
}
