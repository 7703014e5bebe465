//! What happens next to a record that did not simply succeed, in one place.
//!
//! - [`backoff`]: every backoff timing — a record's in-process attempts (exponential with jitter,
//!   honouring a provider's "not before"), infrastructure waits (broker, registry, ledger) and
//!   offset-commit retries. Clippy's `disallowed-types` keeps backon's builders in this module.
//! - [`state`]: where a record is on its retry ladder, carried in Kafka headers (parsed once, with
//!   every value checked, when the record is admitted), and the header sets its outputs, retry
//!   records and dead letters carry.
//! - [`decision`]: given a failed attempt's [`Hint`] and the record's state, the next step: try
//!   again in process, move to the next rung or the deferred topic, dead-letter, or stop.

pub mod backoff;
pub mod decision;
pub mod state;

pub use backoff::{commit_backoff, infrastructure_backoff, until, with_retries, AttemptBackoff};
pub use decision::{Attempts, Hint, Next};
pub use state::{own_headers, HeaderError, Origin, RetryState, MAX_PARK};
