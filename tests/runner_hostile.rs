//! The runner under input a producer of its topics can send: each test here failed on the code
//! before its fix (docs/RELIABILITY.md lists them). An oversized undecodable record, forged retry
//! headers on the input and on a retry rung, long waits at the head of a rung, readable text in a
//! redacting stage's dead letters, billed calls of a record that does not finish, and an output
//! the broker refuses beside one it took.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use common::read::raw_records;
use common::{each_record, field, Harness, OneStage, Script, TestStage};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use sluice::call::now_ms;
use sluice::retry::Origin;
use sluice::retry::RetryState;
use sluice::stage::StageError;

const WAIT: Duration = Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

/// Sends `value` to `topic` partition 0 under `key` and `headers`.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
    headers: &[(String, Option<Vec<u8>>)],
) {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: v.as_deref() }));
    let record = FutureRecord::to(topic).key(key).payload(value).partition(0).headers(headers);
    producer.send(record, Timeout::After(Duration::from_secs(30))).await.expect("produce");
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// The dead letters on the harness's dead-letter topic by key, with their headers.
async fn letters(h: &Harness) -> HashMap<String, (Value, HashMap<String, String>)> {
    let codec = h.codec().await;
    let mut out = HashMap::new();
    for (key, payload, headers) in raw_records(h, &h.dlq()).await {
        let value = codec.decode_any(payload.as_deref()).await.expect("a dead letter").1;
        out.insert(key.unwrap_or_default(), (value, headers.into_iter().collect()));
    }
    out
}

/// What the tests on a laddered stage write with: the codec, a producer, the input and rung 1.
struct Laddered {
    codec: sluice::avro::Codec,
    producer: FutureProducer,
    input: String,
    rung: String,
}

impl Laddered {
    async fn of(h: &Harness) -> Self {
        let rung = h.topology.stages[0].retry.retry_topics()[0].0.clone();
        Self { codec: h.codec().await, producer: h.producer(), input: h.input(), rung }
    }
}

/// The headers sluice writes on rung 1 for a record that came from `input`, due at `due_ms`.
fn rung_headers(input: &str, offset: i64, due_ms: i64) -> Vec<(String, Option<Vec<u8>>)> {
    let origin = Origin { topic: input.into(), partition: 0, offset, timestamp_ms: Some(now_ms()) };
    RetryState::fresh(origin).headers_at(&[], 1, due_ms, now_ms())
}

/// Item 1: the dead letter of a 1.5 MB undecodable record is larger than the producer's default
/// `message.max.bytes`. It used to stop the stage (and, never committed, stop it again after
/// every restart); now it goes out slim — no value, the reason in `sluice-original-omitted` — and
/// the partition moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_undecodable_record_is_dead_lettered_without_its_bytes() {
    let h =
        Harness::start(&OneStage::new(1, "{ max_in_flight: 4, per_partition: 4 }").yaml()).await;
    let big = common::hostile::bulk_producer(&h);
    let junk: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8 | 1).collect();
    send(&big, &h.input(), "huge", &junk, &[]).await;
    h.produce_docs(0..3, Some(0), |_| None).await;
    let run = h.start_stage(TestStage::new(Script::default())).await;
    run.run_until(WAIT, "every record passed", || async { h.committed(1) == vec![4] })
        .await
        .expect("the stage does not stop");
    let letters = letters(&h).await;
    let (letter, headers) = &letters["huge"];
    assert_eq!(field(letter, "original_value"), &Value::Null, "the bytes are left out");
    let omitted = &headers[sluice::runner::ORIGINAL_OMITTED];
    assert!(omitted.contains("value (1500000 bytes)"), "{omitted}");
    assert!(omitted.to_lowercase().contains("too large"), "the broker's reason: {omitted}");
    assert_eq!(field(letter, "original_offset"), &Value::Long(0), "where the bytes still are");
    assert_eq!(h.ids_on(&h.output()).await.len(), 3);
}

