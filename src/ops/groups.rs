//! Consumer groups as an operator sees them: the group's state and members (described for both
//! group protocols, [`crate::kafka::group_description`]), its committed offsets, the topics'
//! watermarks and offsets by time, and a commit made for a group by a client that never joins
//! it. Every function here blocks: call it from `tokio::task::spawn_blocking`.
//!
//! librdkafka's mock cluster (the embedded broker) implements none of the group description
//! APIs; the async entry points of [`super::replay`] and [`super::status`] ask
//! [`crate::kafka::require_admin_api`] first, so they fail at once there and name the
//! alternative.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::KafkaSettings;
use crate::kafka::group_description::{self, DescribeError};
use crate::kafka::{admin_config, assign_only_config, ProbeError};

/// How long one request to the cluster may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Describe(#[from] DescribeError),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
}

/// One member of a group, as its coordinator reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// Partitions assigned to it, as `topic:partition`.
    pub assigned: Vec<String>,
}

/// A group's state (`Stable`, `PreparingRebalance`, `Empty`, `Dead`…; `Unknown` for a KIP-848
/// group that is assigning or reconciling) and members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    pub group: String,
    pub state: String,
    pub members: Vec<Member>,
    /// Whether `members` is the group's membership: true for every group [`describe`] returns,
    /// classic and KIP-848 alike (before ConsumerGroupDescribe was used, a KIP-848 group was
    /// reported `Dead` with no members, and its members were unknown).
    pub members_known: bool,
}

impl GroupInfo {
    /// One line per member, `client id on host (member id)`, for messages.
    pub fn describe_members(&self) -> String {
        let lines: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("  {} on {} (member {})", m.client_id, m.host, m.member_id))
            .collect();
        lines.join("\n")
    }
}

/// A client for reading a group's offsets and committing them: assign-only, it never joins.
fn group_client(settings: &KafkaSettings, group: &str) -> Result<BaseConsumer, KafkaError> {
    assign_only_config(settings, group).create()
}

/// The group's state and members, whichever protocol it speaks. A group the cluster does not
/// know is reported `Dead` with no members, as Kafka does.
///
/// No fallback is needed: librdkafka itself falls back from ConsumerGroupDescribe to
/// DescribeGroups when the coordinator does not know the former, so a failure that means
/// "unsupported" would be DescribeGroups' own, which nothing here could replace.
pub fn describe(settings: &KafkaSettings, group: &str) -> Result<GroupInfo, GroupError> {
    let d = group_description::describe(settings, group, TIMEOUT)?;
    let members = d
        .members
        .into_iter()
        .map(|m| Member {
            member_id: m.member_id,
            client_id: m.client_id,
            host: m.host,
            assigned: m.assigned,
        })
        .collect();
    Ok(GroupInfo { group: d.group, state: d.state, members, members_known: true })
}

/// Where each partition of a topic stands for a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub partition: i32,
    /// Log start offset.
    pub low: i64,
    /// High watermark: the offset the next record will get.
    pub high: i64,
    /// The group's committed offset; `None` when it has committed none (it would start at the
    /// log start, `auto.offset.reset=earliest`).
    pub committed: Option<i64>,
}

impl Position {
    /// Where the group resumes: its committed offset (within the log), or the log start.
    pub fn current(&self) -> i64 {
        self.committed.unwrap_or(self.low).clamp(self.low, self.high)
    }

    /// Records written but not yet finished by the group.
    pub fn lag(&self) -> i64 {
        self.high - self.current()
    }
}

/// The partition numbers of a topic.
pub fn partitions(settings: &KafkaSettings, topic: &str) -> Result<Vec<i32>, GroupError> {
    let client: BaseConsumer = admin_config(settings).create()?;
    let metadata = client.fetch_metadata(Some(topic), TIMEOUT)?;
    let t = metadata.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty());
    let t = t.ok_or_else(|| GroupError::UnknownTopic(topic.to_owned()))?;
    let mut out: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    out.sort_unstable();
    Ok(out)
}

