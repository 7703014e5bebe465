//! The background loops of a [`ReviewQueue`]: the tailer reads both topics into its state; the
//! committer moves the queue group's offsets past what is done — never backwards, whatever
//! another replica committed — and only then tombstones those items in the claims topic; the
//! finisher completes decisions a stopped replica left without their record; and new partitions
//! of the needs-human topic are followed. The committer commits only while the queue announces
//! itself ([`crate::kafka::presence`]), so `sluice replay` can see a console before it moves
//! the group. Every loop ends when the console's [`Shutdown`] is requested; the committer
//! commits what is done once more on its way out, then the presence is left.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use tokio::task::JoinHandle;

use super::assign::{partitions_of, TIMEOUT};
use super::replica::ReviewQueue;
use crate::call::now_ms;
use crate::console::events::{PartitionFollowed, QueueTrouble};
use crate::shutdown::Phase;

const COMMIT_EVERY: Duration = Duration::from_secs(2);
const PARTITIONS_EVERY: Duration = Duration::from_secs(30);

/// Starts the loops; they end when the queue's shutdown is requested.
pub fn start(queue: &Arc<ReviewQueue>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(tail(queue.clone())),
        tokio::spawn(commit_loop(queue.clone())),
        tokio::spawn(finish_loop(queue.clone())),
        tokio::spawn(follow_partitions(queue.clone())),
    ]
}

/// `work`, unless shutdown is requested first.
async fn unless_stopping<T>(
    queue: &ReviewQueue,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = queue.shutdown.reached(Phase::Draining) => None,
        out = work => Some(out),
    }
}

async fn tail(queue: Arc<ReviewQueue>) {
    let mut waits = crate::retry::infrastructure_backoff();
    while let Some(next) = unless_stopping(&queue, queue.consumer.recv()).await {
        match next {
            Ok(m) => {
                // A record whose decoding waits out a registry outage when the console stops
                // is dropped, uncommitted: it is read again at the next start.
                if unless_stopping(&queue, queue.read(&m)).await.is_none() {
                    return;
                }
                queue.state().error = None;
                waits = crate::retry::infrastructure_backoff();
            }
            Err(e) => {
                trouble(&queue, "read", &e.to_string());
                queue.state().error = Some(e.to_string());
                let wait = waits.next().unwrap_or(Duration::from_secs(5));
                if unless_stopping(&queue, tokio::time::sleep(wait)).await.is_none() {
                    return;
                }
            }
        }
    }
}

async fn commit_loop(queue: Arc<ReviewQueue>) {
    loop {
        let stopping = unless_stopping(&queue, tokio::time::sleep(COMMIT_EVERY)).await.is_none();
        // Not present (yet): a replay could not see this console, so it does not commit; what
        // is done stays done in the ledger for the next commit, here or in another replica.
        let present = if stopping { queue.present() } else { queue.announced().await };
        if present {
            commit_round(&queue).await;
        }
        if stopping {
            break;
        }
    }
    queue.stop_reading_claims();
    queue.leave().await;
}

/// Commits what is done and forgets it.
async fn commit_round(queue: &Arc<ReviewQueue>) {
    let (points, depth) = {
        let state = queue.state();
        let known = |p: i32| state.committed.get(&p).copied().unwrap_or(0);
        let points: Vec<_> =
            state.commit_points().into_iter().map(|(p, at)| (p, at, known(p))).collect();
        (points, state.depth())
    };
    crate::telemetry::ReviewQueueSize {
        stage: &queue.topics.stage,
        items: depth.iter().map(|d| d.items).sum(),
        oldest_seconds: depth
            .iter()
            .map(|d| d.oldest_ms)
            .min()
            .map_or(0, |o| (now_ms() - o) / 1000),
    }
    .emit();
    if points.is_empty() {
        return;
    }
    let (consumer, topic) = (queue.consumer.clone(), queue.topics.needs_human.clone());
    let committed = tokio::task::spawn_blocking(move || commit_forward(&consumer, &topic, &points))
        .await
        .expect("commit thread does not panic");
    match committed {
        Ok(Committed { confirmed, moved_back }) => {
            let forgotten: Vec<_> = {
                let mut state = queue.state();
                let suspected = std::mem::take(&mut state.suspected_back);
                for &(p, at) in &moved_back {
                    if !suspected.contains_key(&p) {
                        state.suspected_back.insert(p, at);
                        continue;
                    }
                    let error = format!(
                        "the group's commit of partition {p} was moved back to {at}: this \
                         console stopped committing it; restart the console"
                    );
                    trouble(queue, "moved back", &error);
                    state.moved_back.insert(p, at);
                }
                confirmed.into_iter().flat_map(|(p, o)| state.committed_at(p, o)).collect()
            };
            queue.tombstones(&forgotten);
            queue.unpark();
        }
        Err(e) => trouble(queue, "commit", &e.to_string()),
    }
}

