//! A review stage's queue in a console replica: one assign-only consumer reads the needs-human
//! topic from the queue group's committed offsets ([`super::assign`]) into a [`QueueState`], at
//! most its capacity at once; the review-claims topic is read from its beginning into the same
//! state's ledger ([`super::claims`]); the queue announces itself in `<group>.present` while it
//! commits. The background loops that keep it — reading, committing, finishing decisions left
//! unfinished, following new partitions — are in [`super::loops`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::assign::{assign, QueueError};
use super::claims::ClaimsEvents;
use super::ledger::ItemKey;
use super::queue::{Inserted, Item, QueueState};
use super::topics::QueueTopics;
use crate::avro::{Codec, CodecError, Decoded, Envelope, SchemaKind};
use crate::config::KafkaSettings;
use crate::config::Topology;
use crate::kafka::ledger::LogLedger;
use crate::kafka::presence::Presence;
use crate::kafka::{assign_only_config, producer_config, registry_settings};
use crate::shutdown::{Phase, Shutdown};

/// How a queue behaves: claims, finishing, and how much it holds.
#[derive(Debug, Clone, Copy)]
pub struct QueueOptions {
    pub claim_ttl: Duration,
    pub finish_after: Duration,
    /// The most needs-human records held in memory at once (per review stage).
    pub capacity: usize,
}

pub struct ReviewQueue {
    pub topics: QueueTopics,
    pub claim_ttl: Duration,
    pub finish_after: Duration,
    state: Arc<Mutex<QueueState>>,
    /// The review-claims topic, read in log order into `state`'s ledger.
    claims: LogLedger<QueueState>,
    pub(super) consumer: Arc<StreamConsumer>,
    pub(super) producer: FutureProducer,
    pub(super) codec: Arc<Codec>,
    /// Items this replica is finishing now.
    pub(super) finishing: Mutex<HashSet<ItemKey>>,
    /// The console's shutdown: every loop of this queue ends when it is requested.
    pub(super) shutdown: Shutdown,
    /// This queue's membership of `<group>.present` while the console runs.
    presence: Mutex<Option<Presence>>,
    settings: KafkaSettings,
}

