//! Reading given offset ranges of partitions — the records a replay would re-process, the record
//! at a group's committed offset, the cost events since a time — through the one topic reader,
//! [`crate::kafka::reader`], and its rule for transient errors.

pub use crate::kafka::reader::{read_ranges, Range};
