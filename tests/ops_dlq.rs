//! `sluice dlq inspect` and `sluice dlq redrive` in process, on the embedded broker, with dead
//! letters a real stage run wrote: counts, a dry run that changes nothing, redrives of exactly the
//! selected records with their key, value and headers, resumption without a second redrive, the
//! loop guard, a redriven record processed once its failure is gone, and a position another
//! redrive moved left standing.

mod common;

use common::letters::letter;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::read::raw_records;
use common::{document, ids, Harness, OneStage, Script, TestStage};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use sluice::avro::DeadLetterClass;
use sluice::ops::dlq::fate::REDRIVEN_FROM;
use sluice::ops::dlq::redrive::position::Position;
use sluice::ops::dlq::{At, Fate, Letters};
use sluice::ops::{self, DlqError, Filter, PlanRow, RedriveOptions, RedriveReport, REDRIVE_COUNT};
use sluice::stage::StageError;

const WINDOW: &str = "{ max_in_flight: 8, per_partition: 8 }";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Documents `id-<i>` on partition 0 of the input, each with a header `x-origin: app-<i>`.
async fn produce_with_headers(h: &Harness, range: std::ops::Range<usize>) {
    let (codec, producer, topic) = (h.codec().await, h.producer(), h.input());
    for i in range {
        let id = format!("id-{i}");
        let bytes = h.encode(&codec, &topic, &document(&id, "t", &format!("document {i}")));
        let origin = format!("app-{i}");
        let headers = OwnedHeaders::new().insert(Header { key: "x-origin", value: Some(&origin) });
        let record =
            FutureRecord::to(&topic).key(&id).payload(&bytes).partition(0).headers(headers);
        producer.send(record, Timeout::After(TIMEOUT)).await.expect("produce");
    }
}

fn failing(errors: &[(&str, StageError)]) -> Script {
    let fail: HashMap<String, StageError> =
        errors.iter().map(|(id, e)| ((*id).to_owned(), e.clone())).collect();
    Script { fail, ..Script::default() }
}

async fn redrive(h: &Harness, opts: RedriveOptions) -> RedriveReport {
    let report = ops::redrive(&h.topology, "work", &opts, |_| {}).await.expect("redrive");
    assert_eq!(report.stopped, None, "the run went to the end");
    report
}

fn execute(filter: Filter) -> RedriveOptions {
    RedriveOptions { filter, execute: true, ..RedriveOptions::default() }
}

