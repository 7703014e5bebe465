//! The operator's side as library functions, for the CLI and tests: each reads (and, given
//! `execute`, changes) what a running pipeline left in Kafka, and returns a report to print.
//!
//! - [`groups`]: a group's state and members, committed offsets, watermarks, offsets by time,
//!   and a commit made for a group without joining it.
//! - [`replay`]: `sluice replay`, in a folder of its own: the plan of new offsets for a stage's
//!   group (the `kafka-consumer-groups --reset-offsets` vocabulary), what re-processing will
//!   cost, and its execution while the group has no members and nothing moved since planning.
//! - [`iso8601`]: the date-time and duration arguments of the reset vocabulary.
//! - [`plan_csv`] and [`replay_cost`]: `replay`'s plan files and cost estimate, re-exported.
//! - [`ranges`]: reading offset ranges of partitions through the one topic reader.
//! - [`status`]: `sluice status`: per stage, members, lag, backlogs, dead letters and spend.
//! - [`spend_today`]: today's spend from the metering topic, refreshed incrementally.
//! - [`dlq_read`]: reading a stage's dead-letter topic, and the filters the `dlq` commands share.
//! - [`letter`]: a dead letter read back from its Avro value.
//! - [`inspect`]: `sluice dlq inspect`, counts by error class and message, and samples.
//! - [`redrive`]: `sluice dlq redrive`, republishing dead letters with a loop guard, resumable
//!   through a group of its own ([`redrive_position`], [`done_set`]); [`redrive_report`] is what
//!   it returns.

pub mod dlq_read;
pub mod done_set;
pub mod groups;
pub mod inspect;
pub mod iso8601;
pub mod letter;
pub mod ranges;
pub mod redrive;
pub mod redrive_position;
pub mod redrive_report;
pub mod replay;
pub mod spend_today;
pub mod status;

pub use replay::{cost as replay_cost, plan_csv};

pub use dlq_read::{parse_class, parse_instant, DlqError, Filter, REDRIVE_COUNT};
pub use inspect::{inspect, Inspection};
pub use redrive::{redrive, redrive_group, Progress, RedriveOptions};
pub use redrive_report::{PlanRow, RedriveReport, Skipped};

/// What the unit tests of the dead-letter commands share.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::avro::{AttemptRecord, DeadLetter, DeadLetterClass};

    /// A dead letter with every field set (the original value withheld).
    pub fn letter() -> DeadLetter {
        DeadLetter {
            pipeline: "p".into(),
            stage: "s".into(),
            consumer_group: "g".into(),
            original_topic: "t".into(),
            original_partition: 1,
            original_offset: 7,
            original_timestamp_ms: Some(5),
            original_key: Some(b"k".to_vec()),
            original_value: None,
            original_headers: vec![("h".into(), Some(b"v".to_vec())), ("n".into(), None)],
            error_class: DeadLetterClass::RetriesExhausted,
            error_message: "bad".into(),
            attempts: vec![AttemptRecord {
                attempt: 1,
                at_ms: 5,
                error_class: "retryable".into(),
                message: "bad".into(),
            }],
            failed_at_ms: 9,
            model: Some("sim/m".into()),
            prompt_version: None,
            delivered_outputs: vec![],
        }
    }
}
