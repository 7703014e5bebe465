//! Many topics' partitions, watermarks and offsets by time at once, for `sluice status` and the
//! console's pipeline samples: one client for the whole survey, one metadata request per topic,
//! and one ListOffsets request per broker for every partition of every topic (earliest, latest,
//! or by time) — instead of a new client and a round trip per partition, which made a status of
//! a five-stage pipeline take seconds on a local broker (docs/BENCHMARKS.md, `status`). A topic
//! that does not exist is reported as missing, not as a failure of the whole survey. Blocking:
//! call it from `tokio::task::spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::groups::{GroupError, Position, TIMEOUT};
use crate::config::KafkaSettings;
use crate::kafka::{admin_config, assign_only_config};

/// The partitions and watermarks of a set of topics at one moment.
pub struct Survey {
    client: BaseConsumer,
    /// Topic → `(partition, low, high)` of every partition, in partition order.
    marks: BTreeMap<String, Vec<(i32, i64, i64)>>,
    /// Topics the cluster does not know.
    pub missing: BTreeSet<String>,
}

impl Survey {
    /// Asks for the partitions of every topic in `topics` (each once), then every partition's
    /// watermarks in two ListOffsets rounds. Fails only when the cluster cannot be asked.
    pub fn take<'a>(
        settings: &KafkaSettings,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, GroupError> {
        let client: BaseConsumer = admin_config(settings).create()?;
        let (mut parts, mut missing) = (BTreeMap::new(), BTreeSet::new());
        for topic in topics.into_iter().collect::<BTreeSet<_>>() {
            let metadata = client.fetch_metadata(Some(topic), TIMEOUT)?;
            let t = metadata.topics().first();
            match t.filter(|t| t.error().is_none() && !t.partitions().is_empty()) {
                Some(t) => {
                    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                    ids.sort_unstable();
                    parts.insert(topic.to_owned(), ids);
                }
                None => {
                    missing.insert(topic.to_owned());
                }
            }
        }
        let all: Vec<(String, i32)> =
            parts.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p))).collect();
        let low = list_offsets(&client, &all, Offset::Beginning)?;
        let high = list_offsets(&client, &all, Offset::End)?;
        let marks = parts
            .into_iter()
            .map(|(topic, ids)| {
                let marks = ids
                    .iter()
                    .map(|p| {
                        let key = (topic.clone(), *p);
                        let high = high.get(&key).copied().flatten().unwrap_or(0);
                        let low = low.get(&key).copied().flatten().unwrap_or(0).min(high);
                        (*p, low, high)
                    })
                    .collect();
                (topic, marks)
            })
            .collect();
        Ok(Self { client, marks, missing })
    }

    /// `(partition, low, high)` of every partition of `topic`, or why not.
    pub fn watermarks(&self, topic: &str) -> Result<&[(i32, i64, i64)], GroupError> {
        self.marks
            .get(topic)
            .map(Vec::as_slice)
            .ok_or_else(|| GroupError::UnknownTopic(topic.into()))
    }

    /// Per topic of `topics` that exists, the records written at or after `since_ms` (by record
    /// timestamp), in one ListOffsets round for them all.
    pub fn records_since(
        &self,
        topics: &[&str],
        since_ms: i64,
    ) -> Result<HashMap<String, i64>, GroupError> {
        let all: Vec<(String, i32)> = topics
            .iter()
            .filter_map(|t| self.marks.get(*t).map(|m| (*t, m)))
            .flat_map(|(t, m)| m.iter().map(move |(p, _, _)| (t.to_owned(), *p)))
            .collect();
        let found = list_offsets(&self.client, &all, Offset::Offset(since_ms))?;
        let mut out = HashMap::new();
        for (topic, marks) in topics.iter().filter_map(|t| self.marks.get(*t).map(|m| (*t, m))) {
            let n = marks
                .iter()
                .map(|(p, _, high)| {
                    let at = found.get(&(topic.to_owned(), *p)).copied().flatten();
                    at.map_or(0, |o| (high - o).max(0))
                })
                .sum();
            out.insert(topic.to_owned(), n);
        }
        Ok(out)
    }

    /// Where `group` stands on each partition of each of `topics` that exists (missing topics
    /// are left out), from one OffsetFetch request.
    pub fn positions(
        &self,
        settings: &KafkaSettings,
        group: &str,
        topics: &[&str],
    ) -> Result<HashMap<String, Vec<Position>>, GroupError> {
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            for (p, _, _) in self.marks.get(*topic).into_iter().flatten() {
                tpl.add_partition(topic, *p);
            }
        }
        if tpl.count() == 0 {
            return Ok(HashMap::new());
        }
        let client: BaseConsumer = assign_only_config(settings, group).create()?;
        let committed = client.committed_offsets(tpl, TIMEOUT)?;
        let mut out = HashMap::new();
        for topic in topics {
            let Some(marks) = self.marks.get(*topic) else { continue };
            let positions = marks
                .iter()
                .map(|&(partition, low, high)| {
                    let committed =
                        committed.find_partition(topic, partition).and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                    Position { partition, low, high, committed }
                })
                .collect();
            out.insert((*topic).to_owned(), positions);
        }
        Ok(out)
    }
}

/// One ListOffsets round for `partitions`: `Beginning`, `End`, or a timestamp in `Offset(ms)`.
/// Per partition, the offset found (`None`: no record at or after the timestamp).
fn list_offsets(
    client: &BaseConsumer,
    partitions: &[(String, i32)],
    at: Offset,
) -> Result<HashMap<(String, i32), Option<i64>>, GroupError> {
    if partitions.is_empty() {
        return Ok(HashMap::new());
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, p) in partitions {
        tpl.add_partition_offset(topic, *p, at)?;
    }
    // The offset field carries the "timestamp": -1 latest, -2 earliest, else milliseconds.
    let found = client.offsets_for_times(tpl, TIMEOUT)?;
    let mut out = HashMap::new();
    for e in found.elements() {
        if let Err(error) = e.error() {
            return Err(GroupError::Kafka(error));
        }
        let offset = match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        };
        out.insert((e.topic().to_owned(), e.partition()), offset);
    }
    Ok(out)
}
