//! The decision after a failed attempt. The stage classifies its error as a [`Hint`]; given the
//! record's [`RetryState`] and the stage's retry policy, [`Attempts::after`] says what happens
//! next. Pure: no I/O, no clock of its own, so every path is unit-tested here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::backoff::AttemptBackoff;
use super::state::RetryState;
use crate::config::RetryPolicy;

/// What a failed attempt's error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Try again, not before this instant when given (Retry-After).
    Retry { not_before: Option<SystemTime> },
    /// Trying again cannot help.
    GiveUp,
    /// Nothing can proceed until an operator acts.
    Stop,
    /// Not a failure: wait until this instant (a tenant's budget renews) without spending an
    /// attempt.
    WaitUntil(SystemTime),
}

/// The next step for a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Try again in this process after this wait.
    Retry(Duration),
    /// Move the record to rung `rung` (1-based) of the ladder, on `topic`, due at `due_ms`.
    Rung { rung: usize, topic: String, due_ms: i64 },
    /// Move the record to the deferred topic, due at `due_ms`, on the rung it is on.
    Defer { due_ms: i64 },
    /// Dead-letter it: the error is permanent.
    DeadLetter,
    /// Dead-letter it: every attempt and every rung is spent.
    Exhausted,
    /// Stop the worker; the record stays unfinished.
    Stop,
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

/// One visit's attempts at a record: numbering, backoff, and the decision after each failure.
pub struct Attempts<'p> {
    policy: &'p RetryPolicy,
    backoff: AttemptBackoff,
    /// Attempts made in this visit.
    local: u32,
}

impl<'p> Attempts<'p> {
    pub fn new(policy: &'p RetryPolicy) -> Self {
        Self { policy, backoff: AttemptBackoff::new(policy), local: 0 }
    }

    /// Starts the next attempt; its number continues across the rungs of the ladder.
    pub fn start(&mut self, state: &RetryState) -> u32 {
        self.local += 1;
        state.attempts.saturating_add(self.local)
    }

    /// What happens after the current attempt failed with `hint`, at `now`.
    pub fn after(&mut self, hint: Hint, state: &RetryState, now: SystemTime) -> Next {
        let not_before = match hint {
            Hint::Stop => return Next::Stop,
            Hint::GiveUp => return Next::DeadLetter,
            Hint::WaitUntil(until) => return Next::Defer { due_ms: ms(until) },
            Hint::Retry { not_before } => not_before,
        };
        let wait = not_before.and_then(|t| t.duration_since(now).ok()).unwrap_or_default();
        let has_rung = state.rung < self.policy.ladder.len();
        // A provider asking for a long wait: move the record to the ladder with that due time
        // rather than hold a processing slot.
        let waits_too_long = wait > self.policy.max_inline_wait;
        if self.local < self.policy.attempts && !(waits_too_long && has_rung) {
            return Next::Retry(self.backoff.next_delay(wait));
        }
        let Some((topic, delay)) = self.policy.retry_topics().into_iter().nth(state.rung) else {
            return Next::Exhausted;
        };
        let due_ms = ms(now + delay).max(not_before.map_or(0, ms));
        Next::Rung { rung: state.rung + 1, topic, due_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Origin;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            ladder: vec![Duration::from_secs(5), Duration::from_secs(60)],
            max_inline_wait: Duration::from_secs(2),
            topic_prefix: "p.s.retry".into(),
        }
    }

    fn at_rung(rung: usize) -> RetryState {
        let origin = Origin { topic: "in".into(), partition: 0, offset: 1, timestamp_ms: None };
        RetryState { rung, ..RetryState::fresh(origin) }
    }

    const RETRY: Hint = Hint::Retry { not_before: None };

    #[test]
    fn attempts_then_rungs_then_exhausted() {
        let p = policy();
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let mut a = Attempts::new(&p);
        let state = at_rung(0);
        assert_eq!(a.start(&state), 1);
        assert!(matches!(a.after(RETRY, &state, now), Next::Retry(_)));
        assert_eq!(a.start(&state), 2);
        assert_eq!(
            a.after(RETRY, &state, now),
            Next::Rung { rung: 1, topic: "p.s.retry.1".into(), due_ms: 1_005_000 }
        );
        let last = at_rung(2);
        let mut a = Attempts::new(&p);
        a.start(&last);
        a.start(&last);
        assert_eq!(a.after(RETRY, &last, now), Next::Exhausted);
    }

    #[test]
    fn attempt_numbers_continue_across_rungs_and_saturate() {
        let p = policy();
        let mut state = at_rung(1);
        state.attempts = 2;
        assert_eq!(Attempts::new(&p).start(&state), 3);
        state.attempts = u32::MAX;
        assert_eq!(Attempts::new(&p).start(&state), u32::MAX);
    }

    #[test]
    fn a_long_retry_after_parks_on_the_next_rung_at_that_time() {
        let p = policy();
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let mut a = Attempts::new(&p);
        let state = at_rung(0);
        a.start(&state);
        let later = Hint::Retry { not_before: Some(now + Duration::from_secs(30)) };
        assert_eq!(
            a.after(later, &state, now),
            Next::Rung { rung: 1, topic: "p.s.retry.1".into(), due_ms: 1_030_000 }
        );
        // A short one is waited out in process.
        let soon = Hint::Retry { not_before: Some(now + Duration::from_secs(1)) };
        let mut a = Attempts::new(&p);
        a.start(&state);
        assert!(
            matches!(a.after(soon, &state, now), Next::Retry(d) if d >= Duration::from_millis(900))
        );
    }

    #[test]
    fn permanent_fatal_and_deferred_need_no_attempts() {
        let p = policy();
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let mut a = Attempts::new(&p);
        let s = at_rung(0);
        assert_eq!(a.after(Hint::GiveUp, &s, now), Next::DeadLetter);
        assert_eq!(a.after(Hint::Stop, &s, now), Next::Stop);
        let until = now + Duration::from_secs(86_400);
        assert_eq!(a.after(Hint::WaitUntil(until), &s, now), Next::Defer { due_ms: 87_400_000 });
    }
}
