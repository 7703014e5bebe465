//! The one topic reader: a standalone consumer (no group, nothing committed) over whole topics or
//! given offset ranges of partitions, for `sluice consume`, the dead-letter commands, `status`,
//! `replay` and reading the metering topic back. Blocking: call from a blocking thread.
//!
//! One rule for errors while reading: an error librdkafka recovers from on its own (a broker
//! down, a leader moving, a connection reset) is ridden out — the read goes on for as long as the
//! caller's `patience` passes without a record — and is returned only if the read then ends
//! short of the ends it was asked to reach. An error no wait can cure (the topic is gone, this
//! client may not read it, a fatal error) ends the read at once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::reader_config;
use crate::config::KafkaSettings;

/// How long a metadata or watermark request may wait for a broker.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Records `[from, to)` of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// A standalone consumer over some partitions, each read to an end or followed.
pub struct Reader {
    pub consumer: BaseConsumer,
    /// Per partition with an end: the ranges still to read, in offset order. A partition
    /// without an entry is followed (every record is delivered).
    ends: HashMap<(String, i32), VecDeque<(i64, i64)>>,
    /// A reader from the beginning: when not stopping at the end, records past a partition's
    /// end are delivered too (followed); a ranges reader never delivers outside its ranges.
    follows: bool,
}

/// A reader assigned to every partition of `topics`, from the beginning (each read to the high
/// watermark it had at the start) or from the end (followed).
pub fn reader(
    kafka: &KafkaSettings,
    topics: &[&str],
    from_beginning: bool,
) -> Result<Reader, KafkaError> {
    let consumer: BaseConsumer = reader_config(kafka).create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    let start = if from_beginning { Offset::Beginning } else { Offset::End };
    for topic in topics {
        let metadata = super::ready::retry(&format!("the partitions of {topic}"), || {
            consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        })?;
        let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
        if partitions == 0 {
            return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
        }
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, start)?;
            let (low, high) = super::ready::retry(&format!("the offsets of {topic}"), || {
                consumer.fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            })?;
            if from_beginning && high > low {
                ends.insert(((*topic).to_owned(), p), VecDeque::from([(low, high)]));
            }
        }
    }
    consumer.assign(&tpl)?;
    Ok(Reader { consumer, ends, follows: true })
}

/// A reader of the given ranges (empty ones left out). Several ranges of one partition are read
/// in offset order, the reader seeking from one to the next (a sample spread over a window).
pub fn ranges_reader(kafka: &KafkaSettings, ranges: &[Range]) -> Result<Reader, KafkaError> {
    // A range starting below the log start (retention removed its first records) is read from
    // the log start, not skipped to the end.
    let consumer: BaseConsumer =
        reader_config(kafka).set("auto.offset.reset", "earliest").create()?;
    let mut ends: HashMap<(String, i32), VecDeque<(i64, i64)>> = HashMap::new();
    let mut sorted: Vec<&Range> = ranges.iter().filter(|r| r.to > r.from).collect();
    sorted.sort_by(|a, b| (&a.topic, a.partition, a.from).cmp(&(&b.topic, b.partition, b.from)));
    for r in sorted {
        ends.entry((r.topic.clone(), r.partition)).or_default().push_back((r.from, r.to));
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), queue) in &ends {
        let from = queue.front().expect("only non-empty queues").0;
        tpl.add_partition_offset(topic, *partition, Offset::Offset(from))?;
    }
    if tpl.count() > 0 {
        consumer.assign(&tpl)?;
    }
    Ok(Reader { consumer, ends, follows: false })
}

/// What a record means for its partition's ranges.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Deliver it; then, if `seek`, continue the partition at that offset; `done`: the partition
    /// has nothing more to read.
    Deliver { seek: Option<i64>, done: bool },
    /// Outside every range left (before it, or past the last): skip it.
    Skip { seek: Option<i64>, done: bool },
}

