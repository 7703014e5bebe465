//! Issue 18, items 1, 3 and 4, on the embedded broker: redrive republishes only where the failing
//! stage alone reads (never where a forged letter points), and `sluice dlq discard` keeps the
//! redrive position moving past letters left in place.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::read::raw_records;
use common::{document, Harness, OneStage, Script, StopOnDrop, TestStage};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use sluice::avro::{DeadLetter, DeadLetterClass};
use sluice::ops::{self, DlqError, Filter, RedriveOptions, REDRIVE_COUNT};
use sluice::retry::state::{ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC, RUNG};
use sluice::shutdown::Shutdown;
use sluice::stage::StageError;

const WINDOW: &str = "{ max_in_flight: 8, per_partition: 8 }";
const TIMEOUT: Duration = Duration::from_secs(30);

fn execute(filter: Filter) -> RedriveOptions {
    RedriveOptions { filter, execute: true, ..RedriveOptions::default() }
}

fn class(c: DeadLetterClass) -> Filter {
    Filter { error_class: Some(c), ..Filter::default() }
}

/// A `DECODE` letter of stage `work` written by hand, claiming to come from `topic`.
fn letter(h: &Harness, id: &str, topic: &str, value: Vec<u8>) -> DeadLetter {
    let base = common::letters::letter(h, id, Some(value));
    DeadLetter { original_topic: topic.into(), error_class: DeadLetterClass::Decode, ..base }
}

/// The issue's scenario: undecodable records on the input carrying `sluice-retry-rung: 0` and an
/// origin pointing at another topic are dead-lettered at their own coordinates (issue 17), and
/// hand-forged letters pointing at the outputs, metering and review-claims topics, or at a
/// partition the input lacks, are refused and reported: nothing is written anywhere but the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_writes_nowhere_a_forged_letter_points() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    let (input, output, metering) = (h.input(), h.output(), h.topology.metering_topic.clone());
    let producer = h.producer();
    for i in 0..3 {
        let key = format!("bad-{i}");
        let headers = OwnedHeaders::new()
            .insert(Header { key: RUNG, value: Some("0") })
            .insert(Header { key: ORIGIN_TOPIC, value: Some(output.as_str()) })
            .insert(Header { key: ORIGIN_PARTITION, value: Some("0") })
            .insert(Header { key: ORIGIN_OFFSET, value: Some("0") });
        let record = FutureRecord::to(&input).key(&key).payload("not avro").headers(headers);
        producer.send(record, Timeout::After(TIMEOUT)).await.expect("produce");
    }
    let bad: Vec<String> = (0..3).map(|i| format!("bad-{i}")).collect();
    h.run_to_end(Script::default(), &bad, TIMEOUT).await;
    let found = ops::inspect(&h.topology, "work", &Filter::default(), 3).await.expect("inspect");
    assert_eq!(found.selected, 3);
    for s in &found.samples {
        assert_eq!(s.original_topic, input, "the forged origin header was not honoured");
    }

    let claims = format!("{}.needs-human.claims", h.topology.pipeline);
    let mut forged: Vec<DeadLetter> = [&output, &metering, &claims]
        .iter()
        .enumerate()
        .map(|(i, t)| letter(&h, &format!("forged-{i}"), t, b"forged".to_vec()))
        .collect();
    forged.push(DeadLetter { original_partition: 7, ..letter(&h, "far", &input, b"x".to_vec()) });
    common::letters::write_letters(&h, &forged).await;

    let report = ops::redrive(&h.topology, "work", &execute(Filter::default()), |_| {})
        .await
        .expect("redrive");
    assert_eq!(report.stopped, None);
    assert_eq!(report.republish_to.as_deref(), Some(input.as_str()), "no ladder, no other reader");
    assert_eq!(report.redriven, 3, "the three real letters go back to the input");
    let refused: Vec<(Option<&str>, &str)> =
        report.unredrivable.iter().map(|s| (s.key.as_deref(), s.reason.as_str())).collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    for (topic, (key, reason)) in [&output, &metering, &claims].iter().zip(&refused) {
        assert!(key.is_some_and(|k| k.starts_with("forged")), "{key:?}");
        assert!(reason.contains(topic.as_str()) && reason.contains("not the stage's input"));
    }
    assert!(refused[3].1.contains("partition 7 does not exist"), "{}", refused[3].1);
    assert_eq!(h.count(&output).await, 0, "nothing on the outputs topic");
    assert_eq!(h.count(&metering).await, 0, "nothing on the metering topic");
    assert_eq!(h.count(&input).await, 6, "the three undecodable records, once more each");

    let again = ops::redrive(&h.topology, "work", &execute(Filter::default()), |_| {})
        .await
        .expect("redrive");
    assert_eq!((again.redriven, again.unredrivable.len(), again.done_before), (0, 0, 7));
}