impl ReviewQueue {
    /// Connects and reads the review-claims topic to its end; the needs-human records are read
    /// by the queue's loops ([`super::run`]).
    pub async fn start(
        t: &Topology,
        topics: QueueTopics,
        opts: QueueOptions,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, QueueError> {
        let writes = [
            (topics.approved.clone(), SchemaKind::Reviewed),
            (topics.rejected.clone(), SchemaKind::Reviewed),
            (topics.claims.clone(), SchemaKind::ReviewEvent),
        ];
        let codec = Arc::new(Codec::connect(&registry_settings(t), &writes).await?);
        let consumer: StreamConsumer = assign_only_config(&t.kafka, &topics.group).create()?;
        let producer: FutureProducer = producer_config(&t.kafka).create()?;
        // Present before the group's commits are read: a replay that sees no holder and moves
        // the group back can only do so before this console reads where to start.
        let joined = join(&t.kafka, &topics.group, &topics.needs_human, &shutdown).await;
        let (presence, joined_error) = match joined {
            Some(Ok(p)) => (Some(p), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let (consumer, state) = tokio::task::spawn_blocking(move || {
            let state = assign(&consumer, &topics, opts.capacity)?;
            Ok::<_, QueueError>(((consumer, topics), state))
        })
        .await
        .expect("assignment thread does not panic")?;
        let ((consumer, topics), state) = (consumer, state);
        let mut state = state;
        state.error = joined_error;
        let state = Arc::new(Mutex::new(state));
        let events = ClaimsEvents { stage: topics.stage.clone() };
        let kind = SchemaKind::ReviewEvent;
        let claims =
            LogLedger::open(&t.kafka, &topics.claims, kind, codec.clone(), state.clone(), events)
                .await?;
        let queue = Arc::new(Self {
            topics,
            claim_ttl: opts.claim_ttl,
            finish_after: opts.finish_after,
            state,
            claims,
            consumer: Arc::new(consumer),
            producer,
            codec,
            finishing: Mutex::new(HashSet::new()),
            shutdown,
            presence: Mutex::new(presence),
            settings: t.kafka.clone(),
        });
        Ok(queue)
    }

    /// Whether this queue announces itself in `<group>.present` now.
    pub fn present(&self) -> bool {
        self.presence.lock().expect("never poisoned").is_some()
    }

    /// Whether this queue announces itself in `<group>.present`, joining it when it does not
    /// yet. The join blocks a thread of its own until the membership is granted (not one of
    /// the runtime's: a console dropped meanwhile must not hold its runtime up).
    pub(super) async fn announced(&self) -> bool {
        if self.present() {
            return true;
        }
        let (group, topic) = (&self.topics.group, &self.topics.needs_human);
        match join(&self.settings, group, topic, &self.shutdown).await {
            Some(Ok(p)) => {
                *self.presence.lock().expect("never poisoned") = Some(p);
                true
            }
            Some(Err(error)) => {
                crate::console::events::QueueTrouble {
                    stage: &self.topics.stage,
                    what: "presence",
                    error: &error,
                }
                .emit();
                self.state().error = Some(error);
                false
            }
            None => false,
        }
    }

    /// Leaves `<group>.present`: this console no longer commits for the group.
    pub(super) async fn leave(&self) {
        let presence = self.presence.lock().expect("never poisoned").take();
        if let Some(p) = presence {
            tokio::task::spawn_blocking(move || p.leave())
                .await
                .expect("the presence thread does not panic");
        }
    }

    pub fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().expect("queue state lock is never poisoned")
    }

    /// Removes the steps of items behind the commit from the compacted claims topic. Best
    /// effort: a tombstone that is lost leaves one small record behind, nothing else.
    pub(super) fn tombstones(&self, items: &[ItemKey]) {
        for k in items {
            let key = format!("{}/{}", k.partition, k.offset);
            let record: FutureRecord<'_, String, [u8]> =
                FutureRecord::to(&self.topics.claims).key(&key).partition(0);
            drop(self.producer.send_result(record));
        }
    }

    /// Waits until the ledger applied the review-claims record at `offset`.
    pub(super) async fn applied(&self, offset: i64) -> bool {
        self.claims.wait_applied(offset, Duration::from_secs(10)).await
    }

    /// Stops reading the review-claims topic (the console is stopping).
    pub(super) fn stop_reading_claims(&self) {
        self.claims.stop();
    }

    /// Decodes a needs-human record, waiting out a registry that does not answer (the backoff
    /// of [`crate::retry`]): a record taken for undecodable during a passing outage would be
    /// shown as such. The tailer drops this wait when the console stops ([`super::loops`]).
    async fn decode(&self, m: &BorrowedMessage<'_>) -> Result<Decoded, CodecError> {
        let mut waits = crate::retry::infrastructure_backoff();
        loop {
            match self.codec.decode(m.payload()).await {
                Err(CodecError::RegistryUnavailable(e)) => {
                    self.state().error = Some(format!("schema registry unavailable: {e}"));
                    let wait = waits.next().unwrap_or(Duration::from_secs(5));
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Offers a needs-human record to the queue; parks its partition when the queue is full.
    pub(super) async fn read(&self, m: &BorrowedMessage<'_>) {
        let traceparent = m.headers().and_then(|h| {
            h.iter().find(|h| h.key == "traceparent").and_then(|h| h.value.map(<[u8]>::to_vec))
        });
        let envelope = self
            .decode(m)
            .await
            .map_err(|e| e.to_string())
            .and_then(|d| Envelope::from_value(d.kind, d.value).map_err(|e| e.to_string()));
        let key = ItemKey { partition: m.partition(), offset: m.offset() };
        let timestamp_ms = m.timestamp().to_millis().unwrap_or(0);
        let inserted = self.state().insert(Item { key, timestamp_ms, traceparent, envelope });
        if inserted == Inserted::Full {
            let capacity = self.state().capacity;
            crate::console::events::QueueFull {
                stage: &self.topics.stage,
                partition: key.partition,
                capacity,
            }
            .emit();
            self.park(key.partition);
        }
    }

    /// Stops reading a needs-human partition while the queue is full (what was fetched of it
    /// is dropped; it is read again from where it stopped).
    fn park(&self, partition: i32) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topics.needs_human, partition);
        match self.consumer.incremental_unassign(&tpl) {
            Ok(()) => {
                self.state().parked.insert(partition);
            }
            Err(e) => self.state().error = Some(format!("parking partition {partition}: {e}")),
        }
    }

    /// Reads parked partitions again when the queue has room.
    pub(super) fn unpark(&self) {
        let mut state = self.state();
        if state.parked.is_empty() || state.items.len() >= state.capacity {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &state.parked {
            let at = Offset::Offset(state.resume_at(p));
            if tpl.add_partition_offset(&self.topics.needs_human, p, at).is_err() {
                return;
            }
        }
        match self.consumer.incremental_assign(&tpl) {
            Ok(()) => state.parked.clear(),
            Err(e) => state.error = Some(format!("reading parked partitions again: {e}")),
        }
    }
}

/// Joins `<group>.present` (the membership is kept by a thread of the presence's own). The
/// join blocks a thread of its own until the membership is granted (not one of the runtime's:
/// a console dropped meanwhile must not hold its runtime up); `None` when the console stops
/// first.
async fn join(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    shutdown: &Shutdown,
) -> Option<Result<Presence, String>> {
    let (settings, group, topic) = (settings.clone(), group.to_owned(), topic.to_owned());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-console-presence".into())
        .spawn(move || {
            let _ = tx.send(Presence::announce(&settings, &group, &topic, "console"));
        })
        .expect("a thread can be spawned");
    tokio::select! {
        biased;
        () = shutdown.reached(Phase::Draining) => None,
        joined = rx => match joined {
            Ok(Ok(p)) => Some(Ok(p)),
            Ok(Err(e)) => Some(Err(format!("announcing this console in Kafka: {e}"))),
            Err(_) => None,
        },
    }
}
