//! The index: the nearest compatible live entry of the same key, and nothing else.

use proptest::prelude::*;

use super::*;
use crate::policy::semantic::entry::test_entry;
use crate::policy::semantic::key::{test_key, Scope};

const T: f32 = 0.9;

fn index() -> SemanticIndex {
    SemanticIndex::new(IndexLimits { capacity_per_key: 3, ..IndexLimits::default() })
}

fn add(i: &mut SemanticIndex, tenant: &str, text: &str, v: &[f32], created: i64) {
    i.insert(test_entry(tenant, text, v, created), created).expect("inserted");
}

#[test]
fn a_similar_question_of_the_same_key_is_answered_with_its_similarity_and_document() {
    let mut i = index();
    add(&mut i, "acme", "How do I reset my password?", &[1.0, 0.0, 0.0], 0);
    let found = i.lookup(&test_key("acme"), &[0.95, 0.1, 0.0], "how do i reset my password", T, 1);
    let hit = found.hit.expect("a hit");
    assert_eq!(hit.entry.document_id, "doc-How do I reset my password?");
    assert!((hit.similarity - 0.9945).abs() < 1e-3, "{}", hit.similarity);
    assert_eq!(found.best, Some(hit.similarity));
    // Below the threshold: a miss that still reports the best similarity.
    let far = i.lookup(&test_key("acme"), &[0.5, 0.5, 0.5], "something else", T, 1);
    assert!(far.hit.is_none());
    assert!(far.best.is_some_and(|b| b < T));
}

#[test]
fn a_near_miss_is_refused_by_the_guard_even_when_it_is_the_most_similar() {
    let mut i = index();
    add(&mut i, "acme", "Refund order 1142 please.", &[1.0, 0.0, 0.0], 0);
    add(&mut i, "acme", "Please refund my order 1143.", &[0.95, 0.2, 0.0], 1);
    let found = i.lookup(&test_key("acme"), &[1.0, 0.0, 0.0], "Refund order 1143 please.", T, 2);
    assert_eq!(found.guarded.len(), 1, "1142 was closest and refused");
    assert_eq!(found.guarded[0].1.kind(), "value");
    let hit = found.hit.expect("the compatible entry, next in similarity");
    assert_eq!(hit.entry.text, "Please refund my order 1143.");
    let none = i.lookup(&test_key("acme"), &[1.0, 0.0, 0.0], "Don't refund order 1142.", T, 2);
    assert!(none.hit.is_none());
}

#[test]
fn another_tenant_a_new_prompt_version_or_model_never_sees_the_entry() {
    let mut i = index();
    add(&mut i, "acme", "Cancel my subscription.", &[1.0, 0.0, 0.0], 0);
    let base = test_key("acme");
    for other in [
        test_key("globex"),
        SemanticKey { scope: Scope::Global, ..base.clone() },
        SemanticKey { prompt_version: Some("v2".into()), ..base.clone() },
        SemanticKey { model: "large".into(), ..base.clone() },
        SemanticKey { embedding: "bge".into(), ..base.clone() },
    ] {
        let found = i.lookup(&other, &[1.0, 0.0, 0.0], "Cancel my subscription.", T, 1);
        assert!(found.hit.is_none() && found.best.is_none(), "{other:?}");
    }
    assert!(i.lookup(&base, &[1.0, 0.0, 0.0], "Cancel my subscription.", T, 1).hit.is_some());
}

#[test]
fn expired_entries_never_answer_and_are_dropped() {
    let mut i = index();
    add(&mut i, "acme", "a", &[1.0, 0.0, 0.0], 0); // lives until 1000
    let before = i.bytes();
    assert!(before > 0);
    assert!(i.lookup(&test_key("acme"), &[1.0, 0.0, 0.0], "a", T, 999).hit.is_some());
    assert!(i.lookup(&test_key("acme"), &[1.0, 0.0, 0.0], "a", T, 1000).hit.is_none());
    assert_eq!((i.len(), i.bytes()), (0, 0));
    let stale = test_entry("acme", "b", &[1.0, 0.0, 0.0], 0);
    assert_eq!(i.insert(stale, 5000).err(), Some(InsertError::Expired));
    add(&mut i, "acme", "c", &[1.0, 0.0, 0.0], 0);
    add(&mut i, "globex", "c", &[1.0, 0.0, 0.0], 500);
    assert_eq!(i.expire(1200), 1, "only acme's entry had expired");
    assert_eq!(i.len(), 1);
}

