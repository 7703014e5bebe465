//! Unit tests of the partition state: slots, parking, epochs, revocation, offset order.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::{OwnedMessage, Timestamp};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::super::inbound::Topics;
use super::super::partition::MAX_PARKED_BYTES;
use super::*;
use crate::retry::state::{DUE_MS, ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC, RUNG};

/// Rung 1 of the ladder of input `in`: the only kind of topic whose records can be parked.
const TOPIC: &str = "in.retry.1";

#[derive(Default)]
pub(super) struct Stored(Mutex<Vec<i64>>);

impl OffsetStore for Stored {
    fn store(&self, _tp: &Tp, position: i64, _metadata: &str) {
        self.0.lock().unwrap().push(position);
    }
}

/// Every position and metadata stored, in order.
#[derive(Default)]
struct StoredWithMaps(Mutex<Vec<(i64, String)>>);

impl OffsetStore for StoredWithMaps {
    fn store(&self, _tp: &Tp, position: i64, metadata: &str) {
        self.0.lock().unwrap().push((position, metadata.to_owned()));
    }
}

pub(super) fn tp() -> Tp {
    (TOPIC.to_owned(), 0)
}

pub(super) fn record(offset: i64, key: &str, due_in_ms: Option<i64>) -> Inbound {
    record_with(offset, key, b"v".to_vec(), due_in_ms)
}

fn record_of(offset: i64, value: Vec<u8>, due_in_ms: Option<i64>) -> Inbound {
    record_with(offset, "k", value, due_in_ms)
}

fn record_with(offset: i64, key: &str, value: Vec<u8>, due_in_ms: Option<i64>) -> Inbound {
    let text = |s: &str| Some(s.as_bytes().to_vec());
    let mut headers = vec![
        (RUNG.to_owned(), text("1")),
        (ORIGIN_TOPIC.to_owned(), text("in")),
        (ORIGIN_PARTITION.to_owned(), text("0")),
        (ORIGIN_OFFSET.to_owned(), text(&offset.to_string())),
    ];
    if let Some(d) = due_in_ms {
        headers.push((DUE_MS.to_owned(), text(&(now_ms() + d).to_string())));
    }
    let m = OwnedMessage::new(
        Some(value),
        Some(key.as_bytes().to_vec()),
        TOPIC.into(),
        Timestamp::CreateTime(1),
        0,
        offset,
        None,
    );
    Inbound::from_parts(m, headers, &Topics::ladder("in", 2), now_ms())
}

pub(super) fn setup(
    per_partition: usize,
    key_ordering: bool,
) -> (Arc<Partitions>, UnboundedReceiver<Dispatch>) {
    let (tx, rx) = unbounded_channel();
    let p = Arc::new(Partitions::new(per_partition, 4, key_ordering, false, tx));
    p.assign([(tp(), BTreeSet::new())]);
    (p, rx)
}

/// The offsets of what was dispatched so far: `R` for run, `P` for parked, `Q` for requeued.
fn drain(rx: &mut UnboundedReceiver<Dispatch>) -> Vec<(char, i64, Option<Dispatch>)> {
    let mut out = Vec::new();
    while let Ok(d) = rx.try_recv() {
        match &d {
            Dispatch::Run(j) => out.push(('R', j.inbound.message.offset(), Some(d))),
            Dispatch::Park { offset, .. } => out.push(('P', *offset, Some(d))),
            Dispatch::Requeue { job, .. } => out.push(('Q', job.inbound.message.offset(), Some(d))),
        }
    }
    out
}

fn kinds(d: &[(char, i64, Option<Dispatch>)]) -> Vec<(char, i64)> {
    d.iter().map(|(k, o, _)| (*k, *o)).collect()
}

#[test]
fn a_parked_record_holds_no_slot_and_queues_for_one_when_due() {
    let (p, mut rx) = setup(1, false);
    assert!(p.admit(record(0, "a", Some(60_000)), &Stored::default()));
    assert!(p.admit(record(1, "b", None), &Stored::default()));
    assert!(p.admit(record(2, "c", None), &Stored::default()));
    let first = drain(&mut rx);
    // The parked head does not stop the record behind it; the slot limit still holds.
    assert_eq!(kinds(&first), vec![('P', 0), ('R', 1)]);
    let Some(Dispatch::Park { tp: at, epoch, offset, .. }) = first.into_iter().next().unwrap().2
    else {
        panic!()
    };
    p.unpark(&at, epoch, offset);
    assert!(drain(&mut rx).is_empty(), "due, but the one slot is busy and 2 is ahead of it");
    p.processed(&tp(), 1);
    assert_eq!(kinds(&drain(&mut rx)), vec![('R', 2)]);
    p.processed(&tp(), 1);
    assert_eq!(kinds(&drain(&mut rx)), vec![('R', 0)]);
}

