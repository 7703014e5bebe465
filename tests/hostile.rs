//! Hostile input through a whole stage: 100,000 records that are not documents sluice can
//! process, interleaved with valid ones, against the embedded broker, with the producer's default
//! size limit. Nothing may crash or stall a partition; every undecodable record must be
//! dead-lettered with its bytes intact (or, past the size limit, without them and saying so),
//! every valid record processed — also under forged retry headers, which mean nothing on the
//! input.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use common::hostile::{bulk_producer, low_watermarks, send_all, Builder, Kind, Sent};
use common::{field, Harness, OneStage, Script, TestStage};

/// Hostile records sent; valid ones are one in ten of all records.
const HOSTILE: usize = 100_000;
const VALID_EVERY: usize = 10;
const PARTITIONS: i32 = 16;

/// How long the stage may take to finish them all (a deadline against a hang, not a benchmark).
const FINISH: Duration = Duration::from_secs(300);

/// Logs errors only (unless `RUST_LOG` says otherwise): the runner logs each dead letter at
/// WARN, which would be 100,000 lines.
fn quiet_logs() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// Panics naming a few of the ids in one set and not the other.
fn same(what: &str, got: BTreeSet<&str>, want: BTreeSet<&str>) {
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    assert!(extra.is_empty() && missing.is_empty(), "{what}: extra {extra:?}, missing {missing:?}");
}

fn class(v: &Value) -> String {
    match field(v, "error_class") {
        Value::Enum(_, symbol) => symbol.clone(),
        other => panic!("error_class is not an enum: {other:?}"),
    }
}

/// The records to send, in order: hostile ones of every kind round-robin (with one in a
/// thousand over the size limit), one valid record after every nine, on rotating partitions.
fn records(b: &mut Builder<'_>) -> Vec<Sent> {
    let small: Vec<Kind> = Kind::ALL.into_iter().filter(|k| *k != Kind::Oversize).collect();
    let (mut out, mut hostile, mut valid) = (Vec::new(), 0, 0);
    while hostile < HOSTILE {
        let partition = (out.len() % PARTITIONS as usize) as i32;
        if out.len() % VALID_EVERY == VALID_EVERY - 1 {
            out.push(b.valid(valid, partition));
            valid += 1;
            continue;
        }
        let kind =
            if hostile % 1000 == 500 { Kind::Oversize } else { small[hostile % small.len()] };
        out.push(b.hostile(hostile, kind, partition));
        hostile += 1;
    }
    out
}

/// 100,000 hostile records — random bytes, truncated Avro, a wrong magic byte, unknown and wrong
/// schema ids, values over the producer's 1 MB limit, tombstones, valid documents under forged
/// retry headers (invalid ones, and a due time 30 days ahead); a quarter of them with keys that
/// are not UTF-8 and a quarter with header keys or values that are not UTF-8 — interleaved with
/// 11,111 valid documents decorated the same way, over 16 partitions. The runner must commit
/// every partition to its end, dead-letter each undecodable record exactly once (class DECODE,
/// `original_value` byte for byte what was sent, none for a tombstone or one over the limit)
/// and deliver each document exactly once, forged headers or not. In a debug
/// build on two cores: about 16 s for the stage, 40 s for the whole test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_hostile_records_are_dead_lettered_intact_and_valid_ones_processed() {
    // The producer's default `message.max.bytes`: a dead letter of an oversized record goes out
    // without its value. Compressed, 100,000 letters fit the mock cluster's 5 MB per partition.
    let topology = OneStage::new(PARTITIONS, "{ max_in_flight: 4096, per_partition: 256 }")
        .producer("compression.type: lz4")
        .yaml();
    quiet_logs();
    let h = Harness::start(&topology).await;
    let codec = h.codec().await;
    let mut builder = Builder::new(&h, &codec, 0x5eed);
    let sent = records(&mut builder);
    let started = Instant::now();
    send_all(&bulk_producer(&h), &h.input(), &sent).await;
    let produced = started.elapsed();
    let mut per_partition = vec![0i64; PARTITIONS as usize];
    sent.iter().for_each(|r| per_partition[r.partition as usize] += 1);

    let started = Instant::now();
    let run = h.start_stage(TestStage::new(Script::default())).await;
    run.run_until(FINISH, "every partition committed to its end", || async {
        h.committed(PARTITIONS) == per_partition
    })
    .await
    .expect("the runner ends cleanly");
    let processed = started.elapsed();

    for topic in [h.input(), h.output(), h.dlq()] {
        let low = low_watermarks(&h, &topic, PARTITIONS);
        assert!(
            low.iter().all(|o| *o == 0),
            "the mock cluster dropped records of {topic}: {low:?}"
        );
    }
    let by_id: HashMap<&str, &Sent> = sent.iter().map(|r| (r.id.as_str(), r)).collect();
    assert_eq!(by_id.len(), sent.len(), "keys are unique");
    let oracle = h.oracle(by_id.keys().map(|id| id.to_string())).await;
    oracle.check();
    assert_eq!(oracle.duplicates(), 0, "one member, no rebalance: {:?}", oracle.duplicated());
    let ids = |dead: bool| -> BTreeSet<&str> {
        sent.iter()
            .filter(|r| r.kind.is_some_and(Kind::undecodable) == dead)
            .map(|r| r.id.as_str())
            .collect()
    };
    same("dead-lettered", oracle.dead_lettered(), ids(true));
    same("delivered", oracle.delivered(), ids(false));

    let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
    for (_, _, key, value) in h.read_all(&h.dlq()).await {
        let key = key.expect("a dead letter keeps the record's key");
        let letter = value.expect("dead letters decode");
        let sent = by_id[key.as_str()];
        let kind = sent.kind.unwrap_or_else(|| panic!("valid record {key} dead-lettered"));
        assert_eq!(class(&letter), "DECODE", "{key} ({kind:?})");
        let original = match field(&letter, "original_value") {
            Value::Bytes(b) => Some(b.as_slice()),
            Value::Null => None,
            other => panic!("original_value: {other:?}"),
        };
        // Past the size limit the letter goes without the value (it stays at its coordinates).
        let expected = if kind == Kind::Oversize { None } else { sent.value.as_deref() };
        assert!(original == expected, "{key} ({kind:?}): its bytes changed");
        *kinds.entry(kind).or_insert(0) += 1;
    }
    let undecodable: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.undecodable()).collect();
    assert_eq!(kinds.keys().copied().collect::<Vec<_>>(), undecodable, "every kind sent");
    eprintln!(
        "{} hostile + {} valid records over {PARTITIONS} partitions: produced in {produced:?}, \
         processed in {processed:?}; dead letters by kind: {kinds:?}",
        HOSTILE,
        sent.len() - HOSTILE,
    );
}