#[test]
fn each_key_keeps_its_newest_entries_within_capacity() {
    let mut i = index();
    for n in 0..3 {
        add(&mut i, "acme", &format!("q{n}"), &[1.0, n as f32, 0.0], n);
    }
    add(&mut i, "globex", "q", &[1.0, 0.0, 0.0], 0);
    let evicted = i.insert(test_entry("acme", "q3", &[1.0, 3.0, 0.0], 3), 3).expect("inserted");
    assert_eq!(evicted, 1);
    assert_eq!((i.len_of(&test_key("acme")), i.len_of(&test_key("globex"))), (3, 1));
    let q0 = i.lookup(&test_key("acme"), &[1.0, 0.0, 0.0], "q0", 0.999, 4);
    assert!(q0.hit.is_none(), "the oldest, q0, was evicted");
}

#[test]
fn the_whole_index_stays_within_its_bytes_evicting_the_oldest_of_any_key() {
    let mut one = index();
    add(&mut one, "acme", "q0", &[1.0, 0.0, 0.0], 0);
    let per_entry = one.bytes();
    let limits = IndexLimits { capacity_per_key: 100, max_bytes: per_entry * 5 / 2 };
    let mut i = SemanticIndex::new(limits);
    add(&mut i, "acme", "q0", &[1.0, 0.0, 0.0], 0);
    add(&mut i, "globex", "q0", &[1.0, 0.0, 0.0], 1);
    assert_eq!(i.insert(test_entry("initech", "q0", &[1.0, 0.0, 0.0], 2), 2), Ok(1));
    assert!(i.bytes() <= limits.max_bytes);
    assert_eq!(i.len_of(&test_key("acme")), 0, "acme's entry was the oldest");
    assert_eq!((i.len_of(&test_key("globex")), i.len_of(&test_key("initech"))), (1, 1));
}

#[test]
fn storing_a_text_again_replaces_it_and_a_tombstone_removes_it() {
    let mut i = index();
    add(&mut i, "acme", "Where is my parcel?", &[1.0, 0.0, 0.0], 0);
    add(&mut i, "acme", "where is my  parcel?", &[1.0, 0.0, 0.0], 10);
    assert_eq!(i.len(), 1, "the same record key");
    let found = i.lookup(&test_key("acme"), &[1.0, 0.0, 0.0], "Where is my parcel?", T, 11);
    assert_eq!(found.hit.expect("a hit").entry.created_ms, 10, "the newer entry");
    let key = crate::policy::semantic::record_key(&test_key("acme"), "Where is my parcel?");
    assert!(i.remove(&key));
    assert!(!i.remove(&key));
    assert_eq!((i.len(), i.bytes()), (0, 0));
    assert!(i
        .lookup(&test_key("acme"), &[1.0, 0.0, 0.0], "Where is my parcel?", T, 1)
        .hit
        .is_none());
}

#[test]
fn vectors_of_another_dimension_or_not_finite_are_refused() {
    let mut i = index();
    add(&mut i, "acme", "a", &[1.0, 0.0, 0.0], 0);
    let wide = test_entry("acme", "b", &[1.0, 0.0, 0.0, 0.0], 0);
    assert_eq!(i.insert(wide, 0).err(), Some(InsertError::Dimensions { expected: 3, got: 4 }));
    let mut nan = test_entry("acme", "c", &[1.0, 0.0, 0.0], 0);
    nan.vector[1] = f32::NAN;
    assert_eq!(i.insert(nan, 0).err(), Some(InsertError::Vector));
    let key = test_key("acme");
    assert!(i.lookup(&key, &[1.0, 0.0], "a", T, 1).best.is_none());
    assert!(i.lookup(&key, &[f32::NAN, 0.0, 0.0], "a", T, 1).best.is_none());
    assert!(i.lookup(&key, &[0.0, 0.0, 0.0], "a", T, 1).best.is_none());
    assert_eq!(i.len(), 1);
}

proptest! {
    /// However entries come and go, the bytes accounted return to zero with the last entry.
    #[test]
    fn memory_accounting_balances(ops in proptest::collection::vec((0u8..4, 0u8..6, 0i64..3000), 1..60)) {
        let mut i = SemanticIndex::new(IndexLimits { capacity_per_key: 2, max_bytes: 6000 });
        for (op, n, at) in ops {
            let tenant = if n % 2 == 0 { "acme" } else { "globex" };
            let text = format!("question {}", n / 2);
            match op {
                0 | 1 => { let _ = i.insert(test_entry(tenant, &text, &[1.0, f32::from(n), 0.0], at), at / 2); }
                2 => { i.remove(&crate::policy::semantic::record_key(&test_key(tenant), &text)); }
                _ => { i.expire(at); }
            }
            prop_assert!(i.len_of(&test_key("acme")) <= 2 && i.len_of(&test_key("globex")) <= 2);
            prop_assert_eq!(i.is_empty(), i.bytes() == 0);
        }
        i.expire(i64::MAX);
        prop_assert_eq!((i.len(), i.bytes()), (0, 0));
    }
}