#[test]
fn revocation_waits_for_working_records_not_parked_ones_and_ends_their_timers() {
    let (p, mut rx) = setup(2, false);
    p.admit(record(0, "a", Some(60_000)), &Stored::default());
    p.admit(record(1, "b", None), &Stored::default());
    let d = drain(&mut rx);
    let Some(Dispatch::Park { revoked, .. }) = &d[0].2 else { panic!("parked first") };
    let revoked = revoked.clone();
    let store = Arc::new(Stored::default());
    let (p2, s2) = (p.clone(), store.clone());
    let finisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        p2.processed(&tp(), 1);
        p2.complete(&tp(), 1, 1, None, &*s2);
    });
    let started = Instant::now();
    assert_eq!(p.revoke(&[tp()], Duration::from_secs(30), &Stored::default()), 0);
    assert!(started.elapsed() < Duration::from_secs(30), "woken by the completion");
    finisher.join().unwrap();
    // Offset 0 (parked) was never done: nothing may be stored past it.
    assert!(store.0.lock().unwrap().is_empty());
    assert!(revoked.has_changed().is_err(), "the parked record's timer is told to stop");
    assert!(!p.is_current(&tp(), 1));
}

#[test]
fn revocation_gives_up_after_its_grace_and_reports_what_was_left() {
    let (p, _rx) = setup(2, false);
    p.admit(record(0, "a", None), &Stored::default());
    p.admit(record(1, "b", None), &Stored::default());
    assert_eq!(p.revoke(&[tp()], Duration::from_millis(20), &Stored::default()), 2);
    assert!(
        !p.admit(record(2, "c", None), &Stored::default()),
        "a revoked partition admits nothing"
    );
}

#[test]
fn stale_epochs_are_ignored_and_only_the_contiguous_prefix_is_stored() {
    let (p, mut rx) = setup(4, false);
    let store = Stored::default();
    for o in 0..3 {
        p.admit(record(o, "k", None), &Stored::default());
    }
    drain(&mut rx);
    p.complete(&tp(), 1, 1, None, &store);
    assert!(store.0.lock().unwrap().is_empty(), "0 is not done yet");
    p.complete(&tp(), 1, 0, None, &store);
    assert_eq!(*store.0.lock().unwrap(), vec![2]);
    // A new assignment of the same partition: completions of the old one count for nothing.
    p.revoke(&[tp()], Duration::ZERO, &Stored::default());
    p.assign([(tp(), BTreeSet::new())]);
    p.admit(record(2, "k", None), &Stored::default());
    p.complete(&tp(), 1, 2, None, &store);
    assert_eq!(*store.0.lock().unwrap(), vec![2]);
    assert!(p.is_current(&tp(), 2));
}

#[test]
fn with_key_ordering_a_key_waits_for_its_predecessor() {
    let (p, mut rx) = setup(4, true);
    let store = Stored::default();
    p.admit(record(0, "a", None), &Stored::default());
    p.admit(record(1, "a", None), &Stored::default());
    p.admit(record(2, "b", None), &Stored::default());
    assert_eq!(kinds(&drain(&mut rx)), vec![('R', 0), ('R', 2)]);
    p.processed(&tp(), 1);
    p.complete(&tp(), 1, 0, Some(b"a"), &store);
    assert_eq!(kinds(&drain(&mut rx)), vec![('R', 1)]);
}

/// Partitions storing completed-offset maps, with records 10..=13 admitted and dispatched.
fn with_maps_10_to_13() -> (Partitions, UnboundedReceiver<Dispatch>, StoredWithMaps) {
    let (tx, mut rx) = unbounded_channel();
    let p = Partitions::new(4, 4, false, true, tx);
    p.assign([(tp(), BTreeSet::new())]);
    let store = StoredWithMaps::default();
    for o in 10..14 {
        p.admit(record(o, "k", None), &store);
    }
    drain(&mut rx);
    (p, rx, store)
}

#[test]
fn the_completed_offset_map_is_stored_and_a_new_owner_skips_what_it_lists() {
    let (p, _rx, store) = with_maps_10_to_13();
    p.complete(&tp(), 1, 12, None, &store);
    p.complete(&tp(), 1, 13, None, &store);
    assert!(store.0.lock().unwrap().is_empty(), "no position change: nothing stored per record");
    // Before a commit (revoke, shutdown) the exact map is stored.
    p.store_maps(None, &store);
    let (position, map) = store.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!((position, map.as_str()), (10, "sluice1:10:2-3"), "10 and 11 are still open");

    // The partition moves to a new owner, which reads that commit.
    let (tx, mut rx) = unbounded_channel();
    let next = Partitions::new(4, 4, false, true, tx);
    next.assign([(tp(), super::completed::decode(position, &map))]);
    let store = StoredWithMaps::default();
    for o in 10..14 {
        next.admit(record(o, "k", None), &store);
    }
    assert_eq!(kinds(&drain(&mut rx)), vec![('R', 10), ('R', 11)], "12 and 13 are not run again");
    next.complete(&tp(), 1, 10, None, &store);
    next.complete(&tp(), 1, 11, None, &store);
    assert_eq!(store.0.lock().unwrap().last().unwrap(), &(14, String::new()));
}

