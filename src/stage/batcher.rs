//! Micro-batching for embeddings: chunks from many records in flight are queued per tenant and
//! sent `batch_size` at a time, one API call per batch; a partial batch goes when its oldest chunk
//! has waited `linger`. Batches are sent concurrently, so a slow call never stops collection.
//!
//! Batching per tenant keeps cost attribution exact: a batch call's cost event names one tenant,
//! its id derives from the first record in the batch, and every record in the batch carries the
//! same event (removed as duplicates by id downstream), so the call is metered even if only some
//! of those records' outputs are ever delivered.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::models::{served_name, Models};
use crate::call::{CallLog, CallSite, CostEvent};
use crate::provider::{CallKey, EmbedRequest, ProviderError};

/// The cost events of the calls made for a request (failed ones too), and its vectors in input
/// order with the model that served them, or why they could not be had.
pub type Reply = (Vec<CostEvent>, Result<Embedded, ProviderError>);

#[derive(Debug, Clone)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub model: String,
}

struct Request {
    texts: Vec<String>,
    caller: Caller,
    reply: oneshot::Sender<Reply>,
}

/// Who asked: a batch's call is made as its first request's.
#[derive(Clone)]
struct Caller {
    /// Where the call is metered, when the record is.
    site: Option<CallSite>,
    document_id: String,
    tenant: String,
    stage: String,
    attempt: u32,
    /// The record's span: the batch's call is traced below the first request's.
    span: tracing::Span,
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

    /// Embeds `texts`; they may share calls with other records' chunks of the same tenant.
    pub async fn embed(&self, texts: Vec<String>, key: CallKey<'_>) -> Reply {
        let site = key.log.map(CallLog::reserve);
        let (reply, rx) = oneshot::channel();
        let caller = Caller {
            site,
            document_id: key.document_id.to_owned(),
            tenant: key.tenant.to_owned(),
            stage: key.stage.to_owned(),
            attempt: key.attempt,
            span: tracing::Span::current(),
        };
        let request = Request { texts, caller, reply };
        let stopped = || (Vec::new(), Err(ProviderError::unavailable("embedding batcher stopped")));
        if self.tx.send(request).await.is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }
}

struct Pending {
    reply: oneshot::Sender<Reply>,
    vectors: Vec<Option<Vec<f32>>>,
    missing: usize,
    model: String,
    events: Vec<CostEvent>,
}

/// A queued chunk: (request id, index in its request, text, queued at).
type Queued = (u64, usize, String, Instant);
/// A finished call: the (request, index) of each input, its cost events, the vectors or the error.
type BatchResult = (Vec<(u64, usize)>, Reply);

struct State {
    models: Models,
    batch_size: usize,
    linger: Duration,
    queues: BTreeMap<String, VecDeque<Queued>>,
    jobs: HashMap<u64, Pending>,
    callers: HashMap<u64, Caller>,
    done: mpsc::UnboundedSender<BatchResult>,
}

async fn run(models: Models, batch_size: usize, linger: Duration, mut rx: mpsc::Receiver<Request>) {
    let (done, mut done_rx) = mpsc::unbounded_channel::<BatchResult>();
    let mut s = State {
        models,
        batch_size,
        linger,
        queues: BTreeMap::new(),
        jobs: HashMap::new(),
        callers: HashMap::new(),
        done,
    };
    let mut next_id = 0u64;
    loop {
        let deadline = s.queues.values().filter_map(|q| q.front()).map(|q| q.3 + linger).min();
        tokio::select! {
            request = rx.recv() => {
                let Some(r) = request else { break };
                let n = r.texts.len();
                if n == 0 {
                    let _ = r.reply.send((Vec::new(), Ok(Embedded { vectors: Vec::new(), model: String::new() })));
                    continue;
                }
                let (id, now) = (next_id, Instant::now());
                next_id += 1;
                let queue = s.queues.entry(r.caller.tenant.clone()).or_default();
                queue.extend(r.texts.into_iter().enumerate().map(|(i, t)| (id, i, t, now)));
                let pending = Pending {
                    reply: r.reply,
                    vectors: vec![None; n],
                    missing: n,
                    model: String::new(),
                    events: Vec::new(),
                };
                s.jobs.insert(id, pending);
                s.callers.insert(id, r.caller);
            }
            Some((items, (events, result))) = done_rx.recv() => {
                deliver(&mut s, items, events, result);
                continue;
            }
            _ = sleep_until(deadline) => {}
        }
        flush(&mut s);
    }
}

