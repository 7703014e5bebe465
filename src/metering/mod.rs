//! Cost metering, read side: every model call becomes a [`CostEvent`] on the metering topic (the
//! gateway writes them through a record's [`crate::call::CallLog`]); this module reads the topic
//! back — records that are not cost events skipped and counted — and groups the events into cost
//! reports, duplicates removed by event id.

mod read;
pub mod report;
pub mod report_format;
pub mod report_latency;
pub mod report_window;

pub use read::{
    decode_event, decode_events, read_events, read_metering, Metering, ReadError, Skipped,
};

/// The record the metering topic carries; it lives in [`crate::call`] with the call identity.
pub use crate::call::CostEvent;
