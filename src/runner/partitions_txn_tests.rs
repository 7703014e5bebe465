//! Unit tests of an exactly-once stage's partition state: completion into a transaction, the
//! committed positions, and the rewind after an abort.

use std::collections::BTreeSet;

use super::super::tests_support::{record, setup, tp, Stored};
use super::*;

fn admit_all(p: &Partitions, offsets: impl IntoIterator<Item = i64>) {
    for o in offsets {
        assert!(p.admit(record(o, &format!("k{o}"), None), &Stored::default()));
    }
}

fn set(tps: &[Tp]) -> BTreeSet<Tp> {
    tps.iter().cloned().collect()
}

#[test]
fn a_transaction_commits_the_position_and_the_offsets_done_above_it() {
    let (p, _rx) = setup(8, false);
    admit_all(&p, 10..15);
    let epoch = p.lock().parts[&tp()].epoch;
    assert_eq!(p.add_to_transaction(&tp(), epoch, 12, None), Added::Done);
    assert_eq!(p.add_to_transaction(&tp(), epoch, 10, None), Added::Done);
    let positions = p.positions(&set(&[tp()]));
    assert_eq!(positions, vec![(tp(), 11, BTreeSet::from([12]))]);
}

#[test]
fn an_abort_rewinds_to_the_last_commit_and_refuses_the_records_in_flight() {
    let (p, _rx) = setup(8, false);
    admit_all(&p, 10..15);
    let epoch = p.lock().parts[&tp()].epoch;
    assert_eq!(p.add_to_transaction(&tp(), epoch, 10, None), Added::Done);
    assert_eq!(p.add_to_transaction(&tp(), epoch, 12, None), Added::Done);
    p.committed(&p.positions(&set(&[tp()])));
    // The next transaction takes 11 and 13, then aborts.
    assert_eq!(p.add_to_transaction(&tp(), epoch, 11, None), Added::Done);
    assert_eq!(p.add_to_transaction(&tp(), epoch, 13, None), Added::Done);
    p.rewind(&set(&[tp()]));
    assert_eq!(p.add_to_transaction(&tp(), epoch, 14, None), Added::Stale, "old epoch");
    assert!(!p.has_room(&tp()), "not read until the poll thread has sought back");
    assert!(p.admit(record(14, "k", None), &Stored::default()), "read before the seek");
    assert_eq!(p.take_rewinds(), vec![(tp(), 11)], "back to the committed position");
    p.rewound(&tp());
    assert!(p.take_rewinds().is_empty());
    // Read again from 11: 12 was committed done and is skipped, 11 and 13 run again.
    admit_all(&p, 11..15);
    let state = &p.lock().parts[&tp()];
    assert_eq!(state.window.len(), 3, "11, 13 and 14 open; 12 done");
    assert_eq!(state.window.progress().map(|(pos, _)| pos), Some(11));
}

#[test]
fn a_record_its_partitions_map_cannot_name_waits_for_a_later_transaction() {
    let (p, _rx) = setup(10_000, false);
    admit_all(&p, 0..6001);
    let epoch = p.lock().parts[&tp()].epoch;
    // Offset 0 stays open; every other offset completes: thousands of single-offset ranges.
    let mut full = None;
    for o in (2..6001).step_by(2) {
        if p.add_to_transaction(&tp(), epoch, o, None) == Added::Full {
            full = Some(o);
            break;
        }
    }
    let full = full.expect("the map fills before 3000 scattered offsets");
    let (position, done) = {
        let positions = p.positions(&set(&[tp()]));
        (positions[0].1, positions[0].2.clone())
    };
    assert!(!done.contains(&full), "not completed");
    let map = completed::encode(position, &done);
    assert_eq!(completed::decode(position, &map), done, "the committed map names every record");
    assert_eq!(p.add_to_transaction(&tp(), epoch, 0, None), Added::Done, "the head always fits");
}
