//! Client-side rate limits per provider and model: requests with governor (GCRA), tokens with a
//! bucket that can go into debt, so a call reserves its estimate up front and settles to what the
//! provider reports afterwards. governor cannot hand capacity back, which settling needs. Every
//! acquisition's wait is observed ([`LimiterWaited`]).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::RateLimit;
use crate::telemetry::LimiterWaited;

/// The limits of one (provider, model).
#[derive(Debug)]
pub struct Limiter {
    /// The provider's name, for the wait metric.
    provider: String,
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<TokenBucket>,
}

impl Limiter {
    pub fn new(spec: &RateLimit, provider: &str) -> Self {
        let requests = spec.requests_per_second.map(|rps| {
            let period = Duration::from_secs_f64(1.0 / rps);
            let burst = NonZeroU32::new(spec.burst.max(1)).expect("max(1) is non-zero");
            let quota = Quota::with_period(period)
                .expect("a positive rate gives a non-zero period")
                .allow_burst(burst);
            RateLimiter::direct(quota)
        });
        let tokens = spec.tokens_per_minute.map(TokenBucket::per_minute);
        Self { provider: provider.to_owned(), requests, tokens }
    }

    /// Whether this limiter needs a token estimate.
    pub fn counts_tokens(&self) -> bool {
        self.tokens.is_some()
    }

    /// Waits until one request and `estimated_tokens` may go to `model`; returns what was
    /// reserved.
    pub async fn acquire(&self, estimated_tokens: u64, model: &str) -> u64 {
        let started = Instant::now();
        if let Some(r) = &self.requests {
            r.until_ready().await;
        }
        let reserved = match &self.tokens {
            Some(t) => {
                t.reserve(estimated_tokens).await;
                estimated_tokens
            }
            None => 0,
        };
        LimiterWaited { provider: &self.provider, model, waited: started.elapsed() }.emit();
        reserved
    }

    /// Corrects a reservation to the tokens the call actually used.
    pub fn settle(&self, reserved: u64, actual: u64) {
        if let Some(t) = &self.tokens {
            t.adjust(reserved as f64 - actual as f64);
        }
    }
}

/// Tokens refill continuously at `rate` per second up to `capacity` (one minute's worth).
/// The balance may go negative after settling: later calls then wait for the debt to clear.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn per_minute(tokens: u64) -> Self {
        let capacity = tokens as f64;
        Self { capacity, rate: capacity / 60.0, state: Mutex::new((capacity, Instant::now())) }
    }

    fn refill(&self, state: &mut (f64, Instant)) {
        let now = Instant::now();
        state.0 =
            (state.0 + now.duration_since(state.1).as_secs_f64() * self.rate).min(self.capacity);
        state.1 = now;
    }

    /// Takes `n` tokens, waiting until the balance covers them (a request larger than the whole
    /// bucket waits for a full bucket, then goes into debt).
    pub async fn reserve(&self, n: u64) {
        let need = (n as f64).min(self.capacity);
        loop {
            let wait = {
                let mut state = self.state.lock().expect("token bucket lock");
                self.refill(&mut state);
                if state.0 >= need {
                    state.0 -= n as f64;
                    return;
                }
                Duration::from_secs_f64((need - state.0) / self.rate)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    pub fn adjust(&self, delta: f64) {
        let mut state = self.state.lock().expect("token bucket lock");
        self.refill(&mut state);
        state.0 = (state.0 + delta).min(self.capacity);
    }

    #[cfg(test)]
    fn balance(&self) -> f64 {
        let mut state = self.state.lock().expect("token bucket lock");
        self.refill(&mut state);
        state.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settling_returns_or_charges_the_difference() {
        let b = TokenBucket::per_minute(6000);
        b.reserve(1000).await;
        assert!((b.balance() - 5000.0).abs() < 5.0);
        b.adjust(1000.0 - 400.0); // used 400 of the 1000 reserved
        assert!((b.balance() - 5600.0).abs() < 5.0);
        b.adjust(-7000.0); // a call that used far more than estimated: debt
        assert!(b.balance() < 0.0);
    }

    #[tokio::test]
    async fn a_debt_makes_the_next_call_wait() {
        let b = TokenBucket::per_minute(60_000); // 1000 tokens a second
        b.reserve(60_000).await;
        b.adjust(-200.0);
        let started = Instant::now();
        b.reserve(100).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "waited only {waited:?}");
    }
}