/// Watermarks and the group's committed offset of the given partitions of `topic` (every
/// partition when `only` is `None`).
pub fn positions(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    only: Option<&[i32]>,
) -> Result<Vec<Position>, GroupError> {
    Ok(positions_with_metadata(settings, group, topic, only)?.into_iter().map(|(p, _)| p).collect())
}

/// [`positions`], each with the metadata of the group's commit (empty when none): the runner
/// keeps its completed-offset map there.
pub fn positions_with_metadata(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    only: Option<&[i32]>,
) -> Result<Vec<(Position, String)>, GroupError> {
    let all = partitions(settings, topic)?;
    let wanted: Vec<i32> = match only {
        None => all,
        Some(list) => {
            if let Some(p) = list.iter().find(|p| !all.contains(p)) {
                let topic = topic.to_owned();
                return Err(GroupError::UnknownPartition { topic, partition: *p });
            }
            list.to_vec()
        }
    };
    let client = group_client(settings, group)?;
    let committed = committed_with_metadata(&client, topic, &wanted)?;
    wanted
        .iter()
        .zip(committed)
        .map(|(&partition, (committed, metadata))| {
            let (low, high) = crate::kafka::ready::retry(topic, || {
                client.fetch_watermarks(topic, partition, TIMEOUT)
            })?;
            Ok((Position { partition, low, high, committed }, metadata))
        })
        .collect()
}

/// The group's committed offset and commit metadata of each of `partitions`, in their order.
fn committed_with_metadata(
    client: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(Option<i64>, String)>, GroupError> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = client.committed_offsets(tpl, TIMEOUT)?;
    Ok(partitions
        .iter()
        .map(|&partition| match committed.find_partition(topic, partition) {
            Some(e) => {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (offset, e.metadata().to_owned())
            }
            None => (None, String::new()),
        })
        .collect())
}

/// `(partition, low, high)` of every partition of a topic.
pub fn watermarks(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, GroupError> {
    let client: BaseConsumer = admin_config(settings).create()?;
    partitions(settings, topic)?
        .into_iter()
        .map(|p| {
            let (low, high) =
                crate::kafka::ready::retry(topic, || client.fetch_watermarks(topic, p, TIMEOUT))?;
            Ok((p, low, high))
        })
        .collect()
}

/// Per partition, the offset of the first record with a timestamp at or after `at_ms`, or
/// `None` when there is none (every record is older).
pub fn offsets_at(
    settings: &KafkaSettings,
    topic: &str,
    partitions: &[i32],
    at_ms: i64,
) -> Result<Vec<(i32, Option<i64>)>, GroupError> {
    let client: BaseConsumer = admin_config(settings).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(at_ms))?;
    }
    let found = client.offsets_for_times(tpl, TIMEOUT)?;
    Ok(partitions
        .iter()
        .map(|&p| {
            let offset = found.find_partition(topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            });
            (p, offset)
        })
        .collect())
}

/// Commits `offsets` (topic, partition, offset) for `group` synchronously, from a client that
/// does not join it. The broker accepts such a commit only while the group has no members.
pub fn commit(
    settings: &KafkaSettings,
    group: &str,
    offsets: &[(String, i32, i64)],
) -> Result<(), GroupError> {
    let client = group_client(settings, group)?;
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    client.commit(&tpl, CommitMode::Sync)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_position_is_the_commit_within_the_log_or_its_start() {
        let p = Position { partition: 0, low: 10, high: 50, committed: None };
        assert_eq!((p.current(), p.lag()), (10, 40));
        let p = Position { committed: Some(45), ..p };
        assert_eq!((p.current(), p.lag()), (45, 5));
        let p = Position { committed: Some(3), ..p };
        assert_eq!(p.current(), 10, "a commit below the log start resumes at the start");
    }
}
