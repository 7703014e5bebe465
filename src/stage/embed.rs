//! embed: splits the document into overlapping chunks of words and embeds them in
//! micro-batches, one provider call per batch; checks every vector's dimension.

use crate::avro::{Chunk, Envelope};
use crate::provider::{EmbedRequest, Provider};

use super::{Emit, StageContext, StageError};

pub struct Embed {
    provider: Provider,
    model: String,
    chunk_words: usize,
    chunk_overlap: usize,
    batch_size: usize,
    dimensions: usize,
}

impl Embed {
    pub fn new(
        provider: Provider,
        model: String,
        chunk_words: usize,
        chunk_overlap: usize,
        batch_size: usize,
        dimensions: usize,
    ) -> Self {
        Self { provider, model, chunk_words, chunk_overlap, batch_size, dimensions }
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let texts = chunk(&input.document.content, self.chunk_words, self.chunk_overlap);
        if texts.is_empty() {
            return Err(StageError::permanent("document content is empty: nothing to embed"));
        }
        let mut chunks = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let request = EmbedRequest { model: self.model.clone(), inputs: batch.to_vec() };
            let response = self.provider.embed(&request, cx.call_key(&input.document.id)).await?;
            if response.vectors.len() != batch.len() {
                return Err(StageError::retryable(format!(
                    "provider returned {} vectors for {} inputs",
                    response.vectors.len(),
                    batch.len()
                )));
            }
            for (text, vector) in batch.iter().zip(response.vectors) {
                if vector.len() != self.dimensions {
                    return Err(StageError::Fatal {
                        reason: format!(
                            "model '{}' returned {} dimensions, the topology says {}",
                            self.model,
                            vector.len(),
                            self.dimensions
                        ),
                    });
                }
                chunks.push(Chunk { index: chunks.len() as i32, text: text.clone(), vector });
            }
        }
        input.chunks = chunks;
        input.embedding_model = Some(self.model.clone());
        Ok(vec![Emit::main(input)])
    }
}

/// Windows of `size` words, each starting `size - overlap` words after the previous one.
pub fn chunk(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let step = size.saturating_sub(overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < words.len() {
        let end = (start + size).min(words.len());
        out.push(words[start..end].join(" "));
        if end == words.len() {
            break;
        }
        start += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chunk;

    #[test]
    fn chunks_overlap_and_cover_the_text() {
        let text = (0..10).map(|i| i.to_string()).collect::<Vec<_>>().join(" ");
        assert_eq!(chunk(&text, 4, 1), vec!["0 1 2 3", "3 4 5 6", "6 7 8 9"]);
        assert_eq!(chunk(&text, 20, 5), vec![text.clone()]);
        assert!(chunk("   ", 4, 1).is_empty());
    }
}
