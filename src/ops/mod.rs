//! Operator commands as library functions, for the CLI and tests: each reads (and, given
//! `execute`, changes) what a running pipeline left in Kafka, and returns a report to print.
//!
//! - [`dlq_read`]: reading a stage's dead-letter topic, and the filters the `dlq` commands share.
//! - [`letter`]: a dead letter read back from its Avro value.
//! - [`inspect`]: `sluice dlq inspect`, counts by error class and message, and samples.
//! - [`redrive`]: `sluice dlq redrive`, republishing dead letters with a loop guard, resumable
//!   through a group of its own ([`redrive_position`], [`done_set`]); [`redrive_report`] is what
//!   it returns.

pub mod dlq_read;
pub mod done_set;
pub mod inspect;
pub mod letter;
pub mod redrive;
pub mod redrive_position;
pub mod redrive_report;

pub use dlq_read::{parse_class, parse_instant, DlqError, Filter, REDRIVE_COUNT};
pub use inspect::{inspect, Inspection};
pub use redrive::{redrive, redrive_group, Progress, RedriveOptions};
pub use redrive_report::{PlanRow, RedriveReport, Skipped};
