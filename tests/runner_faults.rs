//! Regression tests for the runner's failure paths: forged retry headers on a rung, a panicking
//! stage (and the attempts before it), an output the broker refuses, an unencodable output on a
//! redacting stage, retry or redrive headers leaking into outputs, and a broker refusing the
//! completed-offset map in commits. Each one wedged a partition, panicked, lost history, leaked,
//! or lost commits before its fix.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value;
use common::read::committed_with_metadata;
use common::{each_record, field, raw_headers, Harness, OneStage, Script, TestStage};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::util::Timeout;
use sluice::stage::StageError;
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(30);

const METADATA_TOO_LARGE: RDKafkaRespErr =
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE;

fn ids(list: &[&str]) -> std::collections::HashSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// The dead letters on the harness's dead-letter topic: key → (error message, original value).
async fn dead_letters(h: &Harness) -> HashMap<String, (String, Option<Vec<u8>>)> {
    h.read_all(&h.dlq())
        .await
        .into_iter()
        .map(|(_, _, key, value)| {
            let v = value.expect("dead letters decode");
            let original = match field(&v, "original_value") {
                Value::Bytes(b) => Some(b.clone()),
                _ => None,
            };
            (key.unwrap_or_default(), (text(field(&v, "error_message")), original))
        })
        .collect()
}

