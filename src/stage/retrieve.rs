//! retrieve: the top-k passages for a document from a vector store, by dot product with the
//! document's embedding (the mean of its chunk vectors when upstream embedded it with the same
//! model, else one embedding call). [`index_knowledge_base`] fills a store from JSON lines
//! (`id`, `text`, optional `source`); `sluice index` and the stage's start-up both use it.

use std::path::{Path, PathBuf};

use super::models::{served_name, Models};
use super::{Emit, StageContext, StageError};
use crate::avro::{Envelope, Passage};
use crate::config::StoreSpec;
use crate::provider::{CallKey, EmbedRequest, ProviderError};
use crate::retry::with_retries;
use crate::store::{Entry, StoreError, VectorStore};
use crate::tokens;

pub struct Retrieve {
    models: Models,
    store: VectorStore,
    top_k: usize,
}

/// Why the stage cannot start, or a knowledge base cannot be indexed.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read knowledge base {}", path.display())]
    ReadKnowledgeBase {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}", path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("provider returned {got} vectors for {expected} passages")]
    VectorCount { got: usize, expected: usize },
    #[error("embedding the knowledge base failed")]
    Embed(#[source] ProviderError),
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Unavailable(_) => StageError::retryable(e.to_string()),
            StoreError::Invalid(_) => StageError::Fatal { reason: e.to_string() },
            StoreError::Credentials(source) => {
                StageError::Fatal { reason: format!("{e}: {source}") }
            }
        }
    }
}

impl Retrieve {
    /// Opens the store; indexes `knowledge_base` into it when the store is empty.
    pub async fn open(
        models: Models,
        store: &StoreSpec,
        knowledge_base: Option<&Path>,
        top_k: usize,
        dimensions: usize,
    ) -> Result<Self, RetrieveError> {
        let store = VectorStore::open(store, dimensions).await?;
        if let Some(kb) = knowledge_base {
            if store.count().await? == 0 {
                index_knowledge_base(&models, &store, kb, |_| {}).await?;
            }
        }
        Ok(Self { models, store, top_k })
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let own = self
            .models
            .gateway
            .model(&self.models.choice.default)
            .map(|m| served_name(&m.provider, &m.name));
        let query = match input.chunks.as_slice() {
            chunks @ [_, ..] if input.embedding_model == own => {
                mean(chunks.iter().map(|c| c.vector.as_slice()))
            }
            _ => {
                let name = self.models.model_name(&self.models.choice.default);
                let text = tokens::truncate(name, &input.document.content, 512);
                let request = EmbedRequest { model: String::new(), inputs: vec![text] };
                let served = self
                    .models
                    .gateway
                    .embed(&self.models.choice.default, &request, cx.call_key(&input.document))
                    .await?;
                served
                    .value
                    .vectors
                    .into_iter()
                    .next()
                    .ok_or_else(|| StageError::retryable("provider returned no vector"))?
            }
        };
        input.passages = self.store.search(&query, self.top_k).await?;
        input.chunks.clear();
        Ok(vec![Emit::main(input)])
    }
}

/// The normalised mean of vectors.
fn mean<'a>(vectors: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    for v in vectors {
        if sum.is_empty() {
            sum = vec![0.0; v.len()];
        }
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        sum.iter_mut().for_each(|x| *x /= norm);
    }
    sum
}

#[derive(serde::Deserialize)]
struct KbLine {
    id: String,
    text: String,
    #[serde(default)]
    source: Option<String>,
}

/// Embeds every passage of a JSON-lines knowledge base and upserts it; `progress` is told how
/// many passages are done. Returns the number indexed.
pub async fn index_knowledge_base(
    models: &Models,
    store: &VectorStore,
    kb: &Path,
    mut progress: impl FnMut(usize),
) -> Result<usize, RetrieveError> {
    let text = std::fs::read_to_string(kb)
        .map_err(|source| RetrieveError::ReadKnowledgeBase { path: kb.to_path_buf(), source })?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let l: KbLine = serde_json::from_str(line).map_err(|source| RetrieveError::BadLine {
            path: kb.to_path_buf(),
            line: n + 1,
            source,
        })?;
        lines.push(l);
    }
    let default_source =
        kb.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    let mut done = 0;
    for batch in lines.chunks(64) {
        let request = EmbedRequest {
            model: String::new(),
            inputs: batch.iter().map(|l| l.text.clone()).collect(),
        };
        let call = |attempt| {
            let key = CallKey::new(&batch[0].id, "index", attempt);
            models.gateway.embed(&models.choice.default, &request, key)
        };
        let retryable =
            |e: &ProviderError| e.is_retryable().then(|| e.retry_after().unwrap_or_default());
        let served = with_retries(8, call, retryable).await.map_err(RetrieveError::Embed)?;
        let vectors = served.value.vectors;
        if vectors.len() != batch.len() {
            return Err(RetrieveError::VectorCount { got: vectors.len(), expected: batch.len() });
        }
        let entries = batch
            .iter()
            .zip(vectors)
            .map(|(l, vector)| Entry {
                passage: Passage {
                    id: l.id.clone(),
                    text: l.text.clone(),
                    score: 0.0,
                    source: l.source.clone().unwrap_or_else(|| default_source.clone()),
                },
                vector,
            })
            .collect();
        store.upsert(entries).await?;
        done += batch.len();
        progress(done);
    }
    Ok(done)
}