/// Sends every full batch, and every partial one whose oldest chunk has lingered.
fn flush(s: &mut State) {
    let now = Instant::now();
    for queue in s.queues.values_mut() {
        while queue.len() >= s.batch_size || queue.front().is_some_and(|q| q.3 + s.linger <= now) {
            let take = queue.len().min(s.batch_size);
            let batch: Vec<Queued> = queue.drain(..take).collect();
            let items: Vec<(u64, usize)> = batch.iter().map(|(j, i, ..)| (*j, *i)).collect();
            let texts: Vec<String> = batch.into_iter().map(|(_, _, t, _)| t).collect();
            let caller = s.callers[&items[0].0].clone();
            let (models, done) = (s.models.clone(), s.done.clone());
            let span = caller.span.clone();
            tokio::spawn(
                async move {
                    let result = call(&models, texts, &caller).await;
                    let _ = done.send((items, result));
                }
                .instrument(span),
            );
        }
    }
    s.queues.retain(|_, q| !q.is_empty());
}

/// One embeddings call, metered at the first record's call site.
async fn call(models: &Models, texts: Vec<String>, caller: &Caller) -> Reply {
    let log = caller.site.as_ref().map(CallSite::log);
    let key = CallKey {
        document_id: &caller.document_id,
        tenant: &caller.tenant,
        stage: &caller.stage,
        attempt: caller.attempt,
        prompt_version: None,
        log: log.as_ref(),
        purpose: None,
    };
    let request = EmbedRequest { model: String::new(), inputs: texts };
    let served = models.gateway.embed(&models.choice.default, &request, key).await;
    let events = log.map(|l| l.take()).unwrap_or_default();
    let result = served.map(|s| Embedded {
        vectors: s.value.vectors,
        model: served_name(&s.provider, &s.model_name),
    });
    (events, result)
}

fn deliver(
    s: &mut State,
    items: Vec<(u64, usize)>,
    events: Vec<CostEvent>,
    result: Result<Embedded, ProviderError>,
) {
    for (job, _) in &items {
        if let Some(p) = s.jobs.get_mut(job) {
            for e in &events {
                if !p.events.iter().any(|x| x.event_id == e.event_id) {
                    p.events.push(e.clone());
                }
            }
        }
    }
    let result = match result {
        Ok(e) if e.vectors.len() != items.len() => Err(ProviderError::unavailable(format!(
            "provider returned {} vectors for {} inputs",
            e.vectors.len(),
            items.len()
        ))),
        other => other,
    };
    match result {
        Ok(embedded) => {
            for ((job, i), v) in items.into_iter().zip(embedded.vectors) {
                let Some(p) = s.jobs.get_mut(&job) else { continue };
                p.vectors[i] = Some(v);
                p.missing -= 1;
                p.model.clone_from(&embedded.model);
                if p.missing == 0 {
                    let p = s.jobs.remove(&job).expect("present");
                    s.callers.remove(&job);
                    let vectors = p.vectors.into_iter().map(|v| v.expect("all filled")).collect();
                    let _ = p.reply.send((p.events, Ok(Embedded { vectors, model: p.model })));
                }
            }
        }
        Err(error) => {
            for (job, _) in items {
                if let Some(p) = s.jobs.remove(&job) {
                    s.callers.remove(&job);
                    let _ = p.reply.send((p.events, Err(error.clone())));
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
