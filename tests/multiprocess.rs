//! The `sluice` binary as separate worker processes against a broker outside them: the embedded
//! broker hosted by this test, or any real broker given by `KAFKA_BOOTSTRAP_SERVERS` (CI also runs
//! this suite against Apache Kafka through `scripts/with-kafka`). A worker is killed with SIGKILL
//! mid-stream and restarted; every input id must end in the output, or in the dead-letter topic if
//! (and only if) it is empty, and every duplicate must be one the test can explain from what it
//! read from the broker itself: records sent beyond the committed position at the kill, or at a
//! revocation.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::crash::{apache_kafka, Scenario};
use common::watch::Commits;

const PARTITIONS: i32 = 3;
const DOCS: usize = 3000;
const MAX_IN_FLIGHT: usize = 24;
const PER_PARTITION: usize = 8;
const BUFFER_PER_PARTITION: usize = 8;
const COMMIT_INTERVAL_MS: u64 = 100;
const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// Revocations a partition can go through here: once as the first two workers share the group,
/// once more as the restarted worker joins (the survivor gives it partitions, possibly one it had
/// just taken over from the killed worker).
const REVOCATIONS: usize = 2;

fn topology_yaml(pipeline: &str) -> String {
    format!(
        r#"
pipeline: {pipeline}
kafka:
  partitions: {PARTITIONS}
  consumer:
    auto.commit.interval.ms: "{COMMIT_INTERVAL_MS}"
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "{HEARTBEAT_INTERVAL_MS}"
    # The rebalance timeout: how long a broker may wait for a killed member to rejoin.
    max.poll.interval.ms: "12000"
  producer:
    linger.ms: "2"
providers:
  sim: {{ kind: simulated, latency: 30ms, jitter: 10ms, failure_rate: 0.05 }}
inputs:
  {pipeline}.docs: {{ partitions: {PARTITIONS} }}
stages:
  work:
    kind: classify
    input: {pipeline}.docs
    output: {pipeline}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, technical, other] }}
    concurrency: {{ max_in_flight: {MAX_IN_FLIGHT}, per_partition: {PER_PARTITION}, buffer_per_partition: {BUFFER_PER_PARTITION} }}
    retry: {{ attempts: 4, initial_backoff: 5ms, max_backoff: 20ms }}
    shutdown_grace: 5s
"#
    )
}

/// Partitions change hands three ways here: a revocation as the two first workers share the group,
/// the kill (the killed worker's partitions, taken over once its session ends) and a revocation
/// as the restarted worker joins. A new owner resumes from the group's committed position, so it
/// redoes at most what had been sent beyond that position when the partition changed hands. The
/// test reads the committed positions from the broker every 20 ms and reads when each output was
/// sent (its timestamp, stamped by the sending worker's client); from those alone it checks:
///
/// - every extra copy of a record was sent at or past the committed position the test read before
///   it: a new owner never resumes below the committed position;
/// - the kill adds at most one copy of each record in its window: those sent before the kill at or
///   past the committed positions the test read right after it (the killed worker sends and
///   commits nothing more, so those are the positions its partitions resume from);
/// - the other extra copies of a partition's records come from its revocations, each redoing at
///   most what was sent beyond the committed position then: at most `REVOCATIONS` × the most
///   records the test ever saw sent beyond the partition's committed position.
///
/// On Apache Kafka (`scripts/with-kafka`) revocations must redo nothing, so every duplicate must
/// be in the kill's window: the revoking worker drains and commits in its revocation callback,
/// and Apache Kafka accepts that commit mid-rebalance. On the embedded broker a revocation can
/// redo a lot: librdkafka's mock coordinator refuses commits while a group joins, so a
/// revocation's last commit can fail and the next owner redo everything since the last commit
/// that landed; the revocation term bounds that by what the test saw uncommitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_mid_stream_loses_nothing_and_bounds_duplicates() {
    let sc = Scenario::start(DOCS, PARTITIONS, topology_yaml).await;
    let watch = sc.watch();
    let mut a = sc.worker();
    let _b = sc.worker();
    let deadline = Instant::now() + Duration::from_secs(120);
    sc.progress(0.25, deadline).await;
    if std::env::var("SLUICE_BROKER_KEEPS_DEAD_MEMBERS").is_ok_and(|v| v == "1") {
        // A broker that never expires a dead member (tansu 0.6) would keep assigning it
        // partitions after a SIGKILL, and they would stall forever; stop the worker with SIGTERM
        // (drain, commit, leave the group) instead. The SIGKILL run needs member expiry.
        eprintln!(
            "broker keeps dead group members: stopping the worker with SIGTERM instead of SIGKILL"
        );
        a.terminate();
    } else {
        a.kill_9();
    }
    let killed_at = SystemTime::now();
    // The killed member can commit nothing more: these are the positions its partitions resume from.
    let resume_at = sc.positions().await;
    assert!(
        resume_at.iter().sum::<i64>() < DOCS as i64,
        "the kill must land mid-stream: {resume_at:?}"
    );
    let _a2 = sc.worker();
    let oracle = sc.settle(deadline).await;
    let commits = watch.stop();
    let sent = sc.ended_at().await;
    let per = Replays::per_partition(&sc.placed, &sent, &commits, killed_at, &resume_at);

    let total = |f: fn(&Replays) -> usize| per.iter().map(f).sum::<usize>();
    let each = |f: fn(&Replays) -> usize| per.iter().map(f).collect::<Vec<_>>();
    eprintln!(
        "multi-process crash suite ({}): {DOCS} documents; duplicates {}: {} from the kill (its \
         window {} records, per partition {:?}), {} after revocations (bound {REVOCATIONS} × the \
         most ever sent beyond the committed position, per partition {:?}); committed at kill: \
         {resume_at:?}",
        if sc.on_external_broker() { "external broker" } else { "embedded broker" },
        oracle.duplicates(),
        total(|r| r.from_kill),
        total(|r| r.kill_window),
        each(|r| r.kill_window),
        total(|r| r.after_revocations()),
        each(|r| REVOCATIONS * r.most_ahead),
    );
    assert_eq!(total(|r| r.duplicates), oracle.duplicates(), "every copy is placed");
    for (p, r) in per.iter().enumerate() {
        assert!(
            r.below_committed.is_empty(),
            "partition {p}: copies sent below the committed position read before them \
             (offset, committed): {:?}",
            r.below_committed
        );
        assert!(
            r.after_revocations() <= REVOCATIONS * r.most_ahead,
            "partition {p}: {} duplicates beyond the kill's window, more than {REVOCATIONS} \
             revocations × the {} records at most ever sent beyond the committed position",
            r.after_revocations(),
            r.most_ahead
        );
    }
    if apache_kafka() {
        assert_eq!(
            total(|r| r.after_revocations()),
            0,
            "on Apache Kafka a revocation's last commit lands: revocations redo nothing"
        );
    }
    assert!(
        oracle.max_copies() <= 2 + REVOCATIONS,
        "a record copied more often than its partition changed hands: {:?}",
        oracle.duplicated()
    );
}