/// Item 2: on the input, retry headers are anyone's: a document claiming rung 0, due in 30 days
/// and an origin in another topic is processed now, as itself. On a rung, the headers are
/// checked against what sluice writes there: an origin other than the stage's input is a forgery,
/// dead-lettered at the record's own coordinates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_headers_are_ignored_on_the_input_and_checked_on_a_rung() {
    let topology = OneStage::new(1, "{ max_in_flight: 4, per_partition: 4 }")
        .retry("{ attempts: 1, ladder: [50ms] }")
        .yaml();
    let h = Harness::start(&topology).await;
    let Laddered { codec, producer, input, rung } = Laddered::of(&h).await;
    let far = (now_ms() + 30 * DAY_MS).to_string();
    let bytes = |s: &str| Some(s.as_bytes().to_vec());
    let forged = [
        ("sluice-retry-rung".to_owned(), bytes("0")),
        ("sluice-retry-due-ms".to_owned(), bytes(&far)),
        ("sluice-origin-topic".to_owned(), bytes("support.answers")),
        ("sluice-origin-partition".to_owned(), bytes("0")),
        ("sluice-origin-offset".to_owned(), bytes("7")),
    ];
    for id in ["parked-1", "parked-2", "parked-3"] {
        let bytes = h.encode(&codec, &input, &common::document(id, "t", "hello"));
        send(&producer, &input, id, &bytes, &forged).await;
    }
    let on_rung = |id: &str, origin: &str| {
        let mut headers = rung_headers(&input, 0, now_ms());
        for (k, v) in headers.iter_mut() {
            if k == "sluice-origin-topic" {
                *v = bytes(origin);
            }
        }
        (h.encode(&codec, &rung, &common::document(id, "t", "hello")), headers)
    };
    let (bytes, headers) = on_rung("from-input", &input);
    send(&producer, &rung, "from-input", &bytes, &headers).await;
    let (bytes, headers) = on_rung("from-elsewhere", "support.answers");
    send(&producer, &rung, "from-elsewhere", &bytes, &headers).await;

    let run = h.start_stage(TestStage::new(Script::default())).await;
    run.run_until(WAIT, "all five finished", || async {
        h.count(&h.output()).await + h.count(&h.dlq()).await == 5
    })
    .await
    .expect("runner ends cleanly");
    let out: std::collections::BTreeSet<String> = h.ids_on(&h.output()).await.into_keys().collect();
    assert_eq!(out, ["from-input", "parked-1", "parked-2", "parked-3"].map(String::from).into());
    assert_eq!(h.committed(1), vec![3], "nothing parked on the input");
    let letters = letters(&h).await;
    let (letter, _) = &letters["from-elsewhere"];
    assert_eq!(field(letter, "error_class"), &Value::Enum(0, "DECODE".into()));
    assert!(text(field(letter, "error_message")).contains("sluice-origin-topic"));
    assert_eq!(text(field(letter, "original_topic")), rung, "its own coordinates, not the claim");
}

/// Item 3: long waits at the head of a rung (Retry-After values differ per record) used to fill
/// the window — `per_partition + buffer` of them stopped the rung. Now they take no room, the
/// records behind them run, and once a window's worth behind them has finished the parked ones
/// move to the end of the rung so its committed offset passes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_waits_at_the_head_of_a_rung_neither_stop_it_nor_hold_its_commit() {
    let topology =
        OneStage::new(1, "{ max_in_flight: 4, per_partition: 2, buffer_per_partition: 2 }")
            .retry("{ attempts: 1, ladder: [50ms] }")
            .yaml();
    let h = Harness::start(&topology).await;
    let Laddered { codec, producer, input, rung } = Laddered::of(&h).await;
    for i in 0..20 {
        let id = format!("r-{i}");
        let due = if i < 8 { now_ms() + DAY_MS } else { now_ms() };
        let bytes = h.encode(&codec, &rung, &common::document(&id, "t", "hello"));
        send(&producer, &rung, &id, &bytes, &rung_headers(&input, i, due)).await;
    }
    let group = h.group();
    let bootstrap = h.stack.kafka.bootstrap_servers().to_owned();
    let rung_committed = || common::committed(&bootstrap, &group, &rung, 1)[0];
    let run = h.start_stage(TestStage::new(Script::default())).await;
    run.run_until(WAIT, "the rung's commit passes the long waits", || async {
        h.count(&h.output()).await == 12 && rung_committed() == 20
    })
    .await
    .expect("runner ends cleanly");
    assert_eq!(h.count(&rung).await, 28, "the eight long waits, moved once to the end");
    assert_eq!(h.count(&h.dlq()).await, 0);
}

