//! What a downstream application reading with `isolation.level=read_committed` sees: every record
//! of some topics, read continuously in the background from the beginning by a consumer of its
//! own (no group, no commits), counted with repeats. Records of aborted or still open
//! transactions never reach it; records written without a transaction always do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One record as read: partition, offset, key, payload.
pub type Record = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Everything read so far, per topic, in the order read.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub records: HashMap<String, Vec<Record>>,
    /// Read errors the consumer reported (a broker restarting), as text.
    pub errors: Vec<String>,
    /// Where [`CommittedReader::finish`] stopped short of a partition's end (topic, partition,
    /// position, end): records no read_committed reader has seen (an open transaction).
    pub behind: Vec<(String, i32, i64, i64)>,
}

impl Seen {
    /// The keys (as text) of every record read from `topic`, with repeats.
    pub fn keys(&self, topic: &str) -> Vec<String> {
        self.records
            .get(topic)
            .into_iter()
            .flatten()
            .map(|(_, _, k, _)| String::from_utf8_lossy(k.as_deref().unwrap_or_default()).into())
            .collect()
    }

    pub fn of(&self, topic: &str) -> Vec<Record> {
        self.records.get(topic).cloned().unwrap_or_default()
    }
}

struct Shared {
    seen: Mutex<Seen>,
    last_record: Mutex<Instant>,
}

/// A read_committed reader of `topics`, running on its own thread until [`CommittedReader::finish`].
pub struct CommittedReader {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<BaseConsumer>>,
}

/// The reader's consumer: `isolation.level=read_committed` set explicitly (librdkafka's default,
/// but a test of exactly-once must not depend on a default).
fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", super::unique("committed-reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("read_committed consumer")
}

impl CommittedReader {
    /// Starts reading every partition of `topics` from the beginning.
    pub fn start(bootstrap: &str, topics: &[String]) -> Self {
        let c = consumer(bootstrap);
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            let md = c.fetch_metadata(Some(topic), Duration::from_secs(30)).expect("metadata");
            let partitions = md.topics()[0].partitions().len();
            assert!(partitions > 0, "topic {topic} has no partitions");
            for p in 0..partitions as i32 {
                tpl.add_partition_offset(topic, p, Offset::Beginning).expect("offset");
            }
        }
        c.assign(&tpl).expect("assign");
        let shared =
            Arc::new(Shared { seen: Mutex::default(), last_record: Mutex::new(Instant::now()) });
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let record = (
                            m.partition(),
                            m.offset(),
                            m.key().map(<[u8]>::to_vec),
                            m.payload().map(<[u8]>::to_vec),
                        );
                        let mut seen = s.seen.lock().expect("seen");
                        seen.records.entry(m.topic().to_owned()).or_default().push(record);
                        *s.last_record.lock().expect("last") = Instant::now();
                    }
                    Some(Err(e)) => s.seen.lock().expect("seen").errors.push(e.to_string()),
                    None => {}
                }
            }
            c
        });
        Self { shared, stop, thread: Some(thread) }
    }

    /// A copy of what was read so far.
    pub fn seen(&self) -> Seen {
        self.shared.seen.lock().expect("seen").clone()
    }

    /// How long since the last record arrived.
    pub fn quiet_for(&self) -> Duration {
        self.shared.last_record.lock().expect("last").elapsed()
    }

    /// Reads on until `idle` passes without a record, then stops and returns everything read.
    /// Call it once nothing can still commit (every worker stopped): then the last transactions
    /// are decided and the read_committed end is the log's end.
    pub async fn finish(mut self, idle: Duration) -> Seen {
        while self.quiet_for() < idle {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("running");
        let consumer = tokio::task::spawn_blocking(move || thread.join().expect("reader thread"))
            .await
            .expect("joined");
        let mut seen = self.seen();
        // Where the reader stopped, against each partition's log end: a partition short of its
        // end holds records no read_committed reader has seen yet (an open transaction).
        let behind =
            tokio::task::spawn_blocking(move || short_of_end(&consumer)).await.expect("positions");
        seen.behind = behind;
        seen
    }
}

impl Drop for CommittedReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Partitions whose position is short of the high watermark by more than one record (the last
/// transaction's marker takes an offset a reader never returns).
fn short_of_end(c: &BaseConsumer) -> Vec<(String, i32, i64, i64)> {
    let assigned = c.assignment().expect("assignment");
    let positions = c.position().expect("positions");
    let mut behind = Vec::new();
    for e in assigned.elements() {
        let (topic, p) = (e.topic(), e.partition());
        let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        let at = positions.find_partition(topic, p).and_then(|x| match x.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        let at = at.unwrap_or(0);
        if at + 1 < high {
            behind.push((topic.to_owned(), p, at, high));
        }
    }
    behind
}
