//! A second member joining a group mid-stream, run on the embedded broker (`tests/runner.rs`) and
//! on Apache Kafka (`tests/real_broker.rs`): what each member did, the group's committed positions
//! as the test read them from the broker meanwhile, and the redos those positions allow.
//!
//! A partition's new owner resumes from the group's committed position, so it redoes at most the
//! records its previous owners had started at or past that position. The test knows which member
//! called which record when (its own stage records every call), where each record lies (it reads
//! the input topic) and the committed positions (it reads them every 20 ms, see [`CommitWatch`]);
//! none of it comes from the runner's own account of itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use rdkafka::message::Message;

use super::read::each_record;
use super::watch::{CommitWatch, Commits};
use super::{ids, Harness, OneStage, Oracle, Script, TestStage};

/// Input partitions of the scenario.
pub const PARTITIONS: i32 = 4;
/// Records produced; ~400 records/s for one member: the stream outlasts the second member's join.
pub const RECORDS: usize = 3000;

/// The one-stage topology of the scenario (a topic `<p>.docs` of [`PARTITIONS`] partitions).
pub fn topology() -> String {
    OneStage::new(PARTITIONS, "{ max_in_flight: 16, per_partition: 4, buffer_per_partition: 4 }")
        .yaml()
}

/// What the scenario observed.
pub struct Joined {
    pub oracle: Oracle,
    /// The group's committed position on each partition once both members stopped.
    pub committed_at_end: Vec<i64>,
    /// Calls made by the second member.
    pub second_member_calls: usize,
    pub partitions: Vec<Replays>,
}

/// One input partition's hand-overs and redos.
#[derive(Debug, Default)]
pub struct Replays {
    pub partition: i32,
    /// Per hand-over (the first call of a member other than the previous caller): the committed
    /// position read last before that call, and how many records earlier members had started at
    /// or past it by then — all the new owner can redo.
    pub handovers: Vec<(i64, usize)>,
    /// Records called again in a later tenure (the output may hold fewer copies: a record started
    /// but not finished before its hand-over is redone without being duplicated).
    pub redone: usize,
    /// Extra copies of this partition's records on the output and dead-letter topics.
    pub duplicates: usize,
    /// Redos of a record below the committed position read before the redo began:
    /// (offset, committed position).
    pub below_committed: Vec<(i64, i64)>,
    /// Records called twice in one member's tenure, with no hand-over between.
    pub redone_without_handover: Vec<i64>,
}

impl Replays {
    /// The most records the hand-overs of this partition could make the new owners redo.
    pub fn bound(&self) -> usize {
        self.handovers.iter().map(|(_, started)| started).sum()
    }
}

impl Joined {
    pub fn duplicates(&self) -> usize {
        self.partitions.iter().map(|p| p.duplicates).sum()
    }

    pub fn bound(&self) -> usize {
        self.partitions.iter().map(Replays::bound).sum()
    }

    /// One line of what was measured, per partition: duplicates, bound, and the committed
    /// positions the hand-overs resumed from.
    pub fn summary(&self) -> String {
        let per: Vec<String> = self
            .partitions
            .iter()
            .map(|p| {
                let from: Vec<i64> = p.handovers.iter().map(|(c, _)| *c).collect();
                format!("p{} {}/{} from {from:?}", p.partition, p.duplicates, p.bound())
            })
            .collect();
        format!(
            "duplicates {} (bound {}); per partition duplicates/bound and resumed-from positions: {}",
            self.duplicates(),
            self.bound(),
            per.join(", ")
        )
    }

    /// Asserts what holds on any broker: nothing lost, every record delivered, offsets committed
    /// to the end, each record at most twice, and every redo explained by a hand-over — at or past
    /// the committed position the test read before it, and within what the previous owners had
    /// started beyond the position the new owner resumed from.
    pub fn check(&self) {
        self.oracle.check();
        assert_eq!(self.oracle.delivered().len(), RECORDS, "every record reached the output");
        assert_eq!(
            self.committed_at_end.iter().sum::<i64>(),
            RECORDS as i64,
            "committed offsets cover every record"
        );
        assert!(self.second_member_calls > 0, "the second member took over partitions");
        assert!(
            self.oracle.max_copies() <= 2,
            "one join hands a partition over once: {:?}",
            self.oracle.duplicated()
        );
        for p in &self.partitions {
            assert!(
                p.below_committed.is_empty(),
                "partition {}: records redone below the committed position read before the redo \
                 (offset, committed): {:?}",
                p.partition,
                p.below_committed
            );
            assert!(
                p.redone_without_handover.is_empty(),
                "partition {}: records called twice by one member with no hand-over between: {:?}",
                p.partition,
                p.redone_without_handover
            );
            assert!(
                p.redone <= p.bound() && p.duplicates <= p.redone,
                "partition {}: {} redone, {} duplicated, more than the {} records started at or \
                 past the committed positions its new owners resumed from",
                p.partition,
                p.redone,
                p.duplicates,
                p.bound()
            );
        }
    }
}

