//! The embedded vector store: every vector in memory, exact dot-product search, persisted to a
//! directory as `passages.jsonl` plus `vectors.f32` (little-endian, one row per passage).
//! Search is a linear scan: about 1 million 768-dimensional vectors (3 GiB of memory, tens of
//! milliseconds a query on one core) is the practical limit; beyond that use Qdrant.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use super::{Entry, StoreError};
use crate::avro::Passage;

pub struct Embedded {
    dir: PathBuf,
    dimensions: usize,
    entries: RwLock<Vec<Entry>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    id: String,
    text: String,
    source: String,
}

impl Embedded {
    pub fn open(dir: &Path, dimensions: usize) -> Result<Self, StoreError> {
        let invalid = |what: String| StoreError::Invalid(format!("{}: {what}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| invalid(format!("cannot create: {e}")))?;
        let (lines_path, vectors_path) = (dir.join("passages.jsonl"), dir.join("vectors.f32"));
        let mut entries = Vec::new();
        if lines_path.exists() {
            let text = std::fs::read_to_string(&lines_path).map_err(|e| invalid(e.to_string()))?;
            let bytes = std::fs::read(&vectors_path).map_err(|e| invalid(e.to_string()))?;
            let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            if bytes.len() != lines.len() * dimensions * 4 {
                return Err(invalid(format!(
                    "holds {} bytes of vectors for {} passages: not {dimensions}-dimensional \
                     (re-index after changing the embedding model)",
                    bytes.len(),
                    lines.len()
                )));
            }
            for (line, row) in lines.iter().zip(bytes.chunks_exact(dimensions * 4)) {
                let l: Line = serde_json::from_str(line).map_err(|e| invalid(e.to_string()))?;
                let vector = row
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                entries.push(Entry {
                    passage: Passage { id: l.id, text: l.text, score: 0.0, source: l.source },
                    vector,
                });
            }
        }
        Ok(Self { dir: dir.to_path_buf(), dimensions, entries: RwLock::new(entries) })
    }

    pub fn count(&self) -> usize {
        self.entries.read().expect("store lock").len()
    }

    pub fn upsert(&self, new: Vec<Entry>) -> Result<(), StoreError> {
        if let Some(bad) = new.iter().find(|e| e.vector.len() != self.dimensions) {
            return Err(StoreError::Invalid(format!(
                "passage '{}' has {} dimensions, the store {}",
                bad.passage.id,
                bad.vector.len(),
                self.dimensions
            )));
        }
        let mut entries = self.entries.write().expect("store lock");
        for e in new {
            match entries.iter_mut().find(|x| x.passage.id == e.passage.id) {
                Some(slot) => *slot = e,
                None => entries.push(e),
            }
        }
        self.persist(&entries)
    }

    /// Writes both files beside the old ones, then renames them over (vectors last).
    fn persist(&self, entries: &[Entry]) -> Result<(), StoreError> {
        let fail =
            |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", self.dir.display()));
        let mut lines = Vec::new();
        let mut vectors = Vec::with_capacity(entries.len() * self.dimensions * 4);
        for e in entries {
            let p = &e.passage;
            let line = Line { id: p.id.clone(), text: p.text.clone(), source: p.source.clone() };
            serde_json::to_writer(&mut lines, &line).expect("strings serialize");
            lines.push(b'\n');
            e.vector.iter().for_each(|x| vectors.extend_from_slice(&x.to_le_bytes()));
        }
        for (name, bytes) in [("passages.jsonl", &lines), ("vectors.f32", &vectors)] {
            let tmp = self.dir.join(format!(".{name}.tmp"));
            let mut f = std::fs::File::create(&tmp).map_err(fail)?;
            f.write_all(bytes).and_then(|_| f.sync_all()).map_err(fail)?;
            std::fs::rename(&tmp, self.dir.join(name)).map_err(fail)?;
        }
        Ok(())
    }

    pub fn search(&self, query: &[f32], k: usize) -> Vec<Passage> {
        let entries = self.entries.read().expect("store lock");
        let mut scored: Vec<(f32, &Entry)> = entries
            .iter()
            .filter(|e| e.vector.len() == query.len())
            .map(|e| (e.vector.iter().zip(query).map(|(a, b)| a * b).sum(), e))
            .collect();
        scored
            .sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.passage.id.cmp(&b.1.passage.id)));
        scored
            .into_iter()
            .take(k)
            .map(|(score, e)| Passage { score: f64::from(score), ..e.passage.clone() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, v: [f32; 2]) -> Entry {
        Entry {
            passage: Passage { id: id.into(), text: id.into(), score: 0.0, source: "t".into() },
            vector: v.to_vec(),
        }
    }

    #[test]
    fn upserts_persist_and_search_ranks_by_dot_product() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Embedded::open(dir.path(), 2).expect("open");
        s.upsert(vec![entry("a", [1.0, 0.0]), entry("b", [0.0, 1.0])]).expect("upsert");
        s.upsert(vec![entry("a", [0.6, 0.8])]).expect("replace");
        let reopened = Embedded::open(dir.path(), 2).expect("reopen");
        assert_eq!(reopened.count(), 2);
        let top = reopened.search(&[0.0, 1.0], 2);
        assert_eq!(top.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert!((top[1].score - 0.8).abs() < 1e-6);
        assert!(Embedded::open(dir.path(), 3).is_err(), "dimension mismatch is refused");
    }
}
