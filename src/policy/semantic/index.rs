//! The in-memory index: per [`SemanticKey`], the entries' unit vectors searched exactly (flat):
//! the cosine similarity is a dot product, computed against every live entry of the key.
//!
//! Flat, not HNSW, yet: at 384 dimensions a lookup over 10,000 entries of one key is 3.8 M
//! multiply-adds, and it is exact, so the measured hit and false-hit rates are the ones served.
//! Measured (`benches/semantic_store.rs`, docs/BENCHMARKS.md "Semantic cache"): p50 6 ms at
//! 10,000 entries and 35 ms at 50,000 on a busy 2-core machine — about an embedding call's time
//! at the default capacity, and ten times what the arithmetic alone costs (an earlier
//! microbenchmark's 0.6 ms). Each entry is reached through two pointers, which likely makes the
//! scan wait on memory rather than arithmetic (not profiled yet). One contiguous vector array per key is the next step, before HNSW,
//! which would add a dependency, about half again the vectors' memory, a build at every start
//! (the index is rebuilt from the topic), and deletions (TTL, tombstones, eviction) it handles
//! poorly.
//! [`IndexLimits::capacity_per_key`] keeps each key within the flat range, and
//! [`IndexLimits::max_bytes`] the whole index within its memory (an entry of a 384-dimension
//! vector, a one-line question and a 300-byte answer counts about 4.4 KB).
//!
//! A hit is the most similar live entry at or above the threshold whose text the
//! [`guard`](super::guard) finds compatible; expired entries never answer and are dropped when
//! met. Memory is accounted per entry ([`SemanticIndex::bytes`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::entry::{unit_vector, SemanticEntry};
use super::guard::{Conflict, Literals};
use super::key::SemanticKey;

/// Bounds of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLimits {
    /// Entries kept per key; past it the oldest (by creation) is evicted.
    pub capacity_per_key: usize,
    /// Bytes the whole index may hold (see [`SemanticIndex::bytes`]); past it the oldest entry
    /// of any key is evicted.
    pub max_bytes: usize,
}

impl Default for IndexLimits {
    fn default() -> Self {
        Self { capacity_per_key: 10_000, max_bytes: 256 << 20 }
    }
}

/// An earlier answer found for a lookup.
#[derive(Debug, Clone)]
pub struct Hit {
    pub entry: Arc<SemanticEntry>,
    /// The cosine similarity of the two variable texts' embeddings.
    pub similarity: f32,
}

/// What a lookup found, for the answer and for the metrics.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub hit: Option<Hit>,
    /// The highest similarity of any live entry of the key (the similarity histogram's value).
    pub best: Option<f32>,
    /// Entries at or above the threshold the guard refused, most similar first.
    pub guarded: Vec<(f32, Conflict)>,
}

/// Why an entry is not added.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InsertError {
    #[error("a vector of {got} dimensions where this key's have {expected}")]
    Dimensions { expected: usize, got: usize },
    #[error("a vector with a value that is not finite, or of length zero")]
    Vector,
    #[error("already expired")]
    Expired,
}

struct Slot {
    record_key: String,
    entry: Arc<SemanticEntry>,
    literals: Literals,
    bytes: usize,
}

#[derive(Default)]
struct Partition {
    slots: Vec<Slot>,
}

impl Partition {
    fn dimensions(&self) -> Option<usize> {
        self.slots.first().map(|s| s.entry.vector.len())
    }
}

#[derive(Default)]
pub struct SemanticIndex {
    limits: IndexLimits,
    partitions: HashMap<SemanticKey, Partition>,
    /// The key of each record key's entry (a tombstone names only the record key).
    keys: HashMap<String, SemanticKey>,
    bytes: usize,
}

