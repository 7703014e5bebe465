//! A record's copies on the stage's own topics, produced instead of outputs: the next rung of the
//! retry ladder, the deferred topic (over budget), or — for a record waiting so long at the head
//! of its partition that it holds the committed offset back — the end of the topic it is on.
//! Each copy is the record's key and bytes unchanged, with its retry state in headers.

use rdkafka::message::Message;

use super::disposition::OutRecord;
use super::inbound::Inbound;
use crate::call::now_ms;
use crate::retry::state::HeaderPair;
use crate::retry::RetryState;
use crate::telemetry::{RecordDeferred, RetryScheduled};

/// The record's key and bytes on `topic` under `headers`.
fn copy(inbound: &Inbound, topic: &str, headers: Vec<HeaderPair>) -> OutRecord {
    let m = &inbound.message;
    OutRecord {
        topic: topic.to_owned(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}

/// The record on rung `rung` of the retry ladder, due at `due_ms`.
pub(super) fn to_rung(
    stage: &str,
    inbound: &Inbound,
    state: &RetryState,
    (rung, topic): (usize, &str),
    due_ms: i64,
) -> OutRecord {
    RetryScheduled { stage, topic, rung }.emit();
    copy(inbound, topic, state.headers_at(&inbound.headers, rung, due_ms, now_ms()))
}

/// The record on the stage's deferred topic until `due_ms` (its tenant's next budget window):
/// same rung, no attempt spent.
pub(super) fn to_deferred(
    stage: &str,
    topic: &str,
    inbound: &Inbound,
    state: &RetryState,
    due_ms: i64,
    reason: &str,
) -> OutRecord {
    RecordDeferred { stage, reason, due_ms }.emit();
    copy(inbound, topic, state.headers_at(&inbound.headers, state.rung, due_ms, now_ms()))
}

/// The record again at the end of the topic it was read from, every header as it was: for a
/// record that is not due yet and holds its partition's committed offset back.
pub(super) fn to_tail(inbound: &Inbound) -> OutRecord {
    copy(inbound, inbound.message.topic(), inbound.headers.clone())
}
