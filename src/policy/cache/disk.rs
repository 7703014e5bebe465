//! The embedded response cache: one JSON file per key in a directory, written to a temporary
//! name of its own and renamed, so a crash leaves either the whole entry or none.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Entry;
use crate::telemetry::{CacheBackend, CacheReadFailed, CacheWriteFailed};

#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
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
        let path = self.path(key);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                let error = format!("{}: {e}", path.display());
                CacheReadFailed { backend: CacheBackend::Disk, error: &error }.emit();
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(entry) => Some(entry),
            Err(e) => {
                let error = format!("{}: undecodable entry: {e}", path.display());
                CacheReadFailed { backend: CacheBackend::Disk, error: &error }.emit();
                None
            }
        }
    }

    pub async fn put(&self, key: &str, entry: &Entry) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = self.path(key);
        // A temporary name of its own per write, so concurrent writers never share one.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        let bytes = serde_json::to_vec(entry).expect("entries serialize");
        let write = async {
            tokio::fs::create_dir_all(path.parent().expect("entries live in a subdirectory"))
                .await?;
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            let error = format!("{}: {e}", self.dir.display());
            CacheWriteFailed { backend: CacheBackend::Disk, error: &error }.emit();
        }
    }
}