/// Runs the scenario on `h` (built from [`topology`]): a first member works alone, a second joins
/// once the first has made 60 calls, both run until every record ended, then both stop.
pub async fn second_member_joins(h: &Harness) -> Joined {
    h.produce_docs(0..RECORDS, None, |_| None).await;
    let placed = placement(h).await;
    let watch = CommitWatch::start(
        h.stack.kafka.bootstrap_servers(),
        &h.group(),
        &h.input(),
        PARTITIONS,
        Duration::from_millis(20),
    );
    let script = Script { default_delay: Duration::from_millis(40), ..Script::default() };
    let (a, b) = (TestStage::new(script.clone()), TestStage::new(script));
    let ra = h.start_stage(a.clone()).await;
    ra.until(Duration::from_secs(30), "the first member is working", || async {
        a.call_count() >= 60
    })
    .await;
    let rb = h.start_stage(b.clone()).await;
    let everything = || async { h.oracle(ids(0..RECORDS)).await.all_ended() };
    rb.until(Duration::from_secs(90), "every record ended", everything).await;
    ra.stop().await.expect("first member");
    rb.stop().await.expect("second member");
    let commits = watch.stop();

    let oracle = h.oracle(ids(0..RECORDS)).await;
    let partitions = replays(&[&a, &b], &placed, &commits, &oracle);
    Joined {
        oracle,
        committed_at_end: h.committed(PARTITIONS),
        second_member_calls: b.call_count(),
        partitions,
    }
}

/// Where each input record lies: id → (partition, offset).
async fn placement(h: &Harness) -> HashMap<String, (i32, i64)> {
    each_record(&h.topology.kafka, &h.input(), |m| {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        (key, (m.partition(), m.offset()))
    })
    .await
    .into_iter()
    .collect()
}

/// Walks each partition's calls in time order. A call by another member than the previous one
/// starts a tenure: its owner resumed from the committed position, which is at least the one the
/// test read last before that call. (Positions only grow; between the previous owner's last
/// commit and the new owner's first call only the new owner commits, and only records it skips
/// as done by the previous one.) A record called again in a later tenure is a redo; a redo is
/// never below the position read before it, since the new owner's own commits stop below the
/// records it has not finished.
fn replays(
    members: &[&TestStage],
    placed: &HashMap<String, (i32, i64)>,
    commits: &Commits,
    oracle: &Oracle,
) -> Vec<Replays> {
    let mut calls: BTreeMap<i32, Vec<(SystemTime, usize, i64)>> = BTreeMap::new();
    for (member, stage) in members.iter().enumerate() {
        for (id, attempt, at) in stage.calls.lock().expect("calls").iter() {
            // Later attempts of one visit (2, 3, …) are retries within the tenure, not redos.
            if *attempt <= 1 {
                let (p, o) = placed[id];
                calls.entry(p).or_default().push((*at, member, o));
            }
        }
    }
    let mut duplicates: BTreeMap<i32, usize> = BTreeMap::new();
    for (id, extra) in oracle.duplicated() {
        *duplicates.entry(placed[id].0).or_default() += extra;
    }
    (0..PARTITIONS)
        .map(|p| {
            let mut r = Replays {
                partition: p,
                duplicates: duplicates.get(&p).copied().unwrap_or(0),
                ..Replays::default()
            };
            let committed_before =
                |t: SystemTime| commits.before(t).map_or(0, |read| read.positions[p as usize]);
            let mut calls = calls.remove(&p).unwrap_or_default();
            calls.sort();
            let (mut started, mut tenure) = (BTreeSet::new(), BTreeSet::new());
            let mut owner = None;
            for (at, member, offset) in calls {
                if owner != Some(member) {
                    if owner.is_some() {
                        let from = committed_before(at);
                        r.handovers.push((from, started.range(from..).count()));
                    }
                    owner = Some(member);
                    tenure.clear();
                }
                if !tenure.insert(offset) {
                    r.redone_without_handover.push(offset);
                } else if !started.insert(offset) {
                    r.redone += 1;
                    let committed = committed_before(at);
                    if offset < committed {
                        r.below_committed.push((offset, committed));
                    }
                }
            }
            r
        })
        .collect()
}
