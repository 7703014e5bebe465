//! embed: splits the document into overlapping windows of tokens (tiktoken) and embeds them in
//! micro-batches shared with other records in flight (see [`super::batcher`]); checks every
//! vector's dimension against the topology.

use std::time::Duration;

use super::batcher::Batcher;
use super::models::Models;
use super::{Emit, StageContext, StageError};
use crate::avro::{Chunk, Envelope};
use crate::tokens;

pub struct Embed {
    batcher: Batcher,
    /// The provider's model name, for token counting.
    tokenizer_model: String,
    chunk_tokens: usize,
    chunk_overlap: usize,
    dimensions: usize,
}

impl Embed {
    pub fn new(
        models: Models,
        chunk_tokens: usize,
        chunk_overlap: usize,
        batch_size: usize,
        linger: Duration,
        dimensions: usize,
    ) -> Self {
        let tokenizer_model = models.model_name(&models.choice.default).to_owned();
        let batcher = Batcher::spawn(models, batch_size, linger);
        Self { batcher, tokenizer_model, chunk_tokens, chunk_overlap, dimensions }
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let texts = tokens::chunk(
            &self.tokenizer_model,
            &input.document.content,
            self.chunk_tokens,
            self.chunk_overlap,
        );
        if texts.is_empty() {
            return Err(StageError::permanent("document content is empty: nothing to embed"));
        }
        let (events, embedded) =
            self.batcher.embed(texts.clone(), cx.call_key(&input.document)).await;
        if let Some(log) = cx.log {
            events.into_iter().for_each(|e| log.push(e));
        }
        let embedded = embedded?;
        if let Some(v) = embedded.vectors.iter().find(|v| v.len() != self.dimensions) {
            return Err(StageError::Fatal {
                reason: format!(
                    "model '{}' returned {}-dimensional vectors, the topology says {}",
                    embedded.model,
                    v.len(),
                    self.dimensions
                ),
            });
        }
        input.chunks = texts
            .into_iter()
            .zip(embedded.vectors)
            .enumerate()
            .map(|(i, (text, vector))| Chunk { index: i as i32, text, vector })
            .collect();
        input.embedding_model = Some(embedded.model);
        Ok(vec![Emit::main(input)])
    }
}