/// What one commit round found: the group's commit per partition afterwards, and the
/// partitions whose commit someone else moved back.
struct Committed {
    confirmed: Vec<(i32, i64)>,
    moved_back: Vec<(i32, i64)>,
}

/// Commits each point `(partition, point, known)` that is past the group's current commit,
/// synchronously: a replica that reads more slowly than another never moves the group back
/// (blocking). A group commit below `known` — the commit this replica read or made — was
/// moved back by someone else (a replay this replica did not see): that partition is not
/// committed over, so the replay is not undone.
fn commit_forward(
    consumer: &StreamConsumer,
    topic: &str,
    points: &[(i32, i64, i64)],
) -> Result<Committed, KafkaError> {
    let mut asked = TopicPartitionList::new();
    for (p, _, _) in points {
        asked.add_partition(topic, *p);
    }
    let current = consumer.committed_offsets(asked, TIMEOUT)?;
    let mut forward = TopicPartitionList::new();
    let mut out = Committed { confirmed: Vec::with_capacity(points.len()), moved_back: vec![] };
    for &(p, point, known) in points {
        let now = current.find_partition(topic, p).and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        match now {
            Some(o) if o < known => out.moved_back.push((p, o)),
            Some(o) if o >= point => out.confirmed.push((p, o)),
            _ => {
                forward.add_partition_offset(topic, p, Offset::Offset(point))?;
                out.confirmed.push((p, point));
            }
        }
    }
    if forward.count() > 0 {
        consumer.commit(&forward, CommitMode::Sync)?;
    }
    Ok(out)
}

async fn finish_loop(queue: Arc<ReviewQueue>) {
    while unless_stopping(&queue, tokio::time::sleep(Duration::from_secs(5))).await.is_some() {
        let stale: Vec<_> = {
            let state = queue.state();
            // On this replica's clock: from when it applied the decision.
            let cutoff = now_ms() - queue.finish_after.as_millis() as i64;
            state.ledger.undone().filter(|d| d.seen_ms < cutoff).map(|d| d.item).collect()
        };
        for key in stale {
            if let Err(e) = queue.finish(key).await {
                trouble(&queue, "finish", &e.to_string());
            }
        }
    }
}

/// Reads partitions added to the needs-human topic after the start, from their beginning.
async fn follow_partitions(queue: Arc<ReviewQueue>) {
    while unless_stopping(&queue, tokio::time::sleep(PARTITIONS_EVERY)).await.is_some() {
        let known: Vec<i32> = queue.state().committed.keys().copied().collect();
        let (consumer, topic) = (queue.consumer.clone(), queue.topics.needs_human.clone());
        let added = tokio::task::spawn_blocking(move || -> Result<Vec<(i32, i64)>, String> {
            let n = partitions_of(&consumer, &topic).map_err(|e| e.to_string())?;
            let mut tpl = TopicPartitionList::new();
            let mut added = Vec::new();
            for p in (0..n).filter(|p| !known.contains(p)) {
                let (low, _) =
                    consumer.fetch_watermarks(&topic, p, TIMEOUT).map_err(|e| e.to_string())?;
                tpl.add_partition_offset(&topic, p, Offset::Offset(low))
                    .map_err(|e| e.to_string())?;
                added.push((p, low));
            }
            if !added.is_empty() {
                consumer.incremental_assign(&tpl).map_err(|e| e.to_string())?;
            }
            Ok(added)
        })
        .await
        .expect("metadata thread does not panic");
        match added {
            Ok(added) => {
                let mut state = queue.state();
                for (p, low) in added {
                    PartitionFollowed { stage: &queue.topics.stage, partition: p }.emit();
                    state.committed.insert(p, low);
                }
            }
            Err(e) => trouble(&queue, "partitions", &e),
        }
    }
}

fn trouble(queue: &ReviewQueue, what: &'static str, error: &str) {
    QueueTrouble { stage: &queue.topics.stage, what, error }.emit();
}
