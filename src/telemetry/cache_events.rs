//! Events of the response cache. A cache that cannot be read or written costs money on replays,
//! never correctness (the call goes to the model), so a failure is a warning and a count by
//! backend and operation; the error text goes to the log only.

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
