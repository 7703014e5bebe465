//! The operator's side as library functions, for the CLI and tests: each reads (and, given
//! `execute`, changes) what a running pipeline left in Kafka, and returns a report to print.
//!
//! - [`groups`]: a group's state and members, committed offsets, watermarks, offsets by time,
//!   and a commit made for a group without joining it.
//! - [`replay`]: `sluice replay`: the plan of new offsets for a stage's group (the
//!   `kafka-consumer-groups --reset-offsets` vocabulary), what re-processing will cost, and its
//!   execution while the group has no members.
//! - [`iso8601`]: the date-time and duration arguments of the reset vocabulary.
//! - [`plan_csv`]: a replay plan as `topic,partition,offset` lines, exported and read back.
//! - [`replay_cost`]: what re-processing a replay's records will cost, the response cache
//!   counted.
//! - [`ranges`]: reading offset ranges of partitions with a short-lived standalone consumer.
//! - [`status`]: `sluice status`: per stage, members, lag, backlogs, dead letters and spend.
//! - [`dlq`]: the `sluice dlq` commands — `inspect`, `redrive` and `discard` — and reading a
//!   stage's dead-letter topic.

pub mod dlq;
pub mod groups;
pub mod iso8601;
pub mod plan_csv;
pub mod ranges;
pub mod replay;
pub mod replay_cost;
pub mod status;

pub use dlq::read as dlq_read;
pub use dlq::redrive::position as redrive_position;
pub use dlq::{
    discard, inspect, parse_class, parse_instant, redrive, redrive_group, DlqError, Filter,
    Inspection, PlanRow, Progress, RedriveOptions, RedriveReport, Skipped, REDRIVE_COUNT,
};
