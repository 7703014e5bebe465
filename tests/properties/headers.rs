//! The retry and trace header parsers on headers anyone can write: `read_headers` (keys that are
//! not UTF-8), `RetryState::parse` (every value checked) and `trace_id_of`. No header panics, a
//! rejected header is named, and the state sluice writes with `RetryState::headers_at` parses
//! back to the same state.

use proptest::prelude::*;
use sluice::avro::AttemptRecord;
use sluice::call::trace_id_of;
use sluice::retry::state::{read_headers, HeaderPair};
use sluice::retry::{HeaderError, Origin, RetryState, MAX_PARK};

use super::corpus;

const OWN: [&str; 8] = [
    "sluice-retry-rung",
    "sluice-retry-due-ms",
    "sluice-retry-attempts",
    "sluice-retry-history",
    "sluice-origin-topic",
    "sluice-origin-partition",
    "sluice-origin-offset",
    "sluice-origin-timestamp-ms",
];

/// Kafka headers with these raw keys and values, read back as the runner reads them; the
/// keys need not be UTF-8 (rdkafka's safe API cannot write such a key, librdkafka can).
fn through_kafka(pairs: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<HeaderPair> {
    read_headers(Some(super::raw_headers::headers_of(pairs).as_borrowed()))
}

fn here() -> Origin {
    Origin { topic: "in.retry.1".into(), partition: 3, offset: 7, timestamp_ms: Some(1) }
}

/// Parses; panics unless the result is a state or an error naming a retry header.
fn parse(headers: &[HeaderPair], rungs: usize, now_ms: i64) -> Result<RetryState, HeaderError> {
    let result = RetryState::parse(headers, here(), rungs, now_ms);
    if let Err(e) = &result {
        assert!(OWN.contains(&e.header), "an unnamed header: {e:?}");
        assert!(!e.problem.is_empty(), "{e:?}");
    }
    if let Ok(s) = &result {
        assert!(s.rung <= rungs, "rung {} beyond a ladder of {rungs}", s.rung);
    }
    result
}

/// A header key: one of sluice's own, a W3C one, or anything (bytes, not always UTF-8).
fn arb_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(OWN.to_vec()).prop_map(|k| k.as_bytes().to_vec()),
        1 => Just(b"traceparent".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

/// A header value: decimal text near the limits, JSON-ish text, or any bytes; or no value.
fn arb_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0..4u8).prop_map(|n| n.to_string()),
        "[ +\\-0-9e.]{0,24}",
    ];
    let json = "[\\[\\]{}\",0-9a-z:\\\\ ]{0,48}";
    prop::option::weighted(
        0.95,
        prop_oneof![
            number.prop_map(String::into_bytes),
            json.prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..24),
        ],
    )
}

fn arb_headers() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    prop::collection::vec((arb_key(), arb_value()), 0..10)
}

