//! A circuit breaker per provider endpoint. Closed: calls go through and outcomes are counted.
//! Open (after `consecutive_failures` in a row, or an error rate over the last `window` calls):
//! calls are refused until `cool_down` has passed. Half-open: one probe goes through; its
//! success closes the breaker, its failure opens it again. Every transition is logged.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerSpec;
use crate::telemetry::{BreakerCreated, BreakerTransition};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half_open",
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    provider: String,
    spec: BreakerSpec,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive: u32,
    /// Last `window` outcomes, `true` for a failure.
    recent: VecDeque<bool>,
}

/// Permission to make one call; report its outcome with [`Breaker::record`].
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    probe: bool,
}

impl Breaker {
    pub fn new(provider: &str, spec: BreakerSpec) -> Self {
        BreakerCreated { provider }.emit();
        Self {
            provider: provider.to_owned(),
            spec,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                recent: VecDeque::with_capacity(spec.window as usize),
            }),
        }
    }

    /// A permit, or how long until the breaker lets a probe through.
    pub fn try_acquire(&self) -> Result<Permit, Duration> {
        let mut inner = self.inner.lock().expect("breaker lock");
        match inner.state {
            State::Closed => Ok(Permit { probe: false }),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                self.transition(&mut inner, State::HalfOpen { probing: true });
                Ok(Permit { probe: true })
            }
            // One probe at a time; others wait a moment and look again.
            State::HalfOpen { probing: true } => Err(Duration::from_millis(100)),
            State::HalfOpen { probing: false } => {
                inner.state = State::HalfOpen { probing: true };
                Ok(Permit { probe: true })
            }
        }
    }

    /// Reports a call's outcome: `failed` for failures of the endpoint (5xx, timeouts, resets),
    /// not for rejections of the request or rate limiting.
    pub fn record(&self, permit: Permit, failed: bool) {
        let mut inner = self.inner.lock().expect("breaker lock");
        if permit.probe || matches!(inner.state, State::HalfOpen { .. }) {
            let next = if failed { self.open_state() } else { State::Closed };
            inner.consecutive = 0;
            inner.recent.clear();
            self.transition(&mut inner, next);
            return;
        }
        if inner.recent.len() == self.spec.window as usize {
            inner.recent.pop_front();
        }
        inner.recent.push_back(failed);
        inner.consecutive = if failed { inner.consecutive + 1 } else { 0 };
        if !failed || !matches!(inner.state, State::Closed) {
            return;
        }
        let failures = inner.recent.iter().filter(|f| **f).count();
        let full = inner.recent.len() == self.spec.window as usize;
        let rate = failures as f64 / inner.recent.len() as f64;
        if inner.consecutive >= self.spec.consecutive_failures
            || (full && rate >= self.spec.error_rate)
        {
            inner.consecutive = 0;
            inner.recent.clear();
            let next = self.open_state();
            self.transition(&mut inner, next);
        }
    }

    pub fn state(&self) -> State {
        self.inner.lock().expect("breaker lock").state
    }

    fn open_state(&self) -> State {
        State::Open { until: Instant::now() + self.spec.cool_down }
    }

    fn transition(&self, inner: &mut Inner, next: State) {
        let from = inner.state;
        inner.state = next;
        if from.name() != next.name() {
            BreakerTransition { provider: &self.provider, from: from.name(), to: next.name() }
                .emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cool_down: Duration) -> Breaker {
        Breaker::new(
            "p",
            BreakerSpec { consecutive_failures: 3, error_rate: 0.5, window: 10, cool_down },
        )
    }

    #[test]
    fn opens_after_consecutive_failures_then_probes_and_closes() {
        let b = breaker(Duration::from_millis(30));
        for _ in 0..3 {
            let p = b.try_acquire().expect("closed");
            b.record(p, true);
        }
        assert_eq!(b.state().name(), "open");
        assert!(b.try_acquire().is_err());
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.try_acquire().expect("half-open probe");
        assert!(b.try_acquire().is_err(), "only one probe at a time");
        b.record(probe, false);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = breaker(Duration::from_millis(10));
        for _ in 0..3 {
            b.record(b.try_acquire().expect("closed"), true);
        }
        std::thread::sleep(Duration::from_millis(15));
        let probe = b.try_acquire().expect("probe");
        b.record(probe, true);
        assert_eq!(b.state().name(), "open");
    }

    #[test]
    fn opens_on_error_rate_over_the_window() {
        let b = breaker(Duration::from_secs(60));
        // Alternating failures never reach 3 in a row, but half of a full window fails.
        for i in 0..10 {
            b.record(b.try_acquire().expect("closed"), i % 2 == 1);
        }
        assert_eq!(b.state().name(), "open");
    }
}
