//! A consumed record as the runner sees it: read once, when its partition admits it — its
//! headers (without trusting them) and its place on the retry ladder — and never parsed again.
//!
//! Retry state travels in headers, and headers are written by whoever produces to a topic. Only
//! the stage's own retry and deferred topics carry state that sluice wrote, so only there is it
//! read — and checked against what sluice writes there: a record on rung `k` says rung `k`, and
//! its origin is the stage's input. On the input topic (and any topic that is not the stage's
//! own) retry and origin headers are ignored: the record is a fresh document at its own
//! coordinates, whatever its headers claim, so a producer of the input can neither park a record
//! nor steer where its dead letter says it came from.

use std::collections::HashMap;

use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

use crate::config::StageSpec;
use crate::retry::state::{read_headers, HeaderPair, RUNG};
use crate::retry::{HeaderError, Origin, RetryState};

/// What a topic the stage reads is to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Written by producers sluice does not control: headers carry no retry state.
    Input,
    /// Rung `k` (from 1) of the stage's retry ladder.
    Rung(usize),
    /// The stage's deferred topic (records over budget).
    Deferred,
}

/// The topics a stage reads and what each is to it.
#[derive(Debug, Clone, Default)]
pub struct Topics {
    input: String,
    roles: HashMap<String, Role>,
    /// Length of the retry ladder.
    rungs: usize,
}

impl Topics {
    /// The stage's input, every rung of its ladder, and its deferred topic when budgets are on.
    pub fn of(spec: &StageSpec, deferred: bool) -> Self {
        let ladder = spec.retry.retry_topics();
        let mut roles: HashMap<String, Role> =
            ladder.iter().enumerate().map(|(i, (t, _))| (t.clone(), Role::Rung(i + 1))).collect();
        if deferred {
            roles.insert(spec.deferred_topic.clone(), Role::Deferred);
        }
        Self { input: spec.input.clone(), roles, rungs: ladder.len() }
    }

    /// For tests: `input` plus rungs named `<input>.retry.<k>`.
    pub fn ladder(input: &str, rungs: usize) -> Self {
        let roles = (1..=rungs).map(|k| (format!("{input}.retry.{k}"), Role::Rung(k))).collect();
        Self { input: input.to_owned(), roles, rungs }
    }

    pub fn role(&self, topic: &str) -> Role {
        self.roles.get(topic).copied().unwrap_or(Role::Input)
    }

    /// The retry state of a record consumed at `here`, read only on the stage's own topics and
    /// checked against what sluice writes there.
    fn state(
        &self,
        headers: &[HeaderPair],
        here: Origin,
        now_ms: i64,
    ) -> Result<RetryState, HeaderError> {
        let role = self.role(&here.topic);
        if role == Role::Input {
            return Ok(RetryState::fresh(here));
        }
        let on = here.topic.clone();
        let state = RetryState::parse(headers, here, self.rungs, now_ms)?;
        let forged = |header, problem: String| Err(HeaderError { header, problem });
        if let Role::Rung(k) = role {
            if !headers.iter().any(|(key, _)| key == RUNG) {
                return forged(RUNG, format!("missing on rung {k} ('{on}')"));
            }
            if state.rung != k {
                return forged(RUNG, format!("{} on rung {k} ('{on}')", state.rung));
            }
        }
        if state.origin.topic != self.input {
            let problem = format!(
                "'{}' is not this stage's input '{}'",
                state.origin.topic.escape_debug(),
                self.input
            );
            return forged(crate::retry::state::ORIGIN_TOPIC, problem);
        }
        Ok(state)
    }
}

/// The coordinates a record was consumed at.
fn here(m: &OwnedMessage) -> Origin {
    Origin {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
    }
}

#[derive(Debug)]
pub struct Inbound {
    pub message: OwnedMessage,
    /// Every header of the record, in order.
    pub headers: Vec<HeaderPair>,
    /// Its retry state, or why its retry headers cannot be trusted (it is dead-lettered).
    pub state: Result<RetryState, HeaderError>,
}

