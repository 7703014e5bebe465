//! Where a record is on its retry ladder, carried in Kafka headers so that any process of the
//! stage's group can pick it up: the rung, when it is due, how many attempts it has had, where it
//! came from, and the history of its failures. Values are decimal text or JSON, readable in kcat.
//!
//! Headers come from outside (anyone can produce to a retry topic), so they are read without
//! trusting them: [`read_headers`] never panics on a key that is not UTF-8, and
//! [`RetryState::parse`] checks every value — a rung beyond the ladder, a count that would
//! overflow, or a due time further ahead than [`MAX_PARK`] is a [`HeaderError`], which the runner
//! dead-letters with the reason instead of panicking or holding the partition.

use std::time::Duration;

use rdkafka::message::{BorrowedHeaders, Headers};

use crate::avro::AttemptRecord;

pub const RUNG: &str = "sluice-retry-rung";
pub const DUE_MS: &str = "sluice-retry-due-ms";
pub const ATTEMPTS: &str = "sluice-retry-attempts";
pub const HISTORY: &str = "sluice-retry-history";
pub const ORIGIN_TOPIC: &str = "sluice-origin-topic";
pub const ORIGIN_PARTITION: &str = "sluice-origin-partition";
pub const ORIGIN_OFFSET: &str = "sluice-origin-offset";
pub const ORIGIN_TIMESTAMP_MS: &str = "sluice-origin-timestamp-ms";

/// How often a record was redriven from a dead-letter topic (`sluice dlq redrive` sets it): it
/// travels with the record through its retry rungs and into a new dead letter (the redrive loop
/// guard), and is dropped from the stage's outputs, whose letters start again at zero.
pub const REDRIVE_COUNT: &str = "sluice-redrive-count";

const OWN: [&str; 8] = [
    RUNG,
    DUE_MS,
    ATTEMPTS,
    HISTORY,
    ORIGIN_TOPIC,
    ORIGIN_PARTITION,
    ORIGIN_OFFSET,
    ORIGIN_TIMESTAMP_MS,
];

/// The longest a record is ever parked (retry rung or deferred topic): longer than any budget
/// window sluice offers (a month) plus slack. Due times written are capped to it; a due time
/// read further ahead than this is not one sluice wrote.
pub const MAX_PARK: Duration = Duration::from_secs(40 * 86_400);

/// Attempts a record can accumulate before its header is taken as forged; far above any ladder.
const MAX_ATTEMPTS: u32 = 1_000_000;

/// A header as it travels: key and value (Kafka allows a header without a value).
pub type HeaderPair = (String, Option<Vec<u8>>);

/// A retry header that sluice cannot have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header '{header}' is invalid: {problem}")]
pub struct HeaderError {
    pub header: &'static str,
    pub problem: String,
}

pub use crate::call::Origin;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryState {
    /// 0 on the input topic; n on the n-th retry topic.
    pub rung: usize,
    /// Not to be processed before this instant (ms since the epoch).
    pub due_ms: Option<i64>,
    /// Attempts made before this visit.
    pub attempts: u32,
    pub origin: Origin,
    pub history: Vec<AttemptRecord>,
    /// With PII redaction on the stage: the record re-encoded with its text redacted, which a
    /// dead letter carries instead of the original value.
    pub redacted_value: Option<Vec<u8>>,
}

/// Every header of a record, in order. Keys that are not UTF-8 are converted lossily (rdkafka's
/// own iterator panics on them).
pub fn read_headers(headers: Option<&BorrowedHeaders>) -> Vec<HeaderPair> {
    let Some(h) = headers else { return Vec::new() };
    // rdkafka's `BorrowedHeaders` is a zero-sized view whose address is librdkafka's headers
    // object (rdkafka itself converts it back the same way).
    let native = h as *const BorrowedHeaders as *const rdkafka::bindings::rd_kafka_headers_t;
    (0..h.count())
        .filter_map(|idx| {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
            // SAFETY: `native` is valid while `h` is borrowed; librdkafka writes pointers into
            // the headers object, which outlive this call, and a size for the value.
            let err = unsafe {
                rdkafka::bindings::rd_kafka_header_get_all(
                    native, idx, &mut name, &mut value, &mut size,
                )
            };
            if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return None;
            }
            // SAFETY: on success `name` is a NUL-terminated string and `value`, when not null,
            // points at `size` bytes, both owned by the headers object.
            let key = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned();
            let value = (!value.is_null())
                .then(|| unsafe { std::slice::from_raw_parts(value as *const u8, size) }.to_vec());
            Some((key, value))
        })
        .collect()
}

/// The record's own headers: all but sluice's retry headers. Outputs, retry records and dead
/// letters carry these (W3C `traceparent` among them).
pub fn own_headers(headers: &[HeaderPair]) -> Vec<HeaderPair> {
    headers.iter().filter(|(k, _)| !OWN.contains(&k.as_str())).cloned().collect()
}

