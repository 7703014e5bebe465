//! Reading given offset ranges of partitions with a short-lived standalone consumer (no group):
//! the records a replay would re-process, the record at a group's committed offset, the cost
//! events since a time. Blocking: call from `tokio::task::spawn_blocking`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::kafka::reader_config;

/// Records `[from, to)` of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// Calls `each` for every record of the ranges (empty ranges are skipped). Stops when every
/// range is read, or after `idle` without a record (a range ending in transaction markers or
/// records removed by retention or compaction ends no sooner).
pub fn read_ranges(
    settings: &KafkaSettings,
    ranges: &[Range],
    idle: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    let ranges: Vec<&Range> = ranges.iter().filter(|r| r.to > r.from).collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer = reader_config(settings).create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for r in &ranges {
        tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.from))?;
        ends.insert((r.topic.clone(), r.partition), r.to);
    }
    consumer.assign(&tpl)?;
    let mut last = Instant::now();
    while !ends.is_empty() && last.elapsed() < idle {
        let m = match consumer.poll(Duration::from_millis(100)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => continue,
            Some(m) => m?,
        };
        last = Instant::now();
        let tp = (m.topic().to_owned(), m.partition());
        let Some(end) = ends.get(&tp).copied() else { continue };
        if m.offset() < end {
            each(&m);
        }
        if m.offset() + 1 >= end {
            ends.remove(&tp);
        }
    }
    Ok(())
}
