//! The time window of a cost report: events from `since` (inclusive) until `until` (exclusive),
//! either bound open. Half-open, as `sluice dlq redrive --since/--until`, so that consecutive
//! windows (14:00–15:00, 15:00–16:00) count every event exactly once.

use crate::time::rfc3339_short as rfc3339;

/// A window that is not one: `since` is not before `until`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the window is empty: --since {} is not before --until {}",
    rfc3339(*.since_ms),
    rfc3339(*.until_ms)
)]
pub struct EmptyWindow {
    pub since_ms: i64,
    pub until_ms: i64,
}

/// Milliseconds since the epoch: `since_ms <= t < until_ms`, a missing bound unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

impl Window {
    /// The window between the bounds; refused when both are given and `since` is not before
    /// `until`.
    pub fn new(since_ms: Option<i64>, until_ms: Option<i64>) -> Result<Self, EmptyWindow> {
        match (since_ms, until_ms) {
            (Some(since_ms), Some(until_ms)) if since_ms >= until_ms => {
                Err(EmptyWindow { since_ms, until_ms })
            }
            _ => Ok(Self { since_ms, until_ms }),
        }
    }

    pub fn since_ms(&self) -> Option<i64> {
        self.since_ms
    }

    pub fn until_ms(&self) -> Option<i64> {
        self.until_ms
    }

    /// Whether an event at `timestamp_ms` falls in the window.
    pub fn contains(&self, timestamp_ms: i64) -> bool {
        self.since_ms.is_none_or(|s| timestamp_ms >= s)
            && self.until_ms.is_none_or(|u| timestamp_ms < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_inclusive_and_until_exclusive() {
        let w = Window::new(Some(1_000), Some(2_000)).unwrap();
        assert!(!w.contains(999), "before since");
        assert!(w.contains(1_000), "at since");
        assert!(w.contains(1_999), "just before until");
        assert!(!w.contains(2_000), "at until: the next window's");
        assert!(!w.contains(5_000), "after until");
    }

    #[test]
    fn an_open_bound_is_unbounded() {
        assert!(Window::new(None, Some(10)).unwrap().contains(i64::MIN));
        assert!(!Window::new(None, Some(10)).unwrap().contains(10));
        assert!(Window::new(Some(10), None).unwrap().contains(i64::MAX));
        assert!(Window::default().contains(0));
    }

    #[test]
    fn an_empty_or_inverted_window_is_refused() {
        assert_eq!(Window::new(Some(5), Some(5)), Err(EmptyWindow { since_ms: 5, until_ms: 5 }));
        let inverted = Window::new(Some(6), Some(5)).unwrap_err();
        assert!(inverted.to_string().contains("not before --until"), "{inverted}");
    }
}