/// The headers a stage's outputs carry onward: the record's own, without its redrive count.
pub fn onward_headers(headers: &[HeaderPair]) -> Vec<HeaderPair> {
    let mut own = own_headers(headers);
    own.retain(|(k, _)| k != REDRIVE_COUNT);
    own
}

fn value<'h>(headers: &'h [HeaderPair], name: &str) -> Option<&'h [u8]> {
    headers.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref())
}

fn parse<T: std::str::FromStr>(
    headers: &[HeaderPair],
    name: &'static str,
) -> Result<Option<T>, HeaderError>
where
    T::Err: std::fmt::Display,
{
    let Some(raw) = value(headers, name) else { return Ok(None) };
    let bad = |problem: String| HeaderError { header: name, problem };
    let text = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8".into()))?;
    text.trim().parse().map(Some).map_err(|e| bad(format!("'{}': {e}", text.escape_debug())))
}

fn check<T: PartialOrd + std::fmt::Display>(
    header: &'static str,
    v: T,
    low: T,
    high: T,
) -> Result<T, HeaderError> {
    if v < low || v > high {
        return Err(HeaderError { header, problem: format!("{v} is outside {low}..={high}") });
    }
    Ok(v)
}

impl RetryState {
    /// A record seen for the first time, at these coordinates.
    pub fn fresh(origin: Origin) -> Self {
        Self {
            rung: 0,
            due_ms: None,
            attempts: 0,
            origin,
            history: Vec::new(),
            redacted_value: None,
        }
    }

    /// The state of a consumed record from its headers (fresh without a rung header), every
    /// value checked: `rungs` is the length of the stage's ladder, `now_ms` the current time.
    pub fn parse(
        headers: &[HeaderPair],
        here: Origin,
        rungs: usize,
        now_ms: i64,
    ) -> Result<Self, HeaderError> {
        let Some(rung) = parse::<usize>(headers, RUNG)? else { return Ok(Self::fresh(here)) };
        let rung = check(RUNG, rung, 0, rungs)?;
        let latest = now_ms.saturating_add(MAX_PARK.as_millis() as i64 + 60_000);
        let due_ms =
            parse::<i64>(headers, DUE_MS)?.map(|d| check(DUE_MS, d, 0, latest)).transpose()?;
        let attempts = check(ATTEMPTS, parse(headers, ATTEMPTS)?.unwrap_or(0), 0, MAX_ATTEMPTS)?;
        let origin = match value(headers, ORIGIN_TOPIC) {
            None => here,
            Some(topic) => Origin {
                topic: String::from_utf8(topic.to_vec()).map_err(|_| HeaderError {
                    header: ORIGIN_TOPIC,
                    problem: "not UTF-8".into(),
                })?,
                partition: parse(headers, ORIGIN_PARTITION)?
                    .map(|p| check(ORIGIN_PARTITION, p, 0, i32::MAX))
                    .transpose()?
                    .ok_or(HeaderError { header: ORIGIN_PARTITION, problem: "missing".into() })?,
                offset: parse(headers, ORIGIN_OFFSET)?
                    .map(|o| check(ORIGIN_OFFSET, o, 0, i64::MAX))
                    .transpose()?
                    .ok_or(HeaderError { header: ORIGIN_OFFSET, problem: "missing".into() })?,
                timestamp_ms: parse(headers, ORIGIN_TIMESTAMP_MS)?,
            },
        };
        let history = match value(headers, HISTORY) {
            None => Vec::new(),
            Some(h) => serde_json::from_slice::<Vec<(u32, i64, String, String)>>(h)
                .map_err(|e| HeaderError { header: HISTORY, problem: e.to_string() })?
                .into_iter()
                .map(|(attempt, at_ms, error_class, message)| AttemptRecord {
                    attempt,
                    at_ms,
                    error_class,
                    message,
                })
                .collect(),
        };
        Ok(Self { rung, due_ms, attempts, origin, history, redacted_value: None })
    }

    /// Attempts made so far, this visit's failures included.
    pub fn attempts_made(&self) -> u32 {
        self.history.last().map_or(self.attempts, |a| a.attempt.max(self.attempts))
    }

