//! What a redrive or discard run is asked to do, and how far it is.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::ops::dlq::read::Filter;

#[derive(Debug, Clone)]
pub struct RedriveOptions {
    pub filter: Filter,
    /// A dead letter redriven this often before is left in place.
    pub max_redrives: u32,
    /// Records republished per second at most.
    pub rate_per_second: Option<NonZeroU32>,
    /// Produce and commit; otherwise a dry run.
    pub execute: bool,
    /// An open batch (transaction) is committed once it is this old, whatever the walk is
    /// reading; it holds back the destination partitions for read-committed readers meanwhile.
    pub batch_age: Duration,
}

/// The default [`RedriveOptions::batch_age`]: well inside the broker's
/// `transaction.timeout.ms` (60 s by default), past which it aborts the transaction.
pub const BATCH_AGE: Duration = Duration::from_secs(20);

impl Default for RedriveOptions {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            max_redrives: 3,
            rate_per_second: None,
            execute: false,
            batch_age: BATCH_AGE,
        }
    }
}

/// How far a run is, after each record read.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub read: u64,
    pub total: u64,
    pub redriven: u64,
}

/// What a run does with the letters it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Redrive,
    Discard,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Redrive => "redrive",
            Action::Discard => "discard",
        }
    }
}
