//! The group's committed positions as the test itself reads them from the broker, every few tens
//! of milliseconds through a run. The rebalance and crash tests derive their replay bounds from
//! these reads, never from anything the code under test reports about itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One read of the group's committed positions.
#[derive(Debug, Clone)]
pub struct Read {
    /// When the broker's answer arrived: it describes the group at some instant before this.
    pub at: SystemTime,
    /// Per partition `0..partitions`: the committed offset, 0 where none (every test topic starts
    /// at 0 and groups start at the beginning).
    pub positions: Vec<i64>,
}

/// Reads the committed positions of a group in the background until stopped.
pub struct CommitWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Read>>,
}

impl CommitWatch {
    /// Starts reading `group`'s positions on `topic`'s partitions `0..partitions` every `every`.
    /// The reader never joins the group (no subscription, no commits): it only asks the group's
    /// coordinator, as `kafka-consumer-groups --describe` does.
    pub fn start(
        bootstrap: &str,
        group: &str,
        topic: &str,
        partitions: i32,
        every: Duration,
    ) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("watch consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut reads = Vec::new();
            while !s.load(Ordering::SeqCst) {
                // A coordinator that cannot answer now (loading, moving) is asked again.
                if let Ok(committed) =
                    consumer.committed_offsets(tpl.clone(), Duration::from_secs(5))
                {
                    let positions = committed
                        .elements()
                        .iter()
                        .map(|e| match e.offset() {
                            Offset::Offset(o) => o,
                            _ => 0,
                        })
                        .collect();
                    reads.push(Read { at: SystemTime::now(), positions });
                }
                std::thread::sleep(every);
            }
            reads
        });
        Self { stop, thread }
    }

    /// Stops reading; returns every read, oldest first.
    pub fn stop(self) -> Commits {
        self.stop.store(true, Ordering::SeqCst);
        Commits(self.thread.join().expect("watch thread"))
    }
}

/// The reads of a [`CommitWatch`], oldest first.
#[derive(Debug, Clone)]
pub struct Commits(pub Vec<Read>);

impl Commits {
    /// The last read whose answer arrived before `t`: the group's committed positions at some
    /// instant before `t`.
    pub fn before(&self, t: SystemTime) -> Option<&Read> {
        self.0.iter().take_while(|r| r.at < t).last()
    }
}