#[test]
fn long_waits_take_no_room_in_the_window() {
    // Window: per_partition 1 + buffer 4. Before parked records took no room, five long waits at
    // the head of a rung stopped the partition from being read.
    let (p, mut rx) = setup(1, false);
    for o in 0..50 {
        assert!(p.admit(record(o, "k", Some(3_600_000 + o)), &Stored::default()));
        assert!(p.has_room(&tp()), "{} parked records leave the partition readable", o + 1);
    }
    assert!(p.admit(record(50, "k", None), &Stored::default()));
    let d = kinds(&drain(&mut rx));
    assert_eq!(d.iter().filter(|(k, _)| *k == 'P').count(), 50);
    assert_eq!(d.last(), Some(&('R', 50)), "the record behind them runs at once");
}

#[test]
fn what_is_parked_is_bounded_by_memory() {
    let (p, _rx) = setup(1, false);
    let big = MAX_PARKED_BYTES / 4;
    for o in 0..4 {
        assert!(p.has_room(&tp()));
        p.admit(record_of(o, vec![0; big], Some(3_600_000)), &Stored::default());
    }
    assert!(!p.has_room(&tp()), "past the bound, records wait in Kafka instead");
    p.unpark(&tp(), 1, 0);
    assert!(p.has_room(&tp()), "a due record frees its bytes");
}

/// Admits record 0 due in an hour and records 1..=`behind` due now (one slot), then processes
/// and completes the first `done` of those; what was dispatched so far is drained.
fn parked_head_then(
    p: &Partitions,
    rx: &mut UnboundedReceiver<Dispatch>,
    store: &Stored,
    behind: i64,
    done: i64,
) {
    p.admit(record(0, "k", Some(3_600_000)), store);
    for o in 1..=behind {
        p.admit(record(o, "k", None), store);
    }
    drain(rx);
    for o in 1..=done {
        p.processed(&tp(), 1);
        p.complete(&tp(), 1, o, None, store);
    }
}

#[test]
fn a_parked_head_moves_to_the_end_of_its_topic_after_a_window_of_progress() {
    let (p, mut rx) = setup(1, false);
    let store = Stored::default();
    parked_head_then(&p, &mut rx, &store, 5, 4);
    assert!(drain(&mut rx).iter().all(|(k, _, _)| *k != 'Q'), "4 behind it: less than a window");
    assert!(store.0.lock().unwrap().is_empty(), "the parked head holds the position at 0");
    p.processed(&tp(), 1);
    p.complete(&tp(), 1, 5, None, &store);
    let d = drain(&mut rx);
    assert_eq!(kinds(&d), vec![('Q', 0)], "a window (5) completed behind it");
    p.unpark(&tp(), 1, 0);
    assert!(drain(&mut rx).is_empty(), "its timer finds nothing: it is no longer parked here");
    // The copy at the end of the topic is acknowledged: the offset completes and the position
    // passes everything behind it.
    p.complete(&tp(), 1, 0, None, &store);
    assert_eq!(store.0.lock().unwrap().last(), Some(&6));
}

#[test]
fn a_record_that_could_not_be_moved_waits_where_it_is() {
    let (p, mut rx) = setup(1, false);
    let store = Stored::default();
    parked_head_then(&p, &mut rx, &store, 6, 5);
    let Some((_, _, Some(Dispatch::Requeue { job, due_ms }))) = drain(&mut rx).pop() else {
        panic!("requeued")
    };
    p.repark(job, due_ms);
    p.processed(&tp(), 1);
    p.complete(&tp(), 1, 6, None, &store);
    assert!(drain(&mut rx).is_empty(), "not moved again");
    p.unpark(&tp(), 1, 0);
    assert_eq!(kinds(&drain(&mut rx)), vec![('R', 0)], "runs when due");
}

#[test]
fn once_the_broker_refuses_a_map_positions_are_stored_without_one() {
    let (p, _rx, store) = with_maps_10_to_13();
    p.complete(&tp(), 1, 12, None, &store);
    p.store_maps(None, &store);
    assert_eq!(store.0.lock().unwrap().last().unwrap(), &(10, "sluice1:10:2".to_owned()));
    // The commit of that map was refused: the position is stored again, without it.
    assert!(p.drop_maps(&store), "maps were on");
    assert_eq!(store.0.lock().unwrap().last().unwrap(), &(10, String::new()));
    assert!(!p.drop_maps(&store), "reported once");
    // From now on no map goes with a position: not on progress, before a commit or on revoke.
    store.0.lock().unwrap().clear();
    p.complete(&tp(), 1, 10, None, &store);
    p.complete(&tp(), 1, 13, None, &store);
    p.store_maps(None, &store);
    p.revoke(&[tp()], Duration::ZERO, &store);
    assert_eq!(*store.0.lock().unwrap(), vec![(11, String::new())], "12 and 13 finished beyond 11");
}
