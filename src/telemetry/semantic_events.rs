//! Events of the semantic cache. Lookups are counted by stage and result — `hit` (an earlier
//! answer reused), `miss` (none similar enough), `refused` (one was similar enough but the
//! literal guard refused it: a near miss), `excluded` (the record may not use the cache),
//! `failed` (the lookup's embedding call failed: the model answers) — and the best similarity a
//! lookup found goes to a histogram per stage, to choose a threshold from. A failure costs money,
//! never correctness, so it is a warning; its text goes to the log only.

use std::fmt::Display;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

use super::metrics;

struct SemanticMetrics {
    lookups: IntCounterVec,
    similarity: HistogramVec,
    errors: IntCounterVec,
}

/// `sluice_semantic_cache_lookups_total{stage, result}`,
/// `sluice_semantic_cache_similarity{stage}` and `sluice_semantic_cache_errors_total{stage,
/// operation}`, registered in the one registry on first use.
fn semantic_metrics() -> &'static SemanticMetrics {
    static METRICS: OnceLock<SemanticMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let lookups = IntCounterVec::new(
            Opts::new(
                "semantic_cache_lookups_total",
                "Semantic cache lookups by stage and result (hit: no model call; refused: a \
                 similar entry the literal guard refused).",
            ),
            &["stage", "result"],
        )
        .expect("valid");
        let similarity = HistogramVec::new(
            HistogramOpts::new(
                "semantic_cache_similarity",
                "The highest cosine similarity a semantic cache lookup found among the live \
                 entries of its key.",
            )
            .buckets(vec![0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0]),
            &["stage"],
        )
        .expect("valid");
        let errors = IntCounterVec::new(
            Opts::new(
                "semantic_cache_errors_total",
                "Semantic cache steps that failed (embed: the lookup, put: keeping the answer).",
            ),
            &["stage", "operation"],
        )
        .expect("valid");
        let registry = &metrics().registry;
        for c in [&lookups, &errors] {
            registry.register(Box::new(c.clone())).expect("unique metric");
        }
        registry.register(Box::new(similarity.clone())).expect("unique metric");
        SemanticMetrics { lookups, similarity, errors }
    })
}

/// What a semantic cache lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemanticResult {
    Hit,
    Miss,
    Refused,
    Excluded,
    Failed,
}

impl SemanticResult {
    pub fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Refused => "refused",
            Self::Excluded => "excluded",
            Self::Failed => "failed",
        }
    }
}

/// One lookup of a stage's semantic cache.
pub struct SemanticLookup<'a> {
    pub stage: &'a str,
    pub result: SemanticResult,
    /// The best similarity among the key's live entries; `None` when it has none.
    pub best: Option<f32>,
}

impl SemanticLookup<'_> {
    pub fn emit(self) {
        let m = semantic_metrics();
        m.lookups.with_label_values(&[self.stage, self.result.label()]).inc();
        if let Some(best) = self.best {
            m.similarity.with_label_values(&[self.stage]).observe(f64::from(best));
        }
    }
}

/// A step of the semantic cache failed: `embed` (the record's answer comes from the model) or
/// `put` (the answer is not kept for later records).
pub struct SemanticCacheFailed<'a> {
    pub stage: &'a str,
    pub operation: &'static str,
    pub error: &'a dyn Display,
}

impl SemanticCacheFailed<'_> {
    pub fn emit(self) {
        semantic_metrics().errors.with_label_values(&[self.stage, self.operation]).inc();
        tracing::warn!(
            stage = self.stage,
            operation = self.operation,
            error = %self.error,
            "semantic cache {} failed: {}",
            self.operation,
            match self.operation {
                "embed" => "the model answers",
                _ => "the answer is not kept",
            }
        );
    }
}

/// A replica read the semantic cache's entries topic to its end at start (once per process).
pub struct SemanticCacheRead<'a> {
    pub topic: &'a str,
    /// Records read: entries, tombstones and skipped ones.
    pub records: u64,
    /// Entries in the index afterwards.
    pub entries: usize,
    pub elapsed: Duration,
}

impl SemanticCacheRead<'_> {
    pub fn emit(self) {
        tracing::info!(
            topic = self.topic,
            records = self.records,
            entries = self.entries,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "semantic cache read"
        );
    }
}