/// Two stages on one input; `work` has a retry ladder and `other` none.
fn shared_input(ladder: bool) -> String {
    let p = common::unique("t");
    let retry = if ladder { ", ladder: [1m]" } else { "" };
    format!(
        r#"
pipeline: {p}
kafka:
  partitions: 1
  consumer:
    auto.commit.interval.ms: "200"
  producer:
    linger.ms: "1"
providers:
  sim: {{ kind: simulated, latency: 1ms }}
inputs:
  {p}.docs: {{ partitions: 1 }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [a] }}
    retry: {{ attempts: 1, initial_backoff: 10ms, max_backoff: 50ms{retry} }}
  other:
    kind: classify
    input: {p}.docs
    output: {p}.other
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [a] }}
"#
    )
}

/// Runs `stage` as the topology's stage number `index` until the returned guard is dropped.
async fn run_stage(h: &Harness, index: usize, stage: TestStage) -> StopOnDrop {
    let codec = Arc::new(h.codec().await);
    let (spec, topology) = (h.topology.stages[index].clone(), h.topology.clone());
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(10_000));
        sluice::runner::run(stage, &spec, &topology, codec, permits, s).await
    });
    StopOnDrop(shutdown)
}

/// Stage `work`'s letters go to its first retry rung, due now: `work` processes them again,
/// `other` (which reads the same input) sees nothing, and nothing is added to the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_into_a_shared_input_reaches_only_the_failing_stage() {
    let h = Harness::start(&shared_input(true)).await;
    h.produce_docs(0..3, Some(0), |_| None).await;
    let fail_first =
        HashMap::from([("id-0".to_owned(), (1, StageError::permanent("provider outage")))]);
    let work = TestStage::new(Script { fail_first, ..Script::default() });
    let other = TestStage::new(Script::default());
    let _work = run_stage(&h, 0, work.clone()).await;
    let _other = run_stage(&h, 1, other.clone()).await;
    let other_out = h.topology.stages[1].output.clone();
    let settled = common::wait_until(TIMEOUT, || async {
        h.count(&h.dlq()).await == 1 && h.count(&other_out).await == 3
    })
    .await;
    assert!(settled, "work dead-lettered id-0 and other processed all three");

    let report = ops::redrive(&h.topology, "work", &execute(Filter::default()), |_| {})
        .await
        .expect("redrive");
    let rung = h.topology.stages[0].retry.retry_topics()[0].0.clone();
    assert_eq!((report.redriven, report.republish_to.as_deref()), (1, Some(rung.as_str())));
    let reprocessed =
        common::wait_until(TIMEOUT, || async { h.ids_on(&h.output()).await.contains_key("id-0") })
            .await;
    assert!(reprocessed, "work processed the redriven record from its rung");
    let on_rung = raw_records(&h, &rung).await;
    assert_eq!(on_rung.len(), 1);
    assert!(on_rung[0].2.contains(&(RUNG.to_owned(), "1".to_owned())), "{:?}", on_rung[0].2);
    assert!(on_rung[0].2.contains(&(REDRIVE_COUNT.to_owned(), "1".to_owned())));
    assert_eq!(h.count(&h.input()).await, 3, "nothing was added to the shared input");
    assert_eq!((work.calls_for("id-0"), other.calls_for("id-0")), (2, 1));
    assert_eq!(h.count(&other_out).await, 3, "other saw nothing again");
    assert_eq!(h.count(&h.dlq()).await, 1, "it did not fail again");
}

/// Without a ladder, a shared input is refused with what to change; discard still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_input_without_a_ladder_is_refused_with_an_explanation() {
    let h = Harness::start(&shared_input(false)).await;
    let input = h.input();
    let doc = h.encode(&h.codec().await, &input, &document("id-0", "t", "text"));
    common::letters::write_letters(&h, &[letter(&h, "id-0", &input, doc)]).await;
    let error = ops::redrive(&h.topology, "work", &execute(Filter::default()), |_| {})
        .await
        .expect_err("refused");
    assert!(matches!(&error, DlqError::Refused(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains("other") && text.contains("retry.ladder"), "{text}");
    assert_eq!(h.count(&input).await, 0);
    let discarded = ops::discard(&h.topology, "work", &execute(Filter::default()), |_| {})
        .await
        .expect("discard");
    assert_eq!(discarded.discarded, 1);
}

/// More letters left in place between redriven ones than the commit metadata holds stop a run
/// for good, and every run re-reads from the oldest letter; discarding them (after a dry run that
/// changes nothing) moves the position, and the next run finishes and reads nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarding_letters_left_in_place_keeps_the_position_moving() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    let (input, dlq) = (h.input(), h.dlq());
    let doc = h.encode(&h.codec().await, &input, &document("d", "t", "text"));
    let letters: Vec<DeadLetter> = (0..2000)
        .map(|i| DeadLetter {
            error_class: [DeadLetterClass::Permanent, DeadLetterClass::Decode][i % 2],
            ..letter(&h, &format!("id-{i}"), &input, doc.clone())
        })
        .collect();
    common::letters::write_letters(&h, &letters).await;
    let group = ops::redrive_group(&h.topology.stages[0]);
    let position = || common::committed(h.stack.kafka.bootstrap_servers(), &group, &dlq, 1);
    let decode = || execute(class(DeadLetterClass::Decode));
    let run = |opts: RedriveOptions| {
        let h = &h;
        async move { ops::redrive(&h.topology, "work", &opts, |_| {}).await.expect("redrive") }
    };

    let first = run(decode()).await;
    assert!(first.stopped.as_deref().is_some_and(|s| s.contains("sluice dlq discard")));
    assert!(first.redriven > 0 && first.redriven < 1000);
    assert_eq!(position(), [0], "the oldest letter, left in place, holds the position");

    let permanent = class(DeadLetterClass::Permanent);
    let dry = RedriveOptions { filter: permanent.clone(), ..RedriveOptions::default() };
    let plan = ops::discard(&h.topology, "work", &dry, |_| {}).await.expect("dry run");
    assert_eq!((plan.executed, plan.discarded, plan.remaining), (false, 0, 1000));
    assert_eq!(position(), [0], "a dry run commits nothing");

    let discarded =
        ops::discard(&h.topology, "work", &execute(permanent), |_| {}).await.expect("discard");
    assert_eq!((discarded.stopped, discarded.discarded), (None, 1000));
    assert!(position()[0] > 1000, "the position moved past the discarded letters");

    let rest = run(decode()).await;
    assert_eq!(rest.stopped, None);
    assert_eq!(first.redriven + rest.redriven, 1000);
    assert_eq!(position(), [2000], "every letter finished: the position is at the end");
    assert_eq!(h.count(&input).await, 1000, "each DECODE letter republished exactly once");

    let read = std::sync::atomic::AtomicU64::new(0);
    let last = ops::redrive(&h.topology, "work", &decode(), |p| {
        read.store(p.read, std::sync::atomic::Ordering::Relaxed)
    })
    .await
    .expect("redrive");
    assert_eq!((last.done_before, last.redriven), (2000, 0));
    assert_eq!(read.into_inner(), 0, "the next run reads nothing again");
}

