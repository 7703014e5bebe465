//! A review stage's queue in a console replica: one assign-only consumer reads the needs-human
//! topic from the queue group's committed offsets and the review-claims topic from its
//! beginning into a [`QueueState`]. The background loops that keep it — reading, committing,
//! finishing decisions left unfinished, following new partitions — are in [`super::loops`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::ledger::ItemKey;
use super::queue::{Inserted, Item, QueueState};
use crate::avro::{Codec, CodecError, Decoded, Envelope, ReviewEvent, SchemaKind};
use crate::call::now_ms;
use crate::config::KafkaSettings;
use crate::config::{StageSpec, Topology};
use crate::console::events::{ClaimSkipped, QueueTrouble};
use crate::kafka::ledger::{Book, LedgerEvents, LogLedger};
use crate::kafka::presence::Presence;
use crate::kafka::{assign_only_config, producer_config, registry_settings};
use crate::shutdown::Shutdown;

/// How long every blocking metadata or offset request may take.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
    #[error(transparent)]
    Claims(#[from] crate::kafka::ledger::LedgerError),
    #[error(
        "topic '{0}' does not exist: create the topology's topics (`sluice topics create`; \
         `sluice dev` creates them)"
    )]
    MissingTopic(String),
}

/// The topics and group of one review stage's queue.
#[derive(Debug, Clone)]
pub struct QueueTopics {
    pub stage: String,
    pub needs_human: String,
    pub approved: String,
    pub rejected: String,
    pub claims: String,
    pub group: String,
}

impl QueueTopics {
    pub fn of(spec: &StageSpec) -> Option<Self> {
        let (needs_human, approved, rejected) = spec.review_queue()?;
        Some(Self {
            stage: spec.name.clone(),
            needs_human: needs_human.to_owned(),
            approved: approved.to_owned(),
            rejected: rejected.to_owned(),
            claims: spec.review_claims_topic()?,
            group: spec.review_queue_group()?,
        })
    }
}

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
        let (consumer, state) = tokio::task::spawn_blocking(move || {
            let state = assign(&consumer, &topics, opts.capacity)?;
            Ok::<_, QueueError>(((consumer, topics), state))
        })
        .await
        .expect("assignment thread does not panic")?;
        let ((consumer, topics), state) = (consumer, state);
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
            presence: Mutex::new(None),
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
        let (settings, group) = (self.settings.clone(), self.topics.group.clone());
        let topic = self.topics.needs_human.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sluice-console-presence".into())
            .spawn(move || {
                let _ = tx.send(Presence::announce(&settings, &group, &topic, "console"));
            })
            .expect("a thread can be spawned");
        let Ok(joined) = rx.await else { return false };
        match joined {
            Ok(p) => {
                *self.presence.lock().expect("never poisoned") = Some(p);
                true
            }
            Err(e) => {
                let error = format!("announcing this console in Kafka: {e}");
                crate::console::events::QueueTrouble {
                    stage: &self.topics.stage,
                    what: "presence",
                    error: &error,
                }
                .emit();
                self.state().error = Some(error);
                false
            }
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
    /// shown as such.
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

/// Assigns the needs-human partitions at the group's commits (blocking); checks that the
/// claims topic exists (the ledger reads it).
fn assign(
    consumer: &StreamConsumer,
    topics: &QueueTopics,
    capacity: usize,
) -> Result<QueueState, QueueError> {
    let timeout = TIMEOUT;
    partitions_of(consumer, &topics.claims)?;
    let partitions = partitions_of(consumer, &topics.needs_human)?;
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(&topics.needs_human, p);
    }
    let committed = committed_offsets(consumer, &wanted)?;
    let mut state = QueueState::new(capacity);
    let mut tpl = TopicPartitionList::new();
    for e in committed.elements() {
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => consumer.fetch_watermarks(&topics.needs_human, e.partition(), timeout)?.0,
        };
        state.committed.insert(e.partition(), at);
        tpl.add_partition_offset(&topics.needs_human, e.partition(), Offset::Offset(at))?;
    }
    consumer.assign(&tpl)?;
    Ok(state)
}

/// The group's commits, waiting (up to a minute, with the backoff of [`crate::retry`]) while a
/// fresh broker still loads or elects the group's coordinator (blocking).
fn committed_offsets(
    consumer: &StreamConsumer,
    wanted: &TopicPartitionList,
) -> Result<TopicPartitionList, KafkaError> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    let mut waits = crate::retry::infrastructure_backoff();
    loop {
        match consumer.committed_offsets(wanted.clone(), TIMEOUT) {
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        Code::NotCoordinator
                            | Code::CoordinatorLoadInProgress
                            | Code::CoordinatorNotAvailable
                    )
                ) && std::time::Instant::now() < give_up =>
            {
                std::thread::sleep(waits.next().unwrap_or(Duration::from_secs(1)));
            }
            other => return other,
        }
    }
}

/// How many partitions `topic` has; a missing topic is an error naming it (blocking).
pub(super) fn partitions_of(consumer: &StreamConsumer, topic: &str) -> Result<i32, QueueError> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    match metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32 {
        0 => Err(QueueError::MissingTopic(topic.to_owned())),
        n => Ok(n),
    }
}

/// The review-claims topic is read in log order into the queue's ledger.
impl Book for QueueState {
    type Entry = ReviewEvent;

    fn apply(&mut self, offset: i64, entry: Option<ReviewEvent>) {
        // A tombstone (an item behind the queue's commit) or a record no replica can read:
        // nothing to apply, but the offset is passed alike by every replica.
        self.ledger.apply(offset, entry.as_ref(), now_ms());
    }
}

/// The claims ledger's reader reports as the console's typed events.
struct ClaimsEvents {
    stage: String,
}

impl LedgerEvents for ClaimsEvents {
    fn read_failed(&self, _topic: &str, error: &rdkafka::error::KafkaError) {
        let error = error.to_string();
        QueueTrouble { stage: &self.stage, what: "claims", error: &error }.emit();
    }

    fn registry_wait(&self, _topic: &str, offset: i64, error: &str, _retry_in: Duration) {
        let error = format!("schema registry unavailable at claims offset {offset}: {error}");
        QueueTrouble { stage: &self.stage, what: "claims", error: &error }.emit();
    }

    fn skipped(&self, _topic: &str, offset: i64, reason: &str) {
        ClaimSkipped { stage: &self.stage, offset, error: reason }.emit();
    }
}
