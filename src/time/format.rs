//! Milliseconds since the epoch as RFC 3339 in UTC. A value outside what RFC 3339 can write
//! (before 1970 here, after 9999-12-31) is clamped, never a panic: timestamps come from records
//! that anyone can produce.

use std::time::{Duration, UNIX_EPOCH};

/// The last millisecond RFC 3339 can write: 9999-12-31T23:59:59.999Z.
pub const MAX_MS: i64 = 253_402_300_799_999;

fn clamped(ms: i64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.clamp(0, MAX_MS) as u64)
}

/// RFC 3339 with milliseconds: `2026-05-01T10:00:00.000Z`.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(clamped(ms)).to_string()
}

/// RFC 3339 in seconds unless the milliseconds matter: `2026-05-01T10:00:00Z`.
pub fn rfc3339_short(ms: i64) -> String {
    let at = clamped(ms);
    if ms.clamp(0, MAX_MS) % 1_000 == 0 {
        humantime::format_rfc3339_seconds(at).to_string()
    } else {
        humantime::format_rfc3339_millis(at).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_in_both_forms() {
        assert_eq!(rfc3339(1_777_629_600_000), "2026-05-01T10:00:00.000Z");
        assert_eq!(rfc3339_short(1_795_702_980_000), "2026-11-26T14:23:00Z");
        assert_eq!(rfc3339_short(1_795_702_980_500), "2026-11-26T14:23:00.500Z");
    }

    #[test]
    fn forged_timestamps_are_clamped_not_a_panic() {
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(MAX_MS + 1), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_short(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_short(-1), "1970-01-01T00:00:00Z");
    }
}