/// Review #2: a batch is settled once it is old even while the walk only reads letters it passes
/// over (the transaction is not left open across them), and a run given `--at` positions stops
/// reading once it passed them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_batch_is_settled_while_passing_over_and_at_stops_early() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    let input = h.input();
    let doc = h.encode(&h.codec().await, &input, &document("d", "t", "text"));
    let letters: Vec<DeadLetter> =
        (0..40).map(|i| letter(&h, &format!("id-{i}"), &input, doc.clone())).collect();
    common::letters::write_letters(&h, &letters).await;
    let age = Duration::from_millis(200);
    let opts = RedriveOptions {
        filter: Filter { at: vec![(0, 0), (0, 3)], ..Filter::default() },
        batch_age: age,
        ..execute(Filter::default())
    };
    let seen = std::sync::Mutex::new(Vec::new());
    let report = ops::discard(&h.topology, "work", &opts, |p| {
        if p.read == 1 {
            // The batch holding letter 0 grows older than its age before letter 1 is read.
            std::thread::sleep(age * 2);
        }
        seen.lock().unwrap().push((p.read, p.redriven));
    })
    .await
    .expect("discard");
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.get(1), Some(&(2, 1)), "letter 0 was committed on reading letter 1: {seen:?}");
    assert_eq!((report.discarded, report.passed_over), (2, 2), "{report:?}");
    assert_eq!(seen.last().map(|s| s.0), Some(4), "nothing read past the last --at position");
}

/// Review #5: what a report keeps from hostile letters is bounded — keys, topics and reasons are
/// cut, and only the first entries of a list are kept (with the count of all of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_keeps_a_bounded_amount_of_hostile_letters() {
    let h = Harness::start(&OneStage::new(1, WINDOW).yaml()).await;
    let input = h.input();
    let doc = h.encode(&h.codec().await, &input, &document("d", "t", "text"));
    let huge = |c: &str| c.repeat(2_000);
    let letters: Vec<DeadLetter> = (0..150)
        .map(|i| {
            let key = format!("{}{i}", huge("k"));
            let base = letter(&h, &key, &input, doc.clone());
            match i % 2 {
                0 => DeadLetter {
                    original_headers: vec![(REDRIVE_COUNT.into(), Some(huge("x").into_bytes()))],
                    ..base
                },
                _ => DeadLetter { original_topic: huge("t"), ..base },
            }
        })
        .collect();
    common::letters::write_letters(&h, &letters).await;
    let plan = ops::redrive(&h.topology, "work", &RedriveOptions::default(), |_| {})
        .await
        .expect("dry run");
    let kept = &plan.unredrivable;
    assert!(kept.len() <= 100, "{} entries kept", kept.len());
    let summary = (
        plan.unredrivable_count,
        plan.planned(),
        plan.done_before,
        plan.passed_over,
        &plan.stopped,
    );
    assert_eq!(
        (plan.unredrivable_count, plan.planned()),
        (150, 0),
        "every letter is counted: {summary:?}"
    );
    for s in kept {
        let chars = |t: &Option<String>| t.as_deref().map_or(0, |t| t.chars().count());
        assert!(chars(&s.key) <= 201 && chars(&s.original_topic) <= 201, "{s:?}");
        assert!(s.reason.chars().count() <= 301, "{}", s.reason.len());
    }
}
