//! Vector stores for the retrieve stage and `sluice index`, behind a closed enum: an embedded
//! store (exact search in process, persisted to a directory), Qdrant over its REST API, and
//! PostgreSQL with pgvector.

mod embedded;
mod pgvector;
mod qdrant;

pub use embedded::Embedded;
pub use pgvector::Pgvector;
pub use qdrant::Qdrant;

use crate::avro::Passage;
use crate::config::StoreSpec;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or failed: try again later.
    #[error("vector store unavailable: {0}")]
    Unavailable(String),
    /// The store's content or configuration is wrong: an operator must act.
    #[error("vector store: {0}")]
    Invalid(String),
    /// The store's API key cannot be read or used.
    #[error("vector store api key")]
    Credentials(#[source] crate::provider::ProviderBuildError),
}

/// A passage with its vector, as stored.
#[derive(Debug, Clone)]
pub struct Entry {
    pub passage: Passage,
    pub vector: Vec<f32>,
}

pub enum VectorStore {
    Embedded(Embedded),
    Qdrant(Qdrant),
    /// Boxed: its connection settings are several times the other stores' size.
    Pgvector(Box<Pgvector>),
}

impl VectorStore {
    /// Opens (creating if needed) the store for vectors of `dimensions`.
    pub async fn open(spec: &StoreSpec, dimensions: usize) -> Result<Self, StoreError> {
        Ok(match spec {
            StoreSpec::Embedded { path } => Self::Embedded(Embedded::open(path, dimensions)?),
            StoreSpec::Qdrant { url, collection, api_key } => {
                Self::Qdrant(Qdrant::open(url, collection, api_key.as_ref(), dimensions).await?)
            }
            StoreSpec::Pgvector { url, password, table } => Self::Pgvector(Box::new(
                Pgvector::open(url, password.as_ref(), table, dimensions).await?,
            )),
        })
    }

    /// Inserts or replaces entries by passage id.
    pub async fn upsert(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        match self {
            Self::Embedded(s) => s.upsert(entries),
            Self::Qdrant(s) => s.upsert(entries).await,
            Self::Pgvector(s) => s.upsert(entries).await,
        }
    }

    /// The `k` passages with the highest dot product with `vector`, best first, with scores.
    pub async fn search(&self, vector: &[f32], k: usize) -> Result<Vec<Passage>, StoreError> {
        match self {
            Self::Embedded(s) => Ok(s.search(vector, k)),
            Self::Qdrant(s) => s.search(vector, k).await,
            Self::Pgvector(s) => s.search(vector, k).await,
        }
    }

    pub async fn count(&self) -> Result<usize, StoreError> {
        match self {
            Self::Embedded(s) => Ok(s.count()),
            Self::Qdrant(s) => s.count().await,
            Self::Pgvector(s) => s.count().await,
        }
    }
}
