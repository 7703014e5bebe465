//! Moved to [`crate::time`]; kept as a path while the operator's wing moves over.

pub use crate::time::{parse_datetime, parse_duration, rfc3339};
