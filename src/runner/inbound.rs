//! A consumed record as the runner sees it: read once, when its partition admits it — its
//! headers (without trusting them) and its place on the retry ladder — and never parsed again.

use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};

use crate::retry::state::{read_headers, HeaderPair};
use crate::retry::{HeaderError, Origin, RetryState};

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
    /// Reads a polled record; `rungs` is the length of the stage's retry ladder.
    pub fn read(message: &BorrowedMessage<'_>, rungs: usize, now_ms: i64) -> Self {
        let headers = read_headers(message.headers());
        Self::from_parts(message.detach(), headers, rungs, now_ms)
    }

    pub fn from_parts(
        message: OwnedMessage,
        headers: Vec<HeaderPair>,
        rungs: usize,
        now_ms: i64,
    ) -> Self {
        let state = RetryState::parse(&headers, here(&message), rungs, now_ms);
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
}
