//! What every mock call goes through before it is answered — the door (hold), auth, the
//! per-minute bucket, latency, injected faults — and the ledger entry it leaves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ledger::CallEntry;
use super::{Hold, LatencyDist, MockState};
use crate::call::stable_hash;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    OpenAi,
    Anthropic,
}

/// A uniform number in [0, 1) from the call sequence.
pub(super) fn unit(state: &MockState, salt: &[u8]) -> f64 {
    let n = state.seq.fetch_add(1, Ordering::Relaxed);
    (stable_hash(&[salt, &n.to_le_bytes()]) >> 11) as f64 / (1u64 << 53) as f64
}

fn latency(state: &MockState) -> Duration {
    let c = &state.config;
    let extra = match c.dist {
        LatencyDist::Fixed => 0.0,
        LatencyDist::Uniform => unit(state, b"lat") * c.jitter.as_secs_f64(),
        LatencyDist::Exponential => -(1.0 - unit(state, b"lat")).ln() * c.jitter.as_secs_f64(),
    };
    c.latency + Duration::from_secs_f64(extra)
}

pub(super) fn error_body(api: Api, status: u16, message: &str) -> Value {
    match api {
        Api::OpenAi => {
            json!({ "error": { "message": message, "type": "server_error", "code": status } })
        }
        Api::Anthropic => {
            json!({ "type": "error", "error": { "type": if status == 429 { "rate_limit_error" } else { "api_error" }, "message": message } })
        }
    }
}

pub(super) fn reply(status: u16, body: Value, wait: Option<Duration>) -> Response {
    let mut response =
        (StatusCode::from_u16(status).expect("valid status"), Json(body)).into_response();
    if let Some(w) = wait {
        let h = response.headers_mut();
        let secs = w.as_secs_f64().ceil().max(1.0) as u64;
        h.insert("retry-after", HeaderValue::from(secs));
        h.insert("retry-after-ms", HeaderValue::from(w.as_millis() as u64));
        let reset = HeaderValue::from_str(&format!("{}ms", w.as_millis())).expect("ascii");
        h.insert("x-ratelimit-reset-requests", reset);
    }
    response
}

impl MockState {
    pub(super) fn record(
        &self,
        api: &'static str,
        model: &str,
        status: u16,
        inputs: usize,
        tokens: (u64, u64),
        response_id: Option<String>,
    ) {
        let billed = (200..300).contains(&status);
        let price = self.config.prices.get(model).copied().unwrap_or_default();
        let entry = CallEntry {
            at_us: self.started.elapsed().as_micros() as u64,
            api,
            model: model.to_owned(),
            status,
            inputs,
            input_tokens: tokens.0,
            output_tokens: tokens.1,
            cost_micro_usd: if billed { price.cost(tokens.0, 0, tokens.1) } else { 0 },
            response_id,
        };
        self.ledger.lock().expect("ledger lock").record(entry);
    }

    /// Takes one request from the per-minute bucket, or says how long until one is free.
    fn admit(&self) -> Result<(), Duration> {
        let Some(rpm) = self.config.rpm else { return Ok(()) };
        let rate = f64::from(rpm) / 60.0;
        let capacity = rate.max(1.0);
        let mut b = self.bucket.lock().expect("bucket lock");
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(capacity);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.0) / rate))
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.config.api_key else { return true };
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        get("authorization") == Some(&format!("Bearer {key}"))
            || get("api-key") == Some(key)
            || get("x-api-key") == Some(key)
    }

    /// Waits while the door is held; `None` when this request waited and must be rejected.
    /// A request is counted in flight before it looks at the door, so once a hold is set and
    /// the count reaches zero, no request is past the door.
    async fn held(&self) -> Option<InFlight<'_>> {
        let mut rx = self.hold.subscribe();
        let counted = InFlight::new(&self.in_flight);
        if *rx.borrow_and_update() != Hold::Holding {
            return Some(counted);
        }
        drop(counted);
        let released = rx.wait_for(|h| *h != Hold::Holding).await.map(|h| *h);
        let reject = matches!(released, Ok(Hold::Released { reject: true }));
        (!reject).then(|| InFlight::new(&self.in_flight))
    }

    /// The checks every call goes through, in a real provider's order: the door, auth, rate
    /// limit, then (after the latency) injected faults. `Err` is the response to send; keep the
    /// `Ok` guard until the answer is recorded.
    pub(super) async fn gate(
        &self,
        api: Api,
        label: &'static str,
        model: &str,
        headers: &HeaderMap,
    ) -> Result<InFlight<'_>, Response> {
        let Some(in_flight) = self.held().await else {
            self.record(label, model, 503, 0, (0, 0), None);
            return Err(reply(503, error_body(api, 503, "request dropped while held"), None));
        };
        if !self.authorized(headers) {
            self.record(label, model, 401, 0, (0, 0), None);
            return Err(reply(401, error_body(api, 401, "invalid api key"), None));
        }
        if let Err(wait) = self.admit() {
            self.record(label, model, 429, 0, (0, 0), None);
            return Err(reply(
                429,
                error_body(api, 429, "rate limit: requests per minute"),
                Some(wait),
            ));
        }
        tokio::time::sleep(latency(self)).await;
        let forced = self.faults.lock().expect("faults lock").get(model).copied();
        if let Some(status) = forced {
            self.record(label, model, status, 0, (0, 0), None);
            let wait = (status == 429).then_some(self.config.retry_after);
            return Err(reply(status, error_body(api, status, "injected fault"), wait));
        }
        if unit(self, b"429") < self.config.rate_limit_rate {
            self.record(label, model, 429, 0, (0, 0), None);
            return Err(reply(
                429,
                error_body(api, 429, "injected rate limit"),
                Some(self.config.retry_after),
            ));
        }
        if unit(self, b"err") < self.config.error_rate {
            self.record(label, model, 503, 0, (0, 0), None);
            return Err(reply(503, error_body(api, 503, "injected server error"), None));
        }
        Ok(in_flight)
    }
}

/// One request counted in flight while this guard lives.
pub(super) struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
