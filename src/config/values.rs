//! Leaf value parsers shared by the compiler: durations, limits, names.

use std::time::Duration;

use super::section::Section;

/// A duration written with its unit (`250ms`, `10s`, `1m`); reported if malformed or zero
/// (a zero `jitter` is the one allowed zero: its default).
pub fn duration(sec: &mut Section<'_>, key: &str, default: Duration) -> Duration {
    let Some(text) = sec.opt::<String>(key) else { return default };
    match parse_duration(&text) {
        Ok(d) => d,
        Err(msg) => {
            sec.error(key, msg);
            default
        }
    }
}

/// The longest duration a topology may hold: far beyond any sensible timeout or retry delay,
/// and short enough that the runner can add it to `Instant::now()` or `SystemTime::now()`
/// without overflowing (a panic), which a duration of billions of years would.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600); // 100 y of 365.25 d

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err(format!("duration '{text}' must be greater than zero")),
        Ok(d) if d > MAX_DURATION => {
            Err(format!("duration '{text}' is longer than the limit of 100 years"))
        }
        Ok(d) => Ok(d),
        Err(e) => Err(format!("bad duration '{text}': {e} (write e.g. 250ms, 10s, 1m)")),
    }
}

/// A count that must lie in `min..=max`.
pub fn limit(sec: &mut Section<'_>, key: &str, default: usize, min: usize, max: usize) -> usize {
    let Some(v) = sec.opt::<i64>(key) else { return default };
    if v < min as i64 || v > max as i64 {
        sec.error(key, format!("must be between {min} and {max}, got {v}"));
        return default;
    }
    v as usize
}

/// A fraction in `0.0..=1.0`.
pub fn fraction(sec: &mut Section<'_>, key: &str) -> f64 {
    let Some(v) = sec.opt::<f64>(key) else { return 0.0 };
    if !(0.0..=1.0).contains(&v) {
        sec.error(key, format!("must be between 0.0 and 1.0, got {v}"));
        return 0.0;
    }
    v
}

/// Names of stages, providers and pipelines: they end up in topic and group names.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Kafka's legal topic names: `[a-zA-Z0-9._-]{1,249}`, not `.` or `..`.
pub fn is_valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_the_clocks_cannot_hold_are_refused() {
        assert_eq!(parse_duration("100y"), Ok(Duration::from_secs(3_155_760_000)));
        for text in ["101y", "500000000000y", "9223372036854775808s", "18446744073709551615s"] {
            let e = parse_duration(text).expect_err(text);
            assert!(e.contains("longer than the limit"), "{text}: {e}");
        }
    }
}
