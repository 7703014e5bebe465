//! The operator's side as library functions, for the CLI and tests: each reads (and, given
//! `execute`, changes) what a running pipeline left in Kafka, and returns a report to print.
//!
//! - [`groups`]: a group's state and members, committed offsets, watermarks, offsets by time,
//!   and a commit made for a group without joining it.
//! - [`replay`]: `sluice replay`, in a folder of its own: the plan of new offsets for a stage's
//!   group (the `kafka-consumer-groups --reset-offsets` vocabulary), what re-processing will
//!   cost, and its execution while the group has no members and nothing moved since planning.
//! - [`plan_csv`] and [`replay_cost`]: `replay`'s plan files and cost estimate, re-exported.
//! - [`ranges`]: reading offset ranges of partitions through the one topic reader.
//! - [`status`]: `sluice status`: per stage, members, lag, backlogs, dead letters and spend.
//! - [`survey`]: many topics' partitions, watermarks and offsets by time in a few requests.
//! - [`spend_today`]: today's spend from the metering topic, refreshed incrementally.
//! - [`dlq`]: the `sluice dlq` commands — `inspect`, `redrive` and `discard` — and reading a
//!   stage's dead-letter topic.

pub mod dlq;
pub mod groups;
pub mod ranges;
pub mod replay;
pub mod spend_today;
pub mod status;
pub mod survey;

pub use replay::{cost as replay_cost, plan_csv};

pub use dlq::read as dlq_read;
pub use dlq::redrive::position as redrive_position;
pub use dlq::{
    discard, inspect, parse_class, parse_instant, redrive, redrive_group, DlqError, Filter,
    Inspection, PlanRow, Progress, RedriveOptions, RedriveReport, Skipped, REDRIVE_COUNT,
};