impl Inbound {
    /// Reads a polled record.
    pub fn read(message: &BorrowedMessage<'_>, topics: &Topics, now_ms: i64) -> Self {
        let headers = read_headers(message.headers());
        Self::from_parts(message.detach(), headers, topics, now_ms)
    }

    pub fn from_parts(
        message: OwnedMessage,
        headers: Vec<HeaderPair>,
        topics: &Topics,
        now_ms: i64,
    ) -> Self {
        let state = topics.state(&headers, here(&message), now_ms);
        Self { message, headers, state }
    }

    /// When the record may be processed, if it carries a due time.
    pub fn due_ms(&self) -> Option<i64> {
        self.state.as_ref().ok().and_then(|s| s.due_ms)
    }

    /// Its retry state, or a fresh one at its own coordinates when its headers were rejected.
    pub fn state_or_fresh(&self) -> RetryState {
        self.state.clone().unwrap_or_else(|_| RetryState::fresh(here(&self.message)))
    }

    /// The W3C `traceparent` header's value.
    pub fn traceparent(&self) -> Option<&[u8]> {
        self.headers.iter().rev().find(|(k, _)| k == "traceparent").and_then(|(_, v)| v.as_deref())
    }

    /// Approximate bytes the record holds in memory (value, key and headers).
    pub fn size(&self) -> usize {
        let m = &self.message;
        let headers: usize =
            self.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum();
        m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len) + headers
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;
    use crate::retry::state::{DUE_MS, ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC};

    fn at(topic: &str, headers: &[(&str, &str)]) -> Inbound {
        let m = OwnedMessage::new(
            Some(b"v".to_vec()),
            None,
            topic.into(),
            Timestamp::CreateTime(5),
            0,
            9,
            None,
        );
        let headers =
            headers.iter().map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec()))).collect();
        Inbound::from_parts(m, headers, &Topics::ladder("in", 2), 1_000)
    }

    #[test]
    fn retry_headers_on_the_input_are_ignored_not_honoured() {
        let far = (1_000 + 30 * 86_400_000i64).to_string();
        let origin = [(ORIGIN_TOPIC, "support.answers"), (ORIGIN_PARTITION, "0")];
        let i =
            at("in", &[(RUNG, "0"), (DUE_MS, &far), origin[0], origin[1], (ORIGIN_OFFSET, "1")]);
        assert_eq!(i.due_ms(), None, "never parked");
        let state = i.state.expect("a fresh document");
        assert_eq!((state.rung, state.due_ms, state.attempts), (0, None, 0));
        assert_eq!((state.origin.topic.as_str(), state.origin.offset), ("in", 9));
    }

    #[test]
    fn a_rung_record_must_say_its_rung_and_come_from_the_input() {
        let from_input = [(ORIGIN_TOPIC, "in"), (ORIGIN_PARTITION, "0"), (ORIGIN_OFFSET, "1")];
        let ok = at("in.retry.2", &[&[(RUNG, "2"), (DUE_MS, "2000")][..], &from_input].concat());
        let state = ok.state.expect("what sluice writes on rung 2");
        assert_eq!((state.rung, state.due_ms, state.origin.offset), (2, Some(2000), 1));
        for (headers, header) in [
            (&[(DUE_MS, "2000")][..], RUNG),
            (&[(RUNG, "1")][..], RUNG),
            (&[(RUNG, "2")][..], ORIGIN_TOPIC),
            (
                &[
                    (RUNG, "2"),
                    (ORIGIN_TOPIC, "other"),
                    (ORIGIN_PARTITION, "0"),
                    (ORIGIN_OFFSET, "1"),
                ][..],
                ORIGIN_TOPIC,
            ),
        ] {
            let e = at("in.retry.2", headers).state.expect_err("forged");
            assert_eq!(e.header, header, "{headers:?}: {e}");
        }
    }
}