/// Retry headers on a rung that sluice cannot have written are dead-lettered (class DECODE,
/// the bytes intact) and the rung keeps moving; headers with keys that are not UTF-8 do not
/// panic. (On the input, retry headers are ignored: see `tests/runner_hostile.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_retry_headers_on_a_rung_are_dead_lettered_and_the_rung_keeps_moving() {
    let topology = OneStage::new(1, "{ max_in_flight: 4, per_partition: 4 }")
        .retry("{ attempts: 1, ladder: [50ms] }")
        .yaml();
    let h = Harness::start(&topology).await;
    let codec = h.codec().await;
    let producer = h.producer();
    let input = h.input();
    let rung = h.topology.stages[0].retry.retry_topics()[0].0.clone();
    let from_input: [(&str, &str); 3] = [
        ("sluice-origin-topic", &input),
        ("sluice-origin-partition", "0"),
        ("sluice-origin-offset", "0"),
    ];
    let forged: [(&str, &[(&str, &str)]); 4] = [
        ("rung-overflow", &[("sluice-retry-rung", "18446744073709551615")]),
        (
            "due-forever",
            &[("sluice-retry-rung", "1"), ("sluice-retry-due-ms", "9223372036854775807")],
        ),
        (
            "attempts-overflow",
            &[("sluice-retry-rung", "1"), ("sluice-retry-attempts", "4294967295")],
        ),
        ("history-garbage", &[("sluice-retry-rung", "1"), ("sluice-retry-history", "[[1,")]),
    ];
    let mut sent = Vec::new();
    for (id, headers) in forged {
        let pairs = from_input.iter().chain(headers).fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header { key: k, value: Some(v.as_bytes()) })
        });
        sent.push((id.to_owned(), pairs));
    }
    let own = from_input.iter().chain(&[("sluice-retry-rung", "1")]).fold(
        common::raw_headers::headers_of(&[(b"k\xff\xfe".to_vec(), Some(b"v".to_vec()))]),
        |h, (k, v)| h.insert(Header { key: k, value: Some(v.as_bytes()) }),
    );
    sent.push(("odd-key".into(), own));
    let plain = from_input
        .iter()
        .chain(&[("sluice-retry-rung", "1")])
        .fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header { key: k, value: Some(v.as_bytes()) })
        });
    sent.push(("plain".into(), plain));
    for (id, headers) in sent {
        let bytes = h.encode(&codec, &rung, &common::document(&id, "t", "hello"));
        let record = FutureRecord::to(&rung).key(&id).payload(&bytes).headers(headers);
        producer.send(record, Timeout::After(Duration::from_secs(10))).await.expect("produce");
    }
    let run = h.start_stage(TestStage::new(Script::default())).await;
    run.run_until(WAIT, "every record finishes", || async {
        h.count(&h.output()).await + h.count(&h.dlq()).await == 6
    })
    .await
    .expect("runner ends cleanly");
    let letters = dead_letters(&h).await;
    for (id, headers) in forged {
        let (reason, original) = letters.get(id).unwrap_or_else(|| panic!("{id} dead-lettered"));
        assert!(reason.contains(headers.last().expect("a header").0), "{id}: {reason}");
        assert!(original.is_some(), "{id}: the original bytes travel along");
    }
    assert_eq!(letters.len(), 4);
    let out: std::collections::HashSet<String> = h.ids_on(&h.output()).await.into_keys().collect();
    assert_eq!(out, ids(&["odd-key", "plain"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_stage_dead_letters_the_record_and_frees_its_slot() {
    let h =
        Harness::start(&OneStage::new(1, "{ max_in_flight: 1, per_partition: 1 }").yaml()).await;
    h.produce_docs(0..5, None, |_| None).await;
    let script = Script { panic: ids(&["id-1"]), ..Script::default() };
    let run = h.start_stage(TestStage::new(script)).await;
    run.run_until(WAIT, "the partition moves past the panic", || async {
        h.committed(1) == vec![5]
    })
    .await
    .expect("runner ends cleanly");
    let letters = dead_letters(&h).await;
    assert!(letters["id-1"].0.contains("panicked: stage bug on id-1"), "{:?}", letters["id-1"]);
    assert_eq!(h.ids_on(&h.output()).await.len(), 4);
}

/// A panic after failed attempts: the dead letter keeps this visit's attempts (it used to start
/// from a fresh state and lose them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_after_failed_attempts_keeps_their_history() {
    let h =
        Harness::start(&OneStage::new(1, "{ max_in_flight: 1, per_partition: 1 }").yaml()).await;
    h.produce_docs(0..1, None, |_| None).await;
    let once = (1, StageError::retryable("503 from the model"));
    let script = Script {
        fail_first: HashMap::from([("id-0".into(), once)]),
        panic: ids(&["id-0"]),
        ..Script::default()
    };
    let run = h.start_stage(TestStage::new(script)).await;
    run.run_until(WAIT, "a dead letter", || async { h.count(&h.dlq()).await == 1 })
        .await
        .expect("runner ends cleanly");
    let letter = h.read_all(&h.dlq()).await.remove(0).3.expect("decodes");
    let Value::Array(attempts) = field(&letter, "attempts") else { panic!("attempts") };
    assert_eq!(attempts.len(), 1, "the failed first attempt: {attempts:?}");
    assert!(text(field(&attempts[0], "message")).contains("503 from the model"));
    assert!(text(field(&letter, "error_message")).contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_the_broker_refuses_dead_letters_the_input_with_its_own_bytes() {
    let topology = OneStage::new(1, "{ max_in_flight: 4, per_partition: 4 }")
        .producer("message.max.bytes: \"2000\"")
        .yaml();
    let h = Harness::start(&topology).await;
    h.produce_docs(0..4, None, |_| None).await;
    let inputs: HashMap<Vec<u8>, Vec<u8>> = each_record(&h.topology.kafka, &h.input(), |m| {
        use rdkafka::message::Message;
        (m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec())
    })
    .await
    .into_iter()
    .collect();
    let script = Script { huge: HashMap::from([("id-2".into(), 10_000)]), ..Script::default() };
    let run = h.start_stage(TestStage::new(script)).await;
    run.run_until(WAIT, "the refused output does not wedge the partition", || async {
        h.committed(1) == vec![4]
    })
    .await
    .expect("runner ends cleanly");
    let letters = dead_letters(&h).await;
    let (reason, original) = &letters["id-2"];
    assert!(reason.contains("refused by the broker"), "{reason}");
    let input = inputs[b"id-2".as_slice()].as_slice();
    assert_eq!(original.as_deref(), Some(input), "the input's bytes, not the output");
    assert_eq!(h.ids_on(&h.output()).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacting_stage_with_an_unencodable_output_dead_letters_no_pii() {
    let topology = OneStage::new(1, "{ max_in_flight: 4, per_partition: 4 }")
        .retry("{ attempts: 1 }\n    redact_input: true")
        .yaml();
    let h = Harness::start(&topology).await;
    let codec = h.codec().await;
    let bytes =
        h.encode(&codec, &h.input(), &common::document("pii", "t", "write to alice@example.com"));
    h.send_raw(&h.producer(), &h.input(), Some(b"pii"), &bytes, None).await;
    let script = Script { unclassified: ids(&["pii"]), ..Script::default() };
    let run = h.start_stage(TestStage::new(script)).await;
    run.run_until(WAIT, "a dead letter", || async { h.count(&h.dlq()).await == 1 })
        .await
        .expect("runner ends cleanly");
    let letters = dead_letters(&h).await;
    let (reason, original) = &letters["pii"];
    assert!(reason.contains("does not fit the schema"), "{reason}");
    let original = original.as_ref().expect("a redacted re-encoding");
    let decoded = codec.decode_any(Some(original)).await.expect("decodes").1;
    let content = text(field(&decoded, "content"));
    assert!(!content.contains("alice@example.com"), "PII reached the dead letter: {content}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_carry_the_records_headers_but_not_its_retry_state() {
    let topology = OneStage::new(1, "{ max_in_flight: 4, per_partition: 4 }")
        .retry("{ attempts: 1, ladder: [50ms] }")
        .yaml();
    let h = Harness::start(&topology).await;
    h.produce_docs(0..1, None, |_| None).await;
    // A redriven record: its redrive count is the loop guard of this stage's dead letters, not
    // of the next stage's (whose letters would start at redrive 1).
    let codec = h.codec().await;
    let bytes = h.encode(&codec, &h.input(), &common::document("id-1", "t", "redriven"));
    let redriven =
        OwnedHeaders::new().insert(Header { key: "sluice-redrive-count", value: Some("2") });
    let input = h.input();
    let record = FutureRecord::to(&input).key("id-1").payload(&bytes).headers(redriven);
    h.producer().send(record, Timeout::After(Duration::from_secs(10))).await.expect("produce");
    let once = (1, StageError::retryable("503"));
    let script = Script { fail_first: HashMap::from([("id-0".into(), once)]), ..Script::default() };
    let run = h.start_stage(TestStage::new(script)).await;
    run.run_until(WAIT, "both outputs", || async { h.count(&h.output()).await == 2 })
        .await
        .expect("runner ends cleanly");
    let headers = raw_headers(&h, &h.output()).await;
    assert_eq!(headers.len(), 2);
    for h in headers {
        let leaked: Vec<&String> = h.keys().filter(|k| k.starts_with("sluice-")).collect();
        assert!(leaked.is_empty(), "retry or redrive state leaked into an output: {leaked:?}");
    }
}

/// The completed-offset map: the first owner finishes 1..8 but not 0 (held), and stops at once;
/// its commit is position 0 with 1..8 in the metadata, so the next owner processes only 0.
/// With the map off, the next owner processes all eight again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_skips_what_the_previous_one_finished_out_of_order() {
    for map in [true, false] {
        let concurrency =
            format!("{{ max_in_flight: 8, per_partition: 8, commit_completed: {map} }}");
        let h = Harness::start(&OneStage::new(1, &concurrency).yaml()).await;
        h.produce_docs(0..8, None, |_| None).await;
        let held = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let script = Script { gate: HashMap::from([("id-0".into(), held)]), ..Script::default() };
        let first = h.start_stage(TestStage::new(script)).await;
        first.until(WAIT, "seven outputs", || async { h.count(&h.output()).await == 7 }).await;
        // No drain: id-0 is abandoned, the stored position stays at 0.
        first.shutdown.stop();
        first.finished().await.expect("runner ends cleanly");
        assert_eq!(h.committed(1), vec![0]);

        let next = TestStage::new(Script::default());
        let run = h.start_stage(next.clone()).await;
        run.run_until(WAIT, "every record done", || async { h.committed(1) == vec![8] })
            .await
            .expect("runner ends cleanly");
        let again = next.call_count();
        if map {
            assert_eq!(again, 1, "only the record that was in flight is processed again");
            assert_eq!(next.calls_for("id-0"), 1);
        } else {
            assert_eq!(again, 8, "without the map every record is processed again");
        }
    }
}

/// Brokers whose `offset.metadata.max.bytes` is below the completed-offset map refuse the commit
/// (`OFFSET_METADATA_TOO_LARGE`). The mock cannot refuse by size, so the refusal is injected into
/// the one commit that carries a map: the background commit after id-0 finishes and the position
/// moves to 2 with 3..7 done beyond it (id-2 is held). The runner then stores and commits its
/// positions without maps, and keeps committing to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_completed_offset_map_is_dropped_and_commits_go_on_without_it() {
    let h =
        Harness::start(&OneStage::new(1, "{ max_in_flight: 8, per_partition: 8 }").yaml()).await;
    h.produce_docs(0..8, None, |_| None).await;
    let gates = [("id-0", Arc::new(Semaphore::new(0))), ("id-2", Arc::new(Semaphore::new(0)))];
    let gate = gates.iter().map(|(id, g)| (id.to_string(), g.clone())).collect();
    let run = h.start_stage(TestStage::new(Script { gate, ..Script::default() })).await;
    run.until(WAIT, "six outputs", || async { h.count(&h.output()).await == 6 }).await;
    assert_eq!(committed_with_metadata(&h, 1), vec![None], "no position moved: nothing stored");

    h.cluster().request_errors(RDKafkaApiKey::OffsetCommit, &[METADATA_TOO_LARGE]);
    gates[0].1.add_permits(1);
    run.until(WAIT, "position 2 committed", || async { h.committed(1) == vec![2] }).await;
    assert_eq!(
        committed_with_metadata(&h, 1),
        vec![Some((2, String::new()))],
        "the position without the refused map (3..7 done beyond it)"
    );
    gates[1].1.add_permits(1);
    run.run_until(WAIT, "committed to the end", || async { h.committed(1) == vec![8] })
        .await
        .expect("runner ends cleanly");
    assert_eq!(h.ids_on(&h.output()).await.len(), 8);
}

/// The same refusal on the shutdown's handover commit, which carries the map of what finished
/// beyond the held id-0: that commit is made again without the map, rather than failing (and
/// the next owner then processes everything again, the cost of having no map).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_whose_map_is_refused_commits_the_position_without_it() {
    let topology =
        OneStage::new(1, "{ max_in_flight: 8, per_partition: 8 }").shutdown_grace("100ms").yaml();
    let h = Harness::start(&topology).await;
    h.produce_docs(0..8, None, |_| None).await;
    let held = Arc::new(Semaphore::new(0));
    let script = Script { gate: HashMap::from([("id-0".into(), held)]), ..Script::default() };
    let first = h.start_stage(TestStage::new(script)).await;
    first.until(WAIT, "seven outputs", || async { h.count(&h.output()).await == 7 }).await;
    assert_eq!(committed_with_metadata(&h, 1), vec![None], "no position moved: nothing stored");

    h.cluster().request_errors(RDKafkaApiKey::OffsetCommit, &[METADATA_TOO_LARGE]);
    first.shutdown.stop(); // no drain: id-0 stays unfinished, the handover carries 1..7
    first.finished().await.expect("runner ends cleanly");
    assert_eq!(
        committed_with_metadata(&h, 1),
        vec![Some((0, String::new()))],
        "the handover committed the position without the refused map"
    );

    let next = TestStage::new(Script::default());
    let run = h.start_stage(next.clone()).await;
    run.run_until(WAIT, "committed to the end", || async { h.committed(1) == vec![8] })
        .await
        .expect("runner ends cleanly");
    assert_eq!(next.call_count(), 8, "without the map every record is processed again");
}
