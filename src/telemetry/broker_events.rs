//! Events of a broker still coming up: the progress line a start path writes while a fresh broker
//! elects leaders or loads its coordinators (see [`crate::kafka::ready`]). No metric: it happens
//! at start only, and the line is what an operator watching the start needs.

use std::time::Duration;

/// A first-contact request was answered "not yet"; the start waits and asks again.
pub struct BrokerComingUp<'a> {
    /// What was asked, e.g. "the offsets of support.documents".
    pub what: &'a str,
    pub error: &'a dyn std::fmt::Display,
    /// How long this request has been waited for so far.
    pub waited: Duration,
    /// How long it will be waited for in all.
    pub limit: Duration,
}

impl BrokerComingUp<'_> {
    pub fn emit(self) {
        tracing::info!(
            waited_s = self.waited.as_secs(),
            limit_s = self.limit.as_secs(),
            "waiting for the broker: {} answers \"{}\" (still coming up?)",
            self.what,
            self.error
        );
    }
}
