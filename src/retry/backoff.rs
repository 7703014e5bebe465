//! Backoff timings: exponential backoff with jitter (backon) for a record's in-process attempts,
//! honouring a provider's "not before" instant; the capped backoff used while infrastructure
//! (broker, registry, budget ledger) is unavailable; and the short one for offset commits that
//! meet a rebalance in progress.

#![expect(clippy::disallowed_types, reason = "the one module allowed to build backoffs")]

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::RetryPolicy;

/// Delays between a record's in-process attempts.
pub struct AttemptBackoff {
    delays: backon::ExponentialBackoff,
}

impl AttemptBackoff {
    pub fn new(policy: &RetryPolicy) -> Self {
        let delays = ExponentialBuilder::default()
            .with_min_delay(policy.initial_backoff)
            .with_max_delay(policy.max_backoff)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        Self { delays }
    }

    /// The wait before the next attempt: the backoff, or `at_least` if that is longer (what is
    /// left of a provider's "not before").
    pub fn next_delay(&mut self, at_least: Duration) -> Duration {
        let backoff = self.delays.next().unwrap_or(Duration::from_secs(1));
        backoff.max(at_least)
    }
}

/// Time from now until `instant` (zero if it has passed or is absent).
pub fn until(instant: Option<SystemTime>) -> Duration {
    instant.and_then(|t| t.duration_since(SystemTime::now()).ok()).unwrap_or(Duration::ZERO)
}

/// Backoff while a dependency is down: 100 ms doubling to 5 s, with jitter, forever.
pub fn infrastructure_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Runs `op` (given the attempt number, from 1) until it succeeds, fails for good, or `attempts`
/// are spent, waiting between tries with the infrastructure backoff — at least as long as the
/// error asks. `retry_after` says whether an error is worth another try: `None` if not,
/// `Some(wait)` with the wait it asks for (zero if none). For work outside a record's attempt
/// loop, such as indexing a knowledge base.
pub async fn with_retries<T, E, F, Fut>(
    attempts: u32,
    mut op: F,
    retry_after: impl Fn(&E) -> Option<Duration>,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut waits = infrastructure_backoff();
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => match retry_after(&e).filter(|_| attempt < attempts) {
                Some(asked) => {
                    tokio::time::sleep(waits.next().unwrap_or_default().max(asked)).await;
                    attempt += 1;
                }
                None => return Err(e),
            },
        }
    }
}

/// Waits between offset-commit attempts that met a rebalance in progress: a few short tries,
/// since offsets not committed before a revocation completes are lost to this member.
pub fn commit_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(400))
        .with_max_times(3)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            ladder: vec![],
            max_inline_wait: Duration::from_secs(5),
            topic_prefix: "p".into(),
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = AttemptBackoff::new(&policy());
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay(Duration::ZERO)).collect();
        assert!(delays[0] >= Duration::from_millis(100));
        // Jitter adds up to one more min_delay on top of the capped value.
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(800)), "{delays:?}");
        assert!(delays[5] >= Duration::from_millis(400));
    }

    #[tokio::test]
    async fn with_retries_stops_at_success_a_permanent_error_or_the_last_attempt() {
        let retryable = |e: &&str| (*e == "busy").then_some(Duration::from_millis(1));
        let ok = with_retries(
            5,
            |n| async move {
                if n < 3 {
                    Err("busy")
                } else {
                    Ok(n)
                }
            },
            retryable,
        );
        assert_eq!(ok.await, Ok(3));
        let calls = std::cell::Cell::new(0);
        let permanent = with_retries(
            5,
            |_| {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("bad") }
            },
            retryable,
        );
        assert_eq!((permanent.await, calls.get()), (Err("bad"), 1));
        calls.set(0);
        let spent = with_retries(
            4,
            |_| {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("busy") }
            },
            retryable,
        );
        assert_eq!((spent.await, calls.get()), (Err("busy"), 4));
    }

    #[test]
    fn not_before_wins_over_a_shorter_backoff() {
        let mut b = AttemptBackoff::new(&policy());
        let d = b.next_delay(until(Some(SystemTime::now() + Duration::from_secs(3))));
        assert!(d > Duration::from_millis(2900) && d <= Duration::from_secs(3), "{d:?}");
    }
}