    /// The record's own headers plus its retry state, re-produced at `rung` and not to be
    /// processed before `due_ms` (capped to [`MAX_PARK`] from `now_ms`).
    pub fn headers_at(
        &self,
        own: &[HeaderPair],
        rung: usize,
        due_ms: i64,
        now_ms: i64,
    ) -> Vec<HeaderPair> {
        let due_ms = due_ms.min(now_ms.saturating_add(MAX_PARK.as_millis() as i64));
        let history: Vec<(u32, i64, &str, &str)> = self
            .history
            .iter()
            .map(|a| (a.attempt, a.at_ms, a.error_class.as_str(), a.message.as_str()))
            .collect();
        let text = |s: String| Some(s.into_bytes());
        let mut out = own_headers(own);
        out.extend([
            (RUNG.to_owned(), text(rung.to_string())),
            (DUE_MS.to_owned(), text(due_ms.to_string())),
            (ATTEMPTS.to_owned(), text(self.attempts_made().to_string())),
            (HISTORY.to_owned(), Some(serde_json::to_vec(&history).expect("history serializes"))),
            (ORIGIN_TOPIC.to_owned(), text(self.origin.topic.clone())),
            (ORIGIN_PARTITION.to_owned(), text(self.origin.partition.to_string())),
            (ORIGIN_OFFSET.to_owned(), text(self.origin.offset.to_string())),
        ]);
        if let Some(ts) = self.origin.timestamp_ms {
            out.push((ORIGIN_TIMESTAMP_MS.to_owned(), text(ts.to_string())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> Origin {
        Origin { topic: "t.retry.1".into(), partition: 2, offset: 40, timestamp_ms: Some(5) }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<HeaderPair> {
        pairs.iter().map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec()))).collect()
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn a_fresh_record_starts_at_rung_zero_with_its_own_coordinates() {
        let s = RetryState::parse(&h(&[("traceparent", "00-ab")]), here(), 2, NOW).unwrap();
        assert_eq!((s.rung, s.attempts, s.due_ms), (0, 0, None));
        assert_eq!(s.origin, here());
    }

    #[test]
    fn headers_round_trip_through_the_next_rung() {
        let mut s = RetryState::fresh(here());
        s.history.push(AttemptRecord {
            attempt: 2,
            at_ms: 9,
            error_class: "retryable".into(),
            message: "503".into(),
        });
        let pairs = s.headers_at(&h(&[("traceparent", "00-ab")]), 1, NOW + 1234, NOW);
        let other = Origin { topic: "t.retry.2".into(), ..here() };
        let next = RetryState::parse(&pairs, other, 2, NOW).unwrap();
        assert_eq!((next.rung, next.due_ms, next.attempts), (1, Some(NOW + 1234), 2));
        assert_eq!(next.history, s.history);
        assert_eq!(next.origin, here(), "the first coordinates travel along");
        assert!(pairs.iter().any(|(k, _)| k == "traceparent"), "the record's own headers too");
        assert_eq!(own_headers(&pairs), h(&[("traceparent", "00-ab")]));
    }

    #[test]
    fn forged_values_are_rejected_not_trusted() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[(RUNG, "18446744073709551615")], RUNG),
            (&[(RUNG, "3")], RUNG),
            (&[(RUNG, "x")], RUNG),
            (&[(RUNG, "1"), (ATTEMPTS, "4294967295")], ATTEMPTS),
            (&[(RUNG, "1"), (DUE_MS, "9223372036854775807")], DUE_MS),
            (&[(RUNG, "1"), (DUE_MS, "-9223372036854775808")], DUE_MS),
            (&[(RUNG, "1"), (HISTORY, "[[1,")], HISTORY),
        ];
        for (headers, header) in cases {
            let e = RetryState::parse(&h(headers), here(), 2, NOW).unwrap_err();
            assert_eq!(e.header, header, "{headers:?}");
        }
        let not_utf8 = vec![(RUNG.to_owned(), Some(vec![0xff, 0xfe]))];
        assert_eq!(RetryState::parse(&not_utf8, here(), 2, NOW).unwrap_err().header, RUNG);
    }

    #[test]
    fn due_times_written_are_capped_and_read_back() {
        let s = RetryState::fresh(here());
        let far = s.headers_at(&[], 1, i64::MAX, NOW);
        let back = RetryState::parse(&far, here(), 2, NOW).unwrap();
        assert_eq!(back.due_ms, Some(NOW + MAX_PARK.as_millis() as i64));
    }

    #[test]
    fn a_header_key_that_is_not_utf8_is_read_lossily_without_a_panic() {
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: "traceparent", value: Some("00-ab") });
        let native = headers.as_borrowed() as *const BorrowedHeaders
            as *mut rdkafka::bindings::rd_kafka_headers_t;
        let (key, value) = (b"bad\xff\xfekey", b"v");
        // SAFETY: `native` is the live headers object of `headers`; the sizes match the buffers.
        unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                native,
                key.as_ptr().cast(),
                key.len() as isize,
                value.as_ptr().cast(),
                value.len() as isize,
            );
        }
        let read = read_headers(Some(headers.as_borrowed()));
        assert_eq!(read.len(), 2);
        assert_eq!(read[0], ("traceparent".to_owned(), Some(b"00-ab".to_vec())));
        assert_eq!(read[1], ("bad\u{fffd}\u{fffd}key".to_owned(), Some(b"v".to_vec())));
    }
}
