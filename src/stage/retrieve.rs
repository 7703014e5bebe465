//! retrieve: the top-k passages of a knowledge base by dot product with the document's
//! embedding. The knowledge base (JSON lines of `id`, `text`, optional `source`) is embedded with
//! the stage's model when the stage starts, and searched exactly in memory.

use std::path::Path;

use crate::avro::{Envelope, Passage};
use crate::provider::{CallKey, EmbedRequest, Provider};

use super::{Emit, StageContext, StageError};

pub struct Retrieve {
    provider: Provider,
    model: String,
    top_k: usize,
    passages: Vec<(Passage, Vec<f32>)>,
}

#[derive(serde::Deserialize)]
struct KbLine {
    id: String,
    text: String,
    #[serde(default)]
    source: Option<String>,
}

impl Retrieve {
    pub async fn load(
        provider: Provider,
        model: String,
        kb: &Path,
        top_k: usize,
    ) -> Result<Self, String> {
        let text = std::fs::read_to_string(kb)
            .map_err(|e| format!("cannot read knowledge base {}: {e}", kb.display()))?;
        let mut lines = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let l: KbLine = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: {e}", kb.display(), n + 1))?;
            lines.push(l);
        }
        let request = EmbedRequest {
            model: model.clone(),
            inputs: lines.iter().map(|l| l.text.clone()).collect(),
        };
        let key = CallKey { document_id: "knowledge-base", stage: "retrieve", attempt: 1 };
        let mut vectors = None;
        for attempt in 1..=5 {
            match provider.embed(&request, CallKey { attempt, ..key }).await {
                Ok(r) => {
                    vectors = Some(r.vectors);
                    break;
                }
                Err(e) if attempt == 5 => {
                    return Err(format!("embedding the knowledge base failed: {e}"))
                }
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                        .await
                }
            }
        }
        let source = kb.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        let passages = lines
            .into_iter()
            .zip(vectors.unwrap_or_default())
            .map(|(l, v)| {
                (
                    Passage {
                        id: l.id,
                        text: l.text,
                        score: 0.0,
                        source: l.source.unwrap_or_else(|| source.clone()),
                    },
                    v,
                )
            })
            .collect();
        Ok(Self { provider, model, top_k, passages })
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let query = match input.chunks.first() {
            Some(c) if input.embedding_model.as_deref() == Some(self.model.as_str()) => {
                c.vector.clone()
            }
            _ => {
                let request = EmbedRequest {
                    model: self.model.clone(),
                    inputs: vec![input.document.content.clone()],
                };
                let response =
                    self.provider.embed(&request, cx.call_key(&input.document.id)).await?;
                response
                    .vectors
                    .into_iter()
                    .next()
                    .ok_or_else(|| StageError::retryable("provider returned no vector"))?
            }
        };
        let mut scored: Vec<Passage> = self
            .passages
            .iter()
            .filter(|(_, v)| v.len() == query.len())
            .map(|(p, v)| Passage {
                score: f64::from(v.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>()),
                ..p.clone()
            })
            .collect();
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        scored.truncate(self.top_k);
        input.passages = scored;
        input.chunks.clear();
        Ok(vec![Emit::main(input)])
    }
}
