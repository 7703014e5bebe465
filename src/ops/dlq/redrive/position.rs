//! The redrive group's position in a dead-letter topic: per partition, where the last run
//! stopped (its committed offset and, in the commit metadata, what it finished beyond it — see
//! [`DoneSet`]) and where this run ends (the high watermark when it began). Committing checks
//! first that nobody else moved the position since it was read. On a broker with transactions
//! the commit rides in the transaction of the republished records ([`super::sink`]); the
//! embedded broker, which has none, gets a plain commit ([`Position::commit`]).
//!
//! The group is never joined: the consumer is assigned partitions, and commits carry no member
//! id, which Kafka accepts for a group without members and librdkafka's mock cluster accepts for
//! a group that never had any.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::done_set::DoneSet;
use crate::ops::dlq::read::DlqError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One partition of the dead-letter topic.
#[derive(Debug)]
pub struct Part {
    /// The first record still on the partition.
    pub low: i64,
    /// Where this run starts reading.
    pub start: i64,
    /// The high watermark when the run began: records from here on are for a later run.
    pub end: i64,
    pub done: DoneSet,
    /// The committed position as last read or written: offset and metadata.
    last: Option<(i64, String)>,
}

pub struct Position {
    consumer: Arc<StreamConsumer>,
    topic: String,
    group: String,
    pub parts: BTreeMap<i32, Part>,
}

impl Position {
    /// Reads the partitions of `topic`, their watermarks and `group`'s committed position.
    pub async fn load(
        consumer: Arc<StreamConsumer>,
        topic: &str,
        group: &str,
    ) -> Result<Self, DlqError> {
        let (c, name) = (consumer.clone(), topic.to_owned());
        let parts = tokio::task::spawn_blocking(move || -> Result<_, KafkaError> {
            let metadata = c.fetch_metadata(Some(&name), TIMEOUT)?;
            let count = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
            if count == 0 {
                return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
            }
            let mut tpl = TopicPartitionList::new();
            for p in 0..count {
                tpl.add_partition(&name, p);
            }
            let committed = c.committed_offsets(tpl, TIMEOUT)?;
            let mut parts = BTreeMap::new();
            for e in committed.elements() {
                let (low, high) = c.fetch_watermarks(&name, e.partition(), TIMEOUT)?;
                let last = match e.offset() {
                    Offset::Offset(o) => Some((o, e.metadata().to_owned())),
                    _ => None,
                };
                let (from, metadata) = last.clone().unwrap_or((low, String::new()));
                let done = DoneSet::from_commit(from.max(low), &metadata);
                let start = done.next();
                parts.insert(e.partition(), Part { low, start, end: high, done, last });
            }
            Ok(parts)
        })
        .await
        .expect("the offsets thread does not panic")?;
        Ok(Self { consumer, topic: topic.to_owned(), group: group.to_owned(), parts })
    }

    /// The partitions with records to read, each at its start.
    pub fn assignment(&self) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (p, part) in self.parts.iter().filter(|(_, part)| part.start < part.end) {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(part.start))?;
        }
        Ok(tpl)
    }

    /// Records this run reads.
    pub fn total(&self) -> u64 {
        self.parts.values().map(|p| (p.end - p.start).max(0) as u64).sum()
    }

    /// Records still on the topic that earlier runs finished before this run's start.
    pub fn finished_before(&self) -> u64 {
        self.parts.values().map(|p| (p.start - p.low).max(0) as u64).sum()
    }

    /// The partitions whose finished set changed since last committed: (partition, (offset to
    /// commit, metadata)).
    pub fn changed(&self) -> Vec<Change> {
        self.parts
            .iter()
            .filter_map(|(p, part)| {
                let now = (part.done.next(), part.done.metadata());
                let same = match &part.last {
                    Some(last) => *last == now,
                    None => now == (part.start, String::new()),
                };
                (!same).then_some((*p, now))
            })
            .collect()
    }

    /// `changes` as offsets to commit, with their metadata.
    pub fn offsets(&self, changes: &[Change]) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (p, (offset, metadata)) in changes {
            let mut e = tpl.add_partition(&self.topic, *p);
            e.set_offset(Offset::Offset(*offset))?;
            e.set_metadata(metadata.clone());
        }
        Ok(tpl)
    }

    /// Fails with [`DlqError::PositionMoved`] when the committed position of a partition in
    /// `changes` is no longer the one this run read or wrote (a commit outside this run).
    pub async fn check_unmoved(&self, changes: &[Change]) -> Result<(), DlqError> {
        let expected: Vec<(i32, Option<(i64, String)>)> =
            changes.iter().map(|(p, _)| (*p, self.parts[p].last.clone())).collect();
        let (c, topic, group) = (self.consumer.clone(), self.topic.clone(), self.group.clone());
        tokio::task::spawn_blocking(move || -> Result<(), DlqError> {
            let mut tpl = TopicPartitionList::new();
            for (p, _) in &expected {
                tpl.add_partition(&topic, *p);
            }
            let now = c.committed_offsets(tpl, TIMEOUT)?;
            for (p, want) in &expected {
                let found = now.find_partition(&topic, *p).and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some((o, e.metadata().to_owned())),
                    _ => None,
                });
                if found != *want {
                    return Err(DlqError::PositionMoved { group: group.clone(), partition: *p });
                }
            }
            Ok(())
        })
        .await
        .expect("the offsets thread does not panic")
    }

    /// Records `changes` as committed (by a transaction or by [`Position::commit`]).
    pub fn committed(&mut self, changes: Vec<Change>) {
        for (p, now) in changes {
            if let Some(part) = self.parts.get_mut(&p) {
                part.last = Some(now);
            }
        }
    }

    /// Commits every partition whose finished set changed since it was last committed, after
    /// checking that the committed position is still the one this run read or wrote: the commit
    /// of a broker without transactions (the embedded one).
    pub async fn commit(&mut self) -> Result<(), DlqError> {
        let changes = self.changed();
        if changes.is_empty() {
            return Ok(());
        }
        self.check_unmoved(&changes).await?;
        let tpl = self.offsets(&changes)?;
        let c = self.consumer.clone();
        tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync))
            .await
            .expect("the commit thread does not panic")?;
        self.committed(changes);
        Ok(())
    }
}

/// A partition whose finished set changed: (partition, (offset to commit, metadata)).
pub type Change = (i32, (i64, String));
