//! Where a record is on its retry ladder, carried in Kafka headers so that any process of the
//! stage's group can pick it up: the rung, when it is due, how many attempts it has had, where it
//! came from, and the history of its failures. Values are decimal text or JSON, readable in kcat.

use rdkafka::message::{Header, Headers, Message, OwnedMessage};

use crate::avro::AttemptRecord;

pub const RUNG: &str = "sluice-retry-rung";
pub const DUE_MS: &str = "sluice-retry-due-ms";
pub const ATTEMPTS: &str = "sluice-retry-attempts";
pub const HISTORY: &str = "sluice-retry-history";
pub const ORIGIN_TOPIC: &str = "sluice-origin-topic";
pub const ORIGIN_PARTITION: &str = "sluice-origin-partition";
pub const ORIGIN_OFFSET: &str = "sluice-origin-offset";
pub const ORIGIN_TIMESTAMP_MS: &str = "sluice-origin-timestamp-ms";

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

/// Whether a header is one of sluice's retry headers (not part of the record's own headers).
pub fn is_retry_header(key: &str) -> bool {
    OWN.contains(&key)
}

/// The record's first coordinates, before any retry topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

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

fn header<'m>(m: &'m OwnedMessage, name: &str) -> Option<&'m [u8]> {
    m.headers()?.iter().find(|h| h.key == name).and_then(|h| h.value)
}

fn parse<T: std::str::FromStr>(m: &OwnedMessage, name: &str) -> Option<T> {
    std::str::from_utf8(header(m, name)?).ok()?.parse().ok()
}

impl RetryState {
    /// The state of a consumed record: from its headers on a retry topic, fresh otherwise.
    pub fn of(m: &OwnedMessage) -> Self {
        let fresh_origin = Origin {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
        };
        let Some(rung) = parse::<usize>(m, RUNG) else {
            return Self {
                rung: 0,
                due_ms: None,
                attempts: 0,
                origin: fresh_origin,
                history: Vec::new(),
                redacted_value: None,
            };
        };
        let origin =
            match (header(m, ORIGIN_TOPIC), parse(m, ORIGIN_PARTITION), parse(m, ORIGIN_OFFSET)) {
                (Some(topic), Some(partition), Some(offset)) => Origin {
                    topic: String::from_utf8_lossy(topic).into_owned(),
                    partition,
                    offset,
                    timestamp_ms: parse(m, ORIGIN_TIMESTAMP_MS),
                },
                _ => fresh_origin,
            };
        let history = header(m, HISTORY)
            .and_then(|h| serde_json::from_slice::<Vec<(u32, i64, String, String)>>(h).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|(attempt, at_ms, error_class, message)| AttemptRecord {
                attempt,
                at_ms,
                error_class,
                message,
            })
            .collect();
        Self {
            rung,
            due_ms: parse(m, DUE_MS),
            attempts: parse(m, ATTEMPTS).unwrap_or(0),
            origin,
            history,
            redacted_value: None,
        }
    }

    /// Milliseconds since the epoch at which `m` may be processed, if it carries a due time.
    pub fn due_ms_of(m: &OwnedMessage) -> Option<i64> {
        parse(m, DUE_MS)
    }

    /// Headers for the next rung: the record's own headers without sluice's retry headers, plus
    /// the updated ones.
    pub fn next_rung_headers(&self, m: &OwnedMessage, due_ms: i64) -> Vec<(String, Vec<u8>)> {
        self.headers_for(m, self.rung + 1, due_ms)
    }

    /// The headers of `m` re-produced at `rung`, not to be processed before `due_ms`.
    pub fn headers_for(
        &self,
        m: &OwnedMessage,
        rung: usize,
        due_ms: i64,
    ) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .filter(|Header { key, .. }| !OWN.contains(key))
                    .filter_map(|Header { key, value }| value.map(|v| (key.to_owned(), v.to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        let history: Vec<(u32, i64, &str, &str)> = self
            .history
            .iter()
            .map(|a| (a.attempt, a.at_ms, a.error_class.as_str(), a.message.as_str()))
            .collect();
        let attempts = self.history.last().map_or(self.attempts, |a| a.attempt);
        out.extend([
            (RUNG.to_owned(), rung.to_string().into_bytes()),
            (DUE_MS.to_owned(), due_ms.to_string().into_bytes()),
            (ATTEMPTS.to_owned(), attempts.to_string().into_bytes()),
            (HISTORY.to_owned(), serde_json::to_vec(&history).expect("history serializes")),
            (ORIGIN_TOPIC.to_owned(), self.origin.topic.clone().into_bytes()),
            (ORIGIN_PARTITION.to_owned(), self.origin.partition.to_string().into_bytes()),
            (ORIGIN_OFFSET.to_owned(), self.origin.offset.to_string().into_bytes()),
        ]);
        if let Some(ts) = self.origin.timestamp_ms {
            out.push((ORIGIN_TIMESTAMP_MS.to_owned(), ts.to_string().into_bytes()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedHeaders, Timestamp};

    fn message(headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"v".to_vec()),
            Some(b"k".to_vec()),
            "t.retry.1".into(),
            Timestamp::CreateTime(5),
            2,
            40,
            headers,
        )
    }

    #[test]
    fn a_fresh_record_starts_at_rung_zero_with_its_own_coordinates() {
        let s = RetryState::of(&message(None));
        assert_eq!((s.rung, s.attempts, s.due_ms), (0, 0, None));
        assert_eq!(
            s.origin,
            Origin { topic: "t.retry.1".into(), partition: 2, offset: 40, timestamp_ms: Some(5) }
        );
    }

    #[test]
    fn headers_round_trip_through_the_next_rung() {
        let mut s = RetryState::of(&message(None));
        s.history.push(AttemptRecord {
            attempt: 2,
            at_ms: 9,
            error_class: "retryable".into(),
            message: "503".into(),
        });
        let pairs = s.next_rung_headers(
            &message(Some(
                OwnedHeaders::new().insert(Header { key: "traceparent", value: Some("00-ab") }),
            )),
            1234,
        );
        let headers = pairs
            .iter()
            .fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: Some(v) }));
        let next = RetryState::of(&message(Some(headers)));
        assert_eq!(next.rung, 1);
        assert_eq!(next.due_ms, Some(1234));
        assert_eq!(next.attempts, 2);
        assert_eq!(next.history, s.history);
        assert_eq!(next.origin.offset, 40);
        assert!(
            pairs.iter().any(|(k, _)| k == "traceparent"),
            "the record's own headers travel along"
        );
    }
}