impl SemanticIndex {
    pub fn new(limits: IndexLimits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// Adds `entry` (normalising its vector), replacing the entry of the same record key;
    /// returns how many older entries were evicted to stay within the key's capacity.
    pub fn insert(&mut self, mut entry: SemanticEntry, now_ms: i64) -> Result<usize, InsertError> {
        if entry.expires_ms <= now_ms {
            return Err(InsertError::Expired);
        }
        entry.vector = unit_vector(&entry.vector).ok_or(InsertError::Vector)?;
        let record_key = entry.record_key();
        self.remove(&record_key);
        let partition = self.partitions.entry(entry.key.clone()).or_default();
        if let Some(expected) = partition.dimensions().filter(|d| *d != entry.vector.len()) {
            return Err(InsertError::Dimensions { expected, got: entry.vector.len() });
        }
        let literals = Literals::of(&entry.text);
        let bytes = std::mem::size_of::<Slot>()
            + 2 * record_key.len()
            + entry.approx_bytes()
            + literals.approx_bytes();
        self.keys.insert(record_key.clone(), entry.key.clone());
        self.bytes += bytes;
        partition.slots.push(Slot { record_key, entry: Arc::new(entry), literals, bytes });
        let mut evicted = 0;
        while partition.slots.len() > self.limits.capacity_per_key.max(1) {
            let oldest = (0..partition.slots.len())
                .min_by_key(|&i| partition.slots[i].entry.created_ms)
                .expect("a partition over capacity has entries");
            let slot = partition.slots.swap_remove(oldest);
            self.keys.remove(&slot.record_key);
            self.bytes -= slot.bytes;
            evicted += 1;
        }
        while self.bytes > self.limits.max_bytes && self.evict_oldest() {
            evicted += 1;
        }
        Ok(evicted)
    }

    /// Removes the oldest entry of any key (a scan of every entry: only when over the bytes).
    fn evict_oldest(&mut self) -> bool {
        let oldest = self
            .partitions
            .values()
            .flat_map(|p| &p.slots)
            .min_by_key(|s| s.entry.created_ms)
            .map(|s| s.record_key.clone());
        oldest.is_some_and(|k| self.remove(&k))
    }

    /// Removes the entry of `record_key` (a tombstone, a false-hit report); whether there was one.
    pub fn remove(&mut self, record_key: &str) -> bool {
        let Some(key) = self.keys.remove(record_key) else { return false };
        let Some(partition) = self.partitions.get_mut(&key) else { return false };
        if let Some(i) = partition.slots.iter().position(|s| s.record_key == record_key) {
            let slot = partition.slots.swap_remove(i);
            self.bytes -= slot.bytes;
        }
        if partition.slots.is_empty() {
            self.partitions.remove(&key);
        }
        true
    }

    /// The earlier answer for `text` (embedded as `vector`) under `key`: the most similar live
    /// entry with a similarity of at least `threshold` that the guard lets through.
    pub fn lookup(
        &mut self,
        key: &SemanticKey,
        vector: &[f32],
        text: &str,
        threshold: f32,
        now_ms: i64,
    ) -> Lookup {
        self.expire_key(key, now_ms);
        let Some(partition) = self.partitions.get(key) else { return Lookup::default() };
        let Some(query) = unit_vector(vector) else { return Lookup::default() };
        if partition.dimensions() != Some(query.len()) {
            return Lookup::default();
        }
        // One pass for the best similarity and the candidates; only those are sorted.
        let mut best = f32::NEG_INFINITY;
        let mut candidates: Vec<(f32, &Slot)> = Vec::new();
        for slot in &partition.slots {
            let similarity = dot(&query, &slot.entry.vector);
            best = best.max(similarity);
            if similarity >= threshold {
                candidates.push((similarity, slot));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut found = Lookup { best: Some(best), ..Lookup::default() };
        let mut literals = None;
        for (similarity, slot) in candidates {
            let mine = literals.get_or_insert_with(|| Literals::of(text));
            match slot.literals.conflict(mine) {
                None => {
                    found.hit = Some(Hit { entry: slot.entry.clone(), similarity });
                    break;
                }
                Some(conflict) => found.guarded.push((similarity, conflict)),
            }
        }
        found
    }

    /// Drops every expired entry; returns how many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let keys: Vec<SemanticKey> = self.partitions.keys().cloned().collect();
        keys.iter().map(|k| self.expire_key(k, now_ms)).sum()
    }

    fn expire_key(&mut self, key: &SemanticKey, now_ms: i64) -> usize {
        let Some(partition) = self.partitions.get_mut(key) else { return 0 };
        let before = partition.slots.len();
        let (keys, bytes) = (&mut self.keys, &mut self.bytes);
        partition.slots.retain(|s| {
            let live = s.entry.expires_ms > now_ms;
            if !live {
                keys.remove(&s.record_key);
                *bytes -= s.bytes;
            }
            live
        });
        let dropped = before - partition.slots.len();
        if partition.slots.is_empty() {
            self.partitions.remove(key);
        }
        dropped
    }

    /// Entries held (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Entries held under `key`.
    pub fn len_of(&self, key: &SemanticKey) -> usize {
        self.partitions.get(key).map_or(0, |p| p.slots.len())
    }

    /// Bytes the entries hold, roughly: vectors, texts, answers, literals and bookkeeping.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The dot product in eight independent lanes, which the compiler vectorises (a single running
/// sum cannot be reordered, so it would wait on each addition: three times slower, measured).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (xs, ys) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = xs.remainder().iter().zip(ys.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in xs.zip(ys) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