/// Advances a partition's ranges past a record at `offset`.
fn step(queue: &mut VecDeque<(i64, i64)>, offset: i64) -> Step {
    let mut moved = false;
    while queue.front().is_some_and(|(_, to)| offset >= *to) {
        queue.pop_front();
        moved = true;
    }
    let Some(&(from, to)) = queue.front() else { return Step::Skip { seek: None, done: true } };
    if offset < from {
        // Past a range's end (compaction, retention) into a gap before the next one.
        return Step::Skip { seek: moved.then_some(from), done: false };
    }
    if offset + 1 >= to {
        queue.pop_front();
        let next = queue.front().map(|(from, _)| *from);
        return Step::Deliver { seek: next, done: next.is_none() };
    }
    Step::Deliver { seek: None, done: false }
}

impl Reader {
    /// Reads up to `max` records, calling `each` per record until it returns false. With
    /// `stop_at_end`, stops once every partition with an end reached it; without it, a reader
    /// from the beginning follows every partition past its end (a ranges reader still delivers
    /// only its ranges). Stops after `patience`
    /// without a record (returning the last transient error if, with `stop_at_end`, ends were
    /// still unreached), at a permanent error, or as soon as `stop()` says so.
    pub fn drain<F: FnMut(&BorrowedMessage<'_>) -> bool>(
        &self,
        max: Option<usize>,
        stop_at_end: bool,
        patience: Duration,
        stop: impl Fn() -> bool,
        mut each: F,
    ) -> Result<usize, KafkaError> {
        let mut remaining = self.ends.clone();
        let mut seen = 0;
        let mut idle_since = Instant::now();
        let mut last_error = None;
        // Following from the beginning: a partition's end only says when `stop_at_end` is done.
        let past_end = self.follows && !stop_at_end;
        loop {
            if max.is_some_and(|m| seen >= m) || (stop_at_end && remaining.is_empty()) || stop() {
                return Ok(seen);
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {
                    if !past_end {
                        self.pass_markers(&mut remaining, patience)?;
                    }
                    if idle_since.elapsed() >= patience {
                        return match last_error.take() {
                            Some(e) if stop_at_end && !remaining.is_empty() => Err(e),
                            _ => Ok(seen),
                        };
                    }
                }
                Some(Err(e)) if is_permanent(&e) => return Err(e),
                Some(Err(e)) => last_error = Some(e),
                Some(Ok(m)) => {
                    idle_since = Instant::now();
                    let tp = (m.topic().to_owned(), m.partition());
                    let deliver = match remaining.get_mut(&tp) {
                        None if self.ends.contains_key(&tp) => past_end,
                        None => true,
                        Some(queue) => {
                            let (deliver, seek, done) = match step(queue, m.offset()) {
                                Step::Deliver { seek, done } => (true, seek, done),
                                Step::Skip { seek, done } => (false, seek, done),
                            };
                            if done {
                                remaining.remove(&tp);
                            } else if let Some(at) = seek {
                                self.consumer.seek(&tp.0, tp.1, Offset::Offset(at), patience)?;
                            }
                            deliver || past_end
                        }
                    };
                    if deliver {
                        seen += 1;
                        if !each(&m) {
                            return Ok(seen);
                        }
                    }
                }
            }
        }
    }
}