fn arb_state() -> impl Strategy<Value = RetryState> {
    let history = prop::collection::vec(
        (0..=1_000_000u32, any::<i64>(), ".{0,8}", ".{0,24}").prop_map(
            |(attempt, at_ms, error_class, message)| AttemptRecord {
                attempt,
                at_ms,
                error_class,
                message,
            },
        ),
        0..4,
    );
    let origin = (".{0,16}", 0..=i32::MAX, 0..=i64::MAX, any::<Option<i64>>()).prop_map(
        |(topic, partition, offset, timestamp_ms)| Origin {
            topic,
            partition,
            offset,
            timestamp_ms,
        },
    );
    (0..=1_000_000u32, origin, history).prop_map(|(attempts, origin, history)| RetryState {
        rung: 0,
        due_ms: None,
        attempts,
        origin,
        history,
        redacted_value: None,
    })
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn arbitrary_headers_parse_or_name_the_bad_one(
        pairs in arb_headers(),
        rungs in 0..6usize,
        now_ms in prop_oneof![0..4_000_000_000_000i64, any::<i64>()],
    ) {
        let headers = through_kafka(&pairs);
        prop_assert_eq!(headers.len(), pairs.len());
        let _ = parse(&headers, rungs, now_ms);
        let own = sluice::retry::own_headers(&headers);
        prop_assert!(own.iter().all(|(k, _)| !OWN.contains(&k.as_str())));
    }

    #[test]
    fn the_state_sluice_writes_parses_back(
        state in arb_state(),
        own in prop::collection::vec(("[a-z\\-]{0,12}", arb_value()), 0..4),
        rung in 1..6usize,
        now_ms in 0..4_000_000_000_000i64,
        due_in_ms in prop_oneof![0..100_000i64, any::<i64>()],
    ) {
        let own: Vec<HeaderPair> = own.into_iter().collect();
        let due_ms = now_ms.saturating_add(due_in_ms).max(0);
        let written = state.headers_at(&own, rung, due_ms, now_ms);
        let back = parse(&written, rung, now_ms).expect("what sluice writes parses");
        let capped = due_ms.min(now_ms + MAX_PARK.as_millis() as i64);
        prop_assert_eq!(back.rung, rung);
        prop_assert_eq!(back.due_ms, Some(capped));
        prop_assert_eq!(back.attempts, state.attempts_made());
        prop_assert_eq!(&back.origin, &state.origin);
        prop_assert_eq!(&back.history, &state.history);
        prop_assert_eq!(sluice::retry::own_headers(&written), sluice::retry::own_headers(&own));
    }

    #[test]
    fn trace_ids_come_only_from_well_formed_traceparents(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Some(id) = trace_id_of(&bytes) {
            prop_assert_eq!(id.len(), 32);
            prop_assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            prop_assert!(id.bytes().any(|b| b != b'0'));
        }
    }

    #[test]
    fn a_well_formed_traceparent_yields_its_trace_id(
        trace in "[0-9a-fA-F]{32}", span in "[0-9a-f]{16}", pad in "[ \t]{0,2}",
    ) {
        let tp = format!("{pad}00-{trace}-{span}-01{pad}");
        let expected = trace.bytes().any(|b| b != b'0').then(|| trace.to_ascii_lowercase());
        prop_assert_eq!(trace_id_of(tp.as_bytes()), expected);
    }
}

/// Every saved header case parses as its first line says: `expect: ok`, or `expect: err H`
/// naming the header `H` the parser must reject.
#[test]
fn the_saved_header_corpus_is_classified_as_named() {
    const NOW: i64 = 1_700_000_000_000;
    for path in corpus::files("headers", ".txt") {
        let name = corpus::name(&path);
        let text = std::fs::read_to_string(&path).expect("corpus file");
        let mut lines = text.lines();
        let expect = lines.next().and_then(|l| l.strip_prefix("expect: ")).expect("expect line");
        let pairs: Vec<(Vec<u8>, Option<Vec<u8>>)> = lines
            .map(|l| {
                let (k, v) = l.split_once('\t').unwrap_or((l, ""));
                (corpus::unescape(k), (v != "\\N").then(|| corpus::unescape(v)))
            })
            .collect();
        let result = parse(&through_kafka(&pairs), 2, NOW);
        match (expect.strip_prefix("err "), &result) {
            (None, Ok(_)) => assert_eq!(expect, "ok", "{name}"),
            (Some(header), Err(e)) => assert_eq!(e.header, header, "{name}: {e}"),
            (_, other) => panic!("{name}: expected {expect}, got {other:?}"),
        }
    }
}

/// Every saved traceparent: `expected<TAB>input`, `-` where no trace id may be read.
#[test]
fn the_saved_traceparent_corpus_reads_as_named() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/traceparent.txt");
    let text = std::fs::read_to_string(path).expect("corpus file");
    let mut cases = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (expected, input) = line.split_once('\t').expect("expected<TAB>input");
        let got = trace_id_of(&corpus::unescape(input));
        assert_eq!(got.as_deref(), (expected != "-").then_some(expected), "{line:?}");
        cases += 1;
    }
    assert!(cases >= 10);
}