/// Item 4: a redacting stage lets no readable text out through its dead letters — neither a
/// document under untrusted retry headers (it decodes: its redacted re-encoding goes) nor a
/// value that decodes as Avro but is not a document (nothing goes: it stays where it was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacting_stage_dead_letters_no_readable_text() {
    let topology = OneStage::new(1, "{ max_in_flight: 4, per_partition: 4 }")
        .retry("{ attempts: 1, ladder: [50ms] }\n    redact_input: true")
        .yaml();
    let h = Harness::start(&topology).await;
    let Laddered { codec, producer, input, rung } = Laddered::of(&h).await;
    let pii = common::document("forged", "t", "mail alice@example.com");
    let mut headers = rung_headers(&input, 0, now_ms());
    headers.push(("sluice-retry-history".into(), Some(b"[[1,".to_vec())));
    send(&producer, &rung, "forged", &h.encode(&codec, &rung, &pii), &headers).await;
    let mut event = common::stage::billed("work", "alice@example.com", 1, 1);
    event.tenant = "alice@example.com".into();
    let metering = h.topology.metering_topic.clone();
    let not_a_document =
        codec.encode(&metering, &event.to_value().expect("value")).expect("encodes");
    send(&producer, &input, "not-a-document", &not_a_document, &[]).await;

    let run = h.start_stage(TestStage::new(Script::default())).await;
    run.run_until(WAIT, "two dead letters", || async { h.count(&h.dlq()).await == 2 })
        .await
        .expect("runner ends cleanly");
    let letters = letters(&h).await;
    let (forged, _) = &letters["forged"];
    assert!(text(field(forged, "error_message")).contains("retry headers cannot be trusted"));
    let Value::Bytes(redacted) = field(forged, "original_value") else {
        panic!("a redacted re-encoding")
    };
    let content =
        text(field(&codec.decode_any(Some(redacted)).await.expect("decodes").1, "content"));
    assert!(!content.contains("alice@example.com"), "PII reached the dead letter: {content}");
    let (other, _) = &letters["not-a-document"];
    assert_eq!(field(other, "original_value"), &Value::Null, "decoded text is withheld");
    assert!(!format!("{other:?}").contains("alice@example.com"));
}

/// Item 5: a record whose attempt made a billed call and then waited out a long backoff when the
/// worker stopped used to lose the call's cost event with it (the record is redone, and billed
/// again, elsewhere). Every billed call is metered, whatever happens to the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billed_calls_of_a_record_that_does_not_finish_are_metered() {
    let topology = OneStage::new(1, "{ max_in_flight: 4, per_partition: 4 }")
        .retry("{ attempts: 5, initial_backoff: 60s, max_backoff: 60s }")
        .shutdown_grace("200ms")
        .yaml();
    let h = Harness::start(&topology).await;
    h.produce_docs(0..1, Some(0), |_| None).await;
    let fail = HashMap::from([("id-0".to_owned(), StageError::retryable("503"))]);
    let stage = TestStage::new(Script { fail, bill: true, ..Script::default() });
    let run = h.start_stage(stage.clone()).await;
    run.until(WAIT, "the first call", || async { stage.call_count() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.stop().await.expect("runner ends cleanly");
    assert_eq!(h.committed(1), vec![0], "the record did not finish");
    let metered: Vec<String> = each_record(&h.topology.kafka, &h.topology.metering_topic, |m| {
        String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned()
    })
    .await;
    assert_eq!(metered, ["id-0/1"], "the billed call is metered");
}

/// Items 10 and 11: one of a record's two outputs is refused. The input is dead-lettered, and
/// the letter says which output was delivered (the record now sits there too); the letter is
/// counted in `sluice_dead_letters_total` like every other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_output_beside_a_delivered_one_is_named_and_counted() {
    let topology = OneStage::new(1, "{ max_in_flight: 4, per_partition: 4 }")
        .producer("message.max.bytes: \"4000\"")
        .yaml();
    let h = Harness::start(&topology).await;
    h.produce_docs(0..2, Some(0), |_| None).await;
    let counted = || {
        sluice::telemetry::render()
            .lines()
            .find_map(|l| {
                l.strip_prefix("sluice_dead_letters_total{class=\"PERMANENT\",stage=\"work\"} ")
            })
            .map_or(0, |v| v.parse::<u64>().expect("count"))
    };
    let before = counted();
    let extra = HashMap::from([("id-1".to_owned(), 20_000)]);
    let run =
        h.start_stage(TestStage::new(Script { extra_huge: extra, ..Script::default() })).await;
    run.run_until(WAIT, "both records passed", || async { h.committed(1) == vec![2] })
        .await
        .expect("runner ends cleanly");
    let letters = letters(&h).await;
    let (letter, _) = &letters["id-1"];
    assert!(text(field(letter, "error_message")).contains("refused by the broker"));
    assert_eq!(field(letter, "delivered_outputs"), &Value::Array(vec![Value::String(h.output())]));
    assert_eq!(h.ids_on(&h.output()).await.get("id-1"), Some(&1), "the output it took stays");
    assert_eq!(counted() - before, 1, "the letter is counted");
}
