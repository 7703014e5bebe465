//! The `sluice dlq` commands on a stage's dead-letter topic:
//!
//! - [`read`]: reading the topic, the filters the commands share, the redrive count a letter
//!   carries, and its original value for people.
//! - [`inspect`]: `sluice dlq inspect`, counts by error class and message, and samples.
//! - [`redrive`]: `sluice dlq redrive` (republishing letters where only their stage reads them,
//!   with a loop guard) and `sluice dlq discard` (acknowledging letters without republishing
//!   them), both resumable through one position in a group of their own.
//!
//! - [`at`]: the one notation for a record's position, `P:O`, written and parsed.
//! - [`outstanding`]: which letters no redrive or discard finished, counted without reading them.
//! - [`fate`]: what became of each letter — outstanding, or redriven and then processed, waiting
//!   or dead-lettered again — checked against what sluice wrote.
//!
//! Arrows point one way: `inspect` and `redrive` use `read`, never each other; `fate` and
//! `outstanding` read the position `redrive` keeps.

pub mod at;
pub mod fate;
pub mod inspect;
pub mod outstanding;
pub mod read;
pub mod redrive;

pub use at::At;
pub use fate::{fates, Fate};
pub use inspect::{inspect, Inspection};
pub use outstanding::{outstanding, Letters};
pub use read::{parse_class, parse_instant, DlqError, Filter, REDRIVE_COUNT};
pub use redrive::{
    discard, redrive, redrive_group, PlanRow, Progress, RedriveOptions, RedriveReport, Skipped,
};

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
