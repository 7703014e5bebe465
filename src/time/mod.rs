//! Time as operators write and read it, in one place: RFC 3339 for every instant sluice prints,
//! and one grammar for the instants and durations its commands take.
//!
//! - [`format`]: milliseconds since the epoch as RFC 3339 (never panics, whatever the value).
//! - [`parse`]: ISO 8601 date-times (zone optional), durations in the ISO form (`PT2H`) or the
//!   short one (`24h`), and instants given either way (a duration counts back from now).
//!
//! The clock itself is [`crate::call::now_ms`], re-exported here.

mod format;
mod parse;

pub use crate::call::now_ms;
pub use format::{rfc3339, rfc3339_short, MAX_MS};
pub use parse::{parse_datetime, parse_duration, parse_instant};