fn class(c: DeadLetterClass) -> Filter {
    Filter { error_class: Some(c), ..Filter::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_counts_dead_letters_by_class_and_message_and_decodes_samples() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    h.produce_docs(0..5, Some(0), |_| None).await;
    let script = failing(&[
        ("id-0", StageError::permanent("content policy")),
        ("id-1", StageError::permanent("content policy")),
        ("id-2", StageError::retryable("model overloaded")),
    ]);
    h.run_to_end(script, &ids(0..5), TIMEOUT).await;

    let all = ops::inspect(&h.topology, "work", &Filter::default(), 10).await.expect("inspect");
    assert_eq!((all.records, all.selected, all.undecodable), (3, 3, 0));
    let by_class: Vec<(&str, usize)> =
        all.by_class.iter().map(|c| (c.error_class.as_str(), c.count)).collect();
    assert_eq!(by_class, [("PERMANENT", 2), ("RETRIES_EXHAUSTED", 1)]);
    let top = &all.by_message[0];
    assert_eq!((top.error_class.as_str(), top.count), ("PERMANENT", 2));
    assert!(top.message.contains("content policy"), "{}", top.message);
    assert!(top.first_seen_ms <= top.last_seen_ms);
    assert!(all.by_message[1].message.contains("model overloaded"));
    assert_eq!(all.samples.len(), 3);
    for s in &all.samples {
        let key = s.key.as_deref().expect("key");
        assert_eq!(s.original_value["decoded"]["id"], key, "the original value is decoded");
        assert_eq!(s.original_topic, h.input());
        assert_eq!(s.redrive_count, Some(0));
    }

    let exhausted = class(DeadLetterClass::RetriesExhausted);
    let one = ops::inspect(&h.topology, "work", &exhausted, 1).await.expect("inspect");
    assert_eq!((one.selected, one.samples.len()), (1, 1));
    assert_eq!((one.samples[0].key.as_deref(), one.samples[0].attempts), (Some("id-2"), 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_changes_nothing_and_execute_redrives_exactly_the_selected_records_once() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    produce_with_headers(&h, 0..4).await;
    let script = failing(&[
        ("id-0", StageError::permanent("content policy")),
        ("id-1", StageError::retryable("model overloaded")),
    ]);
    h.run_to_end(script, &ids(0..4), TIMEOUT).await;
    let input = h.input();
    let originals = raw_records(&h, &input).await;
    let group = ops::redrive_group(&h.topology.stages[0]);
    let position = || common::committed(h.stack.kafka.bootstrap_servers(), &group, &h.dlq(), 1);

    let plan = redrive(&h, RedriveOptions::default()).await;
    assert!(!plan.executed);
    let row =
        |c: &str| PlanRow { original_topic: input.clone(), error_class: c.into(), records: 1 };
    let mut rows = plan.plan.clone();
    rows.sort_by(|a, b| a.error_class.cmp(&b.error_class));
    assert_eq!(rows, [row("PERMANENT"), row("RETRIES_EXHAUSTED")]);
    assert_eq!((plan.redriven, plan.remaining), (0, 2));
    assert_eq!(h.count(&input).await, 4, "a dry run produces nothing");
    assert_eq!(position(), [0], "a dry run commits nothing");

    let first = redrive(&h, execute(class(DeadLetterClass::RetriesExhausted))).await;
    assert_eq!((first.redriven, first.passed_over, first.remaining), (1, 1, 0));
    let now = raw_records(&h, &input).await;
    assert_eq!(now.len(), 5);
    let (key, value, headers) = &now[4];
    let original = originals.iter().find(|r| r.0.as_deref() == Some("id-1")).expect("id-1");
    assert_eq!((key, value), (&original.0, &original.1), "the original key and value");
    let from = format!("{}:0:1", h.dlq());
    assert_eq!(
        headers,
        &[
            ("x-origin".to_owned(), "app-1".to_owned()),
            (REDRIVE_COUNT.to_owned(), "1".to_owned()),
            (REDRIVEN_FROM.to_owned(), from)
        ],
        "the original headers, a redrive count, and the letter it was redriven from"
    );

    let again = redrive(&h, execute(class(DeadLetterClass::RetriesExhausted))).await;
    assert_eq!((again.redriven, again.done_before, again.passed_over), (0, 1, 1));
    assert_eq!(h.count(&input).await, 5, "a second run redrives nothing twice");

    let rest = redrive(&h, execute(Filter::default())).await;
    assert_eq!((rest.redriven, rest.done_before), (1, 1), "the record passed over is still there");
    let now = raw_records(&h, &input).await;
    assert_eq!(now[5].0.as_deref(), Some("id-0"));
    assert!(now[5].2.contains(&(REDRIVE_COUNT.to_owned(), "1".to_owned())));

    let done = redrive(&h, execute(Filter::default())).await;
    assert_eq!((done.redriven, done.done_before), (0, 2));
    assert_eq!(h.count(&input).await, 6);
    assert_eq!(position(), [2], "the position passed both once both were redriven");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_guard_leaves_a_record_redriven_max_times_in_place() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    h.produce_docs(0..2, Some(0), |_| None).await;
    let stage = TestStage::new(failing(&[("id-0", StageError::permanent("always"))]));
    let running = h.start_stage(stage.clone()).await;
    let dlq = h.dlq();
    let letters = |n: usize| {
        let (h, dlq) = (&h, dlq.clone());
        move || {
            let dlq = dlq.clone();
            async move { h.count(&dlq).await >= n }
        }
    };
    running.until(TIMEOUT, "dead-lettered", letters(1)).await;
    let once = RedriveOptions { max_redrives: 1, ..execute(Filter::default()) };
    assert_eq!(redrive(&h, once.clone()).await.redriven, 1);
    running.until(TIMEOUT, "dead-lettered again", letters(2)).await;

    let guarded = redrive(&h, once).await;
    assert_eq!((guarded.redriven, guarded.done_before), (0, 1));
    assert_eq!(guarded.loop_guarded.len(), 1);
    assert_eq!(guarded.loop_guarded[0].key.as_deref(), Some("id-0"));
    assert_eq!(guarded.loop_guarded[0].redrive_count, Some(1));
    assert_eq!(h.count(&h.input()).await, 3, "the guarded record was not republished");

    let twice = RedriveOptions { max_redrives: 2, ..execute(Filter::default()) };
    let more = redrive(&h, twice).await;
    assert_eq!(more.redriven, 1, "left in place, so a higher limit still reaches it");
    running.until(TIMEOUT, "dead-lettered a third time", letters(3)).await;
    running.stop().await.expect("run");
    let newest = ops::inspect(&h.topology, "work", &Filter::default(), 1).await.expect("inspect");
    assert_eq!(newest.samples[0].redrive_count, Some(2));
    assert_eq!(stage.calls_for("id-0"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_record_is_processed_once_its_failure_is_gone() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    h.produce_docs(0..3, Some(0), |_| None).await;
    let fail_first =
        HashMap::from([("id-0".to_owned(), (1, StageError::permanent("provider outage")))]);
    let stage = TestStage::new(Script { fail_first, ..Script::default() });
    let running = h.start_stage(stage.clone()).await;
    running
        .until(TIMEOUT, "every record ended", || async { h.oracle(ids(0..3)).await.all_ended() })
        .await;
    let letter = ops::inspect(&h.topology, "work", &Filter::default(), 1).await.expect("inspect");
    assert_eq!(letter.samples[0].key.as_deref(), Some("id-0"));
    assert_eq!(letter.samples[0].attempts, 1);
    assert!(!h.ids_on(&h.output()).await.contains_key("id-0"));

    assert_eq!(redrive(&h, execute(Filter::default())).await.redriven, 1);
    running
        .run_until(TIMEOUT, "the redriven record was processed", || async {
            h.ids_on(&h.output()).await.contains_key("id-0")
        })
        .await
        .expect("run");
    assert_eq!(stage.calls_for("id-0"), 2);
    assert_eq!(h.count(&h.dlq()).await, 1, "it did not fail again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_select_and_a_withheld_value_is_reported_and_passed_for_good() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    let (codec, producer, dlq, input) = (h.codec().await, h.producer(), h.dlq(), h.input());
    let doc = |id: &str| h.encode(&codec, &input, &document(id, "t", "text"));
    let letters = [
        letter(&h, "id-5", None),
        letter(&h, "id-6", Some(doc("id-6"))),
        letter(&h, "id-7", Some(doc("id-7"))),
    ];
    for l in &letters {
        let bytes = codec.encode(&dlq, &l.to_value()).expect("encode");
        h.send_raw(&producer, &dlq, l.original_key.as_deref(), &bytes, Some(0)).await;
    }
    producer.flush(TIMEOUT).expect("flush");

    let by_id = Filter { ids: vec!["id-7".into()], ..Filter::default() };
    let one = redrive(&h, execute(by_id)).await;
    assert_eq!((one.redriven, one.passed_over, one.unredrivable.len()), (1, 2, 0));
    assert_eq!(raw_records(&h, &input).await[0].0.as_deref(), Some("id-7"));

    let rest = redrive(&h, execute(Filter::default())).await;
    assert_eq!((rest.redriven, rest.done_before), (1, 1));
    assert_eq!(rest.unredrivable.len(), 1);
    assert_eq!(rest.unredrivable[0].key.as_deref(), Some("id-5"));
    assert!(rest.unredrivable[0].reason.contains("withheld"), "{}", rest.unredrivable[0].reason);

    let done = redrive(&h, execute(Filter::default())).await;
    assert_eq!((done.redriven, done.done_before, done.unredrivable.len()), (0, 3, 0));
    let group = ops::redrive_group(&h.topology.stages[0]);
    let position = common::committed(h.stack.kafka.bootstrap_servers(), &group, &dlq, 1);
    assert_eq!(position, [3], "a record that can never be redriven is passed for good");
    assert_eq!(h.count(&input).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_moved_by_another_redrive_is_not_overwritten() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    let (codec, producer, dlq) = (h.codec().await, h.producer(), h.dlq());
    for id in ["id-0", "id-1"] {
        let bytes = codec.encode(&dlq, &letter(&h, id, None).to_value()).expect("encode");
        h.send_raw(&producer, &dlq, Some(id.as_bytes()), &bytes, Some(0)).await;
    }
    let group = ops::redrive_group(&h.topology.stages[0]);
    let consumer = || {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", h.stack.kafka.bootstrap_servers()).set("group.id", &group);
        Arc::new(config.create::<StreamConsumer>().expect("consumer"))
    };
    let mut mine = Position::load(consumer(), &dlq, &group).await.expect("position");
    let mut theirs = Position::load(consumer(), &dlq, &group).await.expect("position");
    theirs.parts.get_mut(&0).expect("partition 0").done.insert(0);
    theirs.commit().await.expect("the other run commits first");

    mine.parts.get_mut(&0).expect("partition 0").done.insert(1);
    let error = mine.commit().await.expect_err("the position moved");
    assert!(matches!(error, DlqError::PositionMoved { partition: 0, .. }), "{error}");
    let position = common::committed(h.stack.kafka.bootstrap_servers(), &group, &dlq, 1);
    assert_eq!(position, [1], "the other run's commit stands");
}

/// A document that failed twice has two letters; a position picks exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_selects_one_letter_of_a_document_that_failed_twice() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    let (codec, producer, dlq, input) = (h.codec().await, h.producer(), h.dlq(), h.input());
    let doc = h.encode(&codec, &input, &document("id-7", "t", "text"));
    for _ in 0..2 {
        let l = letter(&h, "id-7", Some(doc.clone()));
        let bytes = codec.encode(&dlq, &l.to_value()).expect("encode");
        h.send_raw(&producer, &dlq, l.original_key.as_deref(), &bytes, Some(0)).await;
    }
    producer.flush(TIMEOUT).expect("flush");
    let second = Filter { ids: vec!["id-7".into()], at: vec![(0, 1)], ..Filter::default() };
    let one = redrive(&h, execute(second)).await;
    assert_eq!((one.redriven, one.passed_over), (1, 1), "the letter at 0:1 only");
    assert_eq!(h.count(&input).await, 1);
    let rest = redrive(&h, execute(Filter { ids: vec!["id-7".into()], ..Filter::default() })).await;
    assert_eq!((rest.redriven, rest.done_before), (1, 1), "the other letter is still there");
}

/// Every letter of stage `work`: its position, key and fate.
async fn fates_of(h: &Harness) -> Vec<(At, String, Fate)> {
    let (t, dlq, codec) = (&h.topology, h.dlq(), h.codec().await);
    let records = ops::dlq::read::read_all(t, &codec, &dlq).await.expect("read");
    let fates = ops::dlq::fates(t, &t.stages[0], &records).await.expect("fates");
    let key = |r: &ops::dlq::read::DlqRecord| {
        r.letter.as_ref().ok().and_then(|l| l.original_key.clone()).unwrap_or_default()
    };
    records
        .iter()
        .map(|r| {
            let at = At::new(r.partition, r.offset);
            (at, String::from_utf8_lossy(&key(r)).into_owned(), fates[&at].clone())
        })
        .collect()
}

/// Issue 24 #4: after a redrive, the letters are outstanding no more — counted apart from all
/// letters — and each says what became of its record: one processed, one dead-lettered again
/// (at the newer letter, itself outstanding). A single letter's dry run counts only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redriven_letters_are_no_longer_outstanding_and_say_what_became_of_them() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    h.produce_docs(0..3, Some(0), |_| None).await;
    let fail_first =
        HashMap::from([("id-0".to_owned(), (1, StageError::permanent("provider outage")))]);
    let fail = HashMap::from([("id-1".to_owned(), StageError::permanent("content policy"))]);
    let stage = TestStage::new(Script { fail_first, fail, ..Script::default() });
    let running = h.start_stage(stage.clone()).await;
    let dlq = h.dlq();
    let letters = |n: usize| {
        let (h, dlq) = (&h, dlq.clone());
        move || {
            let dlq = dlq.clone();
            async move { h.count(&dlq).await >= n }
        }
    };
    running.until(TIMEOUT, "both dead-lettered", letters(2)).await;
    let spec = h.topology.stages[0].clone();
    let counted = |h: &Harness| {
        let (kafka, spec) = (h.topology.kafka.clone(), spec.clone());
        async move {
            tokio::task::spawn_blocking(move || ops::dlq::outstanding(&kafka, &spec, [i64::MIN]))
                .await
                .expect("joins")
                .expect("counted")[0]
        }
    };
    assert_eq!(counted(&h).await, Letters { all: 2, outstanding: 2 });
    let before = fates_of(&h).await;
    assert!(before.iter().all(|(_, _, f)| *f == Fate::Outstanding), "{before:?}");
    let one = before.iter().find(|(_, k, _)| k == "id-1").expect("id-1").0;
    let single = Filter { at: vec![one.pair()], ..Filter::default() };
    let plan = redrive(&h, RedriveOptions { filter: single, ..RedriveOptions::default() }).await;
    assert_eq!((plan.planned(), plan.done_before), (1, 0), "one letter's dry run counts it only");

    assert_eq!(redrive(&h, execute(Filter::default())).await.redriven, 2);
    // The stage runs on: id-1 may already be dead-lettered again (a new, outstanding letter).
    let now = counted(&h).await;
    assert_eq!(
        now.all - now.outstanding,
        2,
        "both redriven letters are outstanding no more: {now:?}"
    );
    assert!(now.all <= 3, "{now:?}");
    running.until(TIMEOUT, "id-1 dead-lettered again", letters(3)).await;
    let settled = running
        .run_until(TIMEOUT, "id-0 processed, id-1 dead-lettered again", || async {
            let now = fates_of(&h).await;
            now.iter().any(|(_, k, f)| k == "id-0" && matches!(f, Fate::Processed { .. }))
        })
        .await;
    settled.expect("run");
    let after = fates_of(&h).await;
    let of = |k: &str| after.iter().filter(|(_, key, _)| key == k).collect::<Vec<_>>();
    let (id0, id1) = (of("id-0"), of("id-1"));
    let [(_, _, processed)] = id0.as_slice() else { panic!("one letter of id-0: {after:?}") };
    assert!(
        matches!(processed, Fate::Processed { topic, .. } if *topic == h.input()),
        "{processed:?}"
    );
    let [(first, _, again), (second, _, newest)] = id1.as_slice() else {
        panic!("two letters of id-1: {after:?}")
    };
    assert_eq!(*again, Fate::DeadLetteredAgain { again: *second }, "{first} → {second}");
    assert_eq!(*newest, Fate::Outstanding);
    assert_eq!(counted(&h).await, Letters { all: 3, outstanding: 1 });
    let single = Filter { at: vec![one.pair()], ..Filter::default() };
    let plan = redrive(&h, RedriveOptions { filter: single, ..RedriveOptions::default() }).await;
    assert_eq!((plan.planned(), plan.done_before), (0, 1), "not the whole topic's finished count");
}
