//! What handling a record decided, before anything is produced: the records it owes (outputs,
//! a retry or deferred copy, a dead letter, cost events), or a stop.

use crate::avro::DeadLetterClass;
use crate::retry::state::HeaderPair;
use crate::retry::RetryState;

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<HeaderPair>,
}

/// What processing decided for a record.
pub(super) enum Disposition {
    /// Produce these; the offset is stored once all are acknowledged.
    Outputs(Vec<OutRecord>),
    /// Dead-letter the record (the letter is built from the [`Visit`] as it stands at the end).
    DeadLetter { class: DeadLetterClass, reason: String },
    /// Stop the worker; the record stays unfinished.
    Fatal(String),
    /// The worker stopped before the record could finish.
    Abandoned,
}

/// What this visit of a record learnt that its dead letter must carry, whichever path ends it
/// (a permanent error, a panic, an output the broker refuses): its retry state with this visit's
/// failed attempts, its redacted re-encoding on a redacting stage, and whether its value ever
/// decoded (a redacting stage never lets decoded text leave unredacted).
#[derive(Debug, Clone)]
pub(super) struct Visit {
    pub state: RetryState,
    pub decoded: bool,
}
