//! Micro-batching for embeddings: chunks from many records in flight are queued and sent
//! `batch_size` at a time, one API call per batch; a partial batch goes when its oldest chunk
//! has waited `linger`. Batches are sent concurrently, so a slow call never stops collection.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::models::{served_name, Models};
use crate::provider::{CallKey, EmbedRequest, ProviderError};

type Reply = Result<Embedded, ProviderError>;

/// The vectors of one request, in input order, and the model that served them.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub model: String,
}

struct Request {
    texts: Vec<String>,
    document_id: String,
    attempt: u32,
    reply: oneshot::Sender<Reply>,
}

/// A handle to the batching task; cloning shares the queue.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Request>,
}

impl Batcher {
    pub fn spawn(models: Models, batch_size: usize, linger: Duration) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(models, batch_size, linger, rx));
        Self { tx }
    }

    /// Embeds `texts`; they may share calls with other records' chunks.
    pub async fn embed(&self, texts: Vec<String>, key: CallKey<'_>) -> Reply {
        let (reply, rx) = oneshot::channel();
        let request =
            Request { texts, document_id: key.document_id.to_owned(), attempt: key.attempt, reply };
        self.tx
            .send(request)
            .await
            .map_err(|_| ProviderError::unavailable("embedding batcher stopped"))?;
        rx.await.map_err(|_| ProviderError::unavailable("embedding batcher stopped"))?
    }
}

struct Pending {
    reply: oneshot::Sender<Reply>,
    vectors: Vec<Option<Vec<f32>>>,
    missing: usize,
    model: String,
}

type BatchResult = (Vec<(u64, usize)>, Result<(Vec<Vec<f32>>, String), ProviderError>);

async fn run(models: Models, batch_size: usize, linger: Duration, mut rx: mpsc::Receiver<Request>) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<BatchResult>();
    let mut queue: VecDeque<(u64, usize, String, Instant)> = VecDeque::new();
    let mut jobs: HashMap<u64, Pending> = HashMap::new();
    let mut next_id = 0u64;
    let mut key_of_batch = String::new();
    let mut attempt = 1;
    loop {
        let deadline = queue.front().map(|(.., at)| *at + linger);
        tokio::select! {
            request = rx.recv() => {
                let Some(r) = request else { break };
                if r.texts.is_empty() {
                    let _ = r.reply.send(Ok(Embedded { vectors: Vec::new(), model: String::new() }));
                    continue;
                }
                let id = next_id;
                next_id += 1;
                let now = Instant::now();
                for (i, t) in r.texts.into_iter().enumerate() {
                    queue.push_back((id, i, t, now));
                }
                let n = queue.iter().filter(|q| q.0 == id).count();
                jobs.insert(id, Pending { reply: r.reply, vectors: vec![None; n], missing: n, model: String::new() });
                key_of_batch = r.document_id;
                attempt = r.attempt;
            }
            Some((items, result)) = done_rx.recv() => {
                deliver(&mut jobs, items, result);
                continue;
            }
            _ = sleep_until(deadline) => {}
        }
        // Full batches go at once; a partial one when its oldest chunk has lingered.
        while queue.len() >= batch_size
            || queue.front().is_some_and(|(.., at)| *at + linger <= Instant::now())
        {
            let take = queue.len().min(batch_size);
            let batch: Vec<_> = queue.drain(..take).collect();
            let items: Vec<(u64, usize)> = batch.iter().map(|(j, i, ..)| (*j, *i)).collect();
            let texts: Vec<String> = batch.into_iter().map(|(_, _, t, _)| t).collect();
            let (models, done, doc) = (models.clone(), done_tx.clone(), key_of_batch.clone());
            tokio::spawn(async move {
                let key = CallKey { document_id: &doc, stage: "embed", attempt };
                let request = EmbedRequest { model: String::new(), inputs: texts };
                let result = models
                    .gateway
                    .embed(&models.choice.default, &request, key)
                    .await
                    .map(|s| (s.value.vectors, served_name(&s.provider, &s.model_name)));
                let _ = done.send((items, result));
            });
        }
    }
}

fn deliver(
    jobs: &mut HashMap<u64, Pending>,
    items: Vec<(u64, usize)>,
    result: Result<(Vec<Vec<f32>>, String), ProviderError>,
) {
    match result {
        Ok((vectors, model)) if vectors.len() == items.len() => {
            for ((job, i), v) in items.into_iter().zip(vectors) {
                let Some(p) = jobs.get_mut(&job) else { continue };
                p.vectors[i] = Some(v);
                p.missing -= 1;
                p.model = model.clone();
                if p.missing == 0 {
                    let p = jobs.remove(&job).expect("present");
                    let vectors = p.vectors.into_iter().map(|v| v.expect("all filled")).collect();
                    let _ = p.reply.send(Ok(Embedded { vectors, model: p.model }));
                }
            }
        }
        other => {
            let error = match other {
                Err(e) => e,
                Ok((v, _)) => ProviderError::unavailable(format!(
                    "provider returned {} vectors for {} inputs",
                    v.len(),
                    items.len()
                )),
            };
            for (job, _) in items {
                if let Some(p) = jobs.remove(&job) {
                    let _ = p.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