/// One input partition's duplicates, and what the test read from the broker explains them by.
#[derive(Debug, Default)]
struct Replays {
    /// Extra copies of this partition's records on the output and dead-letter topics.
    duplicates: usize,
    /// Records sent before the kill at or past the committed position read right after it.
    kill_window: usize,
    /// Records of the kill's window sent more than once: at most one extra copy each is the
    /// kill's.
    from_kill: usize,
    /// The most records ever sent beyond the committed position, between two reads of it.
    most_ahead: usize,
    /// Extra copies sent below the committed position read before them: (offset, committed).
    below_committed: Vec<(i64, i64)>,
}

impl Replays {
    /// Extra copies the kill does not explain.
    fn after_revocations(&self) -> usize {
        self.duplicates - self.from_kill
    }

    /// `placed`: where each input lies; `sent`: every output and dead letter, by key, with the
    /// time it was sent (ms since the epoch); `commits`: the group's positions through the run.
    fn per_partition(
        placed: &HashMap<String, (i32, i64)>,
        sent: &[(String, i64)],
        commits: &Commits,
        killed_at: SystemTime,
        resume_at: &[i64],
    ) -> Vec<Self> {
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).expect("after 1970").as_millis();
        let ms = |t: SystemTime| i64::try_from(ms(t)).expect("ms fit");
        // A copy stamped in the millisecond of the kill may be the killed worker's.
        let killed_at = ms(killed_at);
        let mut copies: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
        for (key, at) in sent {
            let (p, offset) = placed[key];
            copies.entry(p).or_default().push((*at, offset));
        }
        (0..PARTITIONS)
            .map(|p| {
                let mut copies = copies.remove(&p).unwrap_or_default();
                copies.sort();
                let mut r = Self::default();
                // Offset → when its first copy was sent, and how many copies it has.
                let mut first: BTreeMap<i64, (i64, usize)> = BTreeMap::new();
                for (at, offset) in copies {
                    let seen = first.entry(offset).or_insert((at, 0));
                    seen.1 += 1;
                    if seen.1 > 1 {
                        r.duplicates += 1;
                        // The read whose answer arrived before the copy's millisecond began.
                        let before = UNIX_EPOCH + Duration::from_millis(at as u64);
                        let committed =
                            commits.before(before).map_or(0, |c| c.positions[p as usize]);
                        if offset < committed {
                            r.below_committed.push((offset, committed));
                        }
                    }
                }
                let window: BTreeSet<i64> = first
                    .range(resume_at[p as usize]..)
                    .filter(|(_, (at, _))| *at <= killed_at)
                    .map(|(offset, _)| *offset)
                    .collect();
                r.kill_window = window.len();
                r.from_kill = window.iter().filter(|o| first[*o].1 > 1).count();
                // Between the arrivals of reads i and i + 1 the committed position is at least read
                // i's, and what was sent by then was sent before read i + 1 arrived.
                r.most_ahead = commits
                    .0
                    .windows(2)
                    .map(|w| {
                        let (from, until) = (w[0].positions[p as usize], ms(w[1].at));
                        // (A copy stamped in read i + 1's millisecond may precede it.)
                        first.range(from..).filter(|(_, (at, _))| *at <= until).count()
                    })
                    .max()
                    .unwrap_or(0);
                r
            })
            .collect()
    }
}