impl Reader {
    /// Drops the ranges a partition's position has passed with nothing left to deliver: the last
    /// offsets of a topic written in transactions (an exactly-once stage's outputs, a redrive
    /// batch) are a commit or abort marker, which a reader that reads committed is never given —
    /// nor the records of an aborted transaction — but which moves its position past them. So a
    /// read to the end ends there, not after its patience.
    fn pass_markers(
        &self,
        remaining: &mut HashMap<(String, i32), VecDeque<(i64, i64)>>,
        patience: Duration,
    ) -> Result<(), KafkaError> {
        if remaining.is_empty() {
            return Ok(());
        }
        for elem in self.consumer.position()?.elements() {
            // Not yet known, or just reset by a seek: nothing passed.
            let Offset::Offset(at) = elem.offset() else { continue };
            let tp = (elem.topic().to_owned(), elem.partition());
            let Some(queue) = remaining.get_mut(&tp) else { continue };
            let mut moved = false;
            while queue.front().is_some_and(|(_, to)| at >= *to) {
                queue.pop_front();
                moved = true;
            }
            match queue.front() {
                None => {
                    remaining.remove(&tp);
                }
                Some(&(from, _)) if moved && at < from => {
                    self.consumer.seek(&tp.0, tp.1, Offset::Offset(from), patience)?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Calls `each` for every record of the ranges, in offset order per partition (empty ranges are
/// skipped). Ends when every range is read (a range ending in transaction markers as soon as the
/// reader's position passes them), or after `patience` without a record — with the last
/// transient error if one was seen and some range was not read to its end, and silently
/// otherwise (a range ending in records removed by retention or compaction ends no sooner).
pub fn read_ranges(
    settings: &KafkaSettings,
    ranges: &[Range],
    patience: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    if ranges.iter().all(|r| r.to <= r.from) {
        return Ok(());
    }
    let reader = ranges_reader(settings, ranges)?;
    reader.drain(
        None,
        true,
        patience,
        || false,
        |m| {
            each(m);
            true
        },
    )?;
    Ok(())
}

/// Errors a reader cannot outwait: the topic is gone, or this client may not read it.
pub fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::MessageConsumption(code) | KafkaError::MetadataFetch(code) => *code,
        KafkaError::Global(code) => *code,
        _ => return true,
    };
    matches!(
        code,
        C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::Fatal
    )
}

/// One record as read: partition, offset, key and value bytes.
pub type RawRecord = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of `topic` from the beginning to the end it had when the read began, undecoded,
/// read on a blocking thread.
pub async fn read_topic(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<Vec<RawRecord>, KafkaError> {
    let (kafka, name) = (settings.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let r = reader(&kafka, &[name.as_str()], true)?;
        let mut out = Vec::new();
        r.drain(
            None,
            true,
            Duration::from_secs(10),
            || false,
            |m| {
                let key = m.key().map(<[u8]>::to_vec);
                out.push((m.partition(), m.offset(), key, m.payload().map(<[u8]>::to_vec)));
                true
            },
        )?;
        Ok(out)
    })
    .await
    .expect("the reader thread does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_a_partition_are_read_in_turn_seeking_across_the_gaps() {
        let mut q = VecDeque::from([(10, 12), (20, 21), (30, 32)]);
        assert_eq!(step(&mut q, 10), Step::Deliver { seek: None, done: false });
        assert_eq!(step(&mut q, 11), Step::Deliver { seek: Some(20), done: false });
        assert_eq!(step(&mut q, 20), Step::Deliver { seek: Some(30), done: false });
        // Offset 30 was compacted away: 31 is the range's last record.
        assert_eq!(step(&mut q, 31), Step::Deliver { seek: None, done: true });
        assert!(q.is_empty());
    }

    #[test]
    fn a_record_past_a_range_skips_to_the_next_one_or_ends_the_partition() {
        let mut q = VecDeque::from([(0, 5), (50, 60)]);
        assert_eq!(step(&mut q, 7), Step::Skip { seek: Some(50), done: false });
        assert_eq!(step(&mut q, 55), Step::Deliver { seek: None, done: false });
        assert_eq!(step(&mut q, 60), Step::Skip { seek: None, done: true });
    }

    /// Issue 18 review #6: `sluice consume --from-beginning` without `--exit-at-end` follows: a
    /// record written after the read began is delivered on a partition that already had records.
    #[test]
    fn a_reader_from_the_beginning_follows_past_the_initial_end() {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let kafka = crate::devstack::MockKafka::start(1).expect("mock cluster");
        kafka.create_topic("t", 1).expect("topic");
        let settings = KafkaSettings::single_broker(kafka.bootstrap_servers(), 1);
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .create()
            .expect("producer");
        let produce = |v: &str| {
            producer.send(BaseRecord::<(), str>::to("t").payload(v)).expect("send");
            producer.flush(Duration::from_secs(10)).expect("flush");
        };
        produce("before");
        let r = reader(&settings, &["t"], true).expect("reader");
        let mut seen = Vec::new();
        r.drain(
            None,
            false,
            Duration::from_secs(10),
            || false,
            |m| {
                seen.push(m.payload().map(<[u8]>::to_vec));
                if seen.len() == 1 {
                    produce("after");
                }
                seen.len() < 2
            },
        )
        .expect("drain");
        assert_eq!(seen, vec![Some(b"before".to_vec()), Some(b"after".to_vec())]);
    }
}
