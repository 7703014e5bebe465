//! The record of one provider call: the rate limiter and budget settled, the call's telemetry,
//! and its cost event in the record's log. A [`CallRecord`] is made before the call starts and
//! keeps the books whatever happens next: [`CallRecord::finish`] with the answer, or — when the
//! caller is cancelled while the call is in flight (a stage deadline) — its `Drop`, which logs the
//! call at the most it could cost (`outcome = cancelled`, `estimated`): the provider may have
//! answered and billed it, and a billed call must never be left out of the record's events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Answer, Endpoint, Gateway, Limiter, Op};
use crate::budget::Reservation;
use crate::call::{now_ms, CostEvent};
use crate::provider::{CallKey, ProviderError};
use crate::telemetry::{ModelCall, ModelCalled, ModelUsage};
use crate::tokens;

/// What a call used, as its cost event records it.
struct Usage {
    served: String,
    input: u64,
    output: u64,
    cached: u64,
    estimated: bool,
    response_id: Option<String>,
    outcome: &'static str,
    cost: u64,
    /// Joins the coordinates in the event id (see [`CallRecord::event`]).
    identity: String,
}

/// The books of one call to one model (`aliases`: the logical model requested and the one this
/// hop calls).
pub(super) struct CallRecord<'a> {
    pub gateway: &'a Gateway,
    pub endpoint: &'a Endpoint,
    pub aliases: (&'a str, &'a str),
    pub op: &'a Op<'a>,
    pub key: CallKey<'a>,
    pub limiter: Option<&'a Limiter>,
    /// Input tokens counted before the call (0 when nothing needed them).
    pub input_estimate: u64,
    pub max_output: u64,
    pub reservation: Option<Reservation>,
    /// The call's span: its waits and its answer.
    pub span: tracing::Span,
    /// Tokens taken from the rate limiter, once the call has started.
    started: Option<(Instant, u64)>,
    done: bool,
}

impl<'a> CallRecord<'a> {
    #[expect(clippy::too_many_arguments, reason = "one call's facts, gathered in one place")]
    pub fn new(
        gateway: &'a Gateway,
        endpoint: &'a Endpoint,
        aliases: (&'a str, &'a str),
        op: &'a Op<'a>,
        key: CallKey<'a>,
        limiter: Option<&'a Limiter>,
        input_estimate: u64,
        max_output: u64,
    ) -> Self {
        let span = ModelCall {
            operation: operation(op),
            provider: endpoint.kind,
            endpoint: &endpoint.name,
            model: endpoint.wire_model(&gateway.models[aliases.1].name),
            tenant: key.tenant,
            prompt_version: key.prompt_version,
            attempt: key.attempt,
        }
        .span();
        Self {
            span,
            gateway,
            endpoint,
            aliases,
            op,
            key,
            limiter,
            input_estimate,
            max_output,
            reservation: None,
            started: None,
            done: false,
        }
    }

    /// The call goes out now: from here on it may be billed.
    pub fn start(&mut self, limiter_tokens: u64) {
        self.started = Some((Instant::now(), limiter_tokens));
    }

    fn model(&self) -> &str {
        &self.gateway.models[self.aliases.1].name
    }

    /// Settles the call with its result; returns its cost event when the call is metered.
    pub fn finish(mut self, result: &Result<Answer, ProviderError>) -> Option<CostEvent> {
        self.done = true;
        let usage = self.usage_of(result);
        self.settle(usage)
    }

    fn usage_of(&self, result: &Result<Answer, ProviderError>) -> Usage {
        let (served, input, output, cached, estimated, response_id) = match result {
            Ok(Answer::Chat(c)) => (
                c.model.clone(),
                c.input_tokens,
                c.output_tokens,
                c.cached_tokens,
                c.tokens_estimated,
                c.response_id.clone(),
            ),
            Ok(Answer::Embed(e)) => {
                (e.model.clone(), e.input_tokens, 0, 0, e.tokens_estimated, e.response_id.clone())
            }
            Err(_) => (self.model().to_owned(), 0, 0, 0, false, None),
        };
        // Failed calls are not billed by the providers sluice speaks to: they cost nothing.
        let cost = if result.is_ok() { self.price().cost(input, cached, output) } else { 0 };
        // The response's identity joins the coordinates: a record processed twice at once (two
        // members during a rebalance, both missing the cache) makes two paid calls at the same
        // coordinates, and both must count. Redeliveries of one event keep its id.
        let identity = match (result, &response_id) {
            (Err(_), _) => String::new(),
            (Ok(_), Some(id)) => id.clone(),
            (Ok(_), None) => unique_identity(),
        };
        let outcome = result.as_ref().map_or_else(ProviderError::class, |_| "ok");
        Usage { served, input, output, cached, estimated, response_id, outcome, cost, identity }
    }

    /// A call cut off in flight: the most it could have cost — its input and every output token
    /// it asked for.
    fn usage_cancelled(&self) -> Usage {
        let input = if self.input_estimate > 0 {
            self.input_estimate
        } else {
            input_tokens(self.model(), self.op)
        };
        Usage {
            served: self.model().to_owned(),
            input,
            output: self.max_output,
            cached: 0,
            estimated: true,
            response_id: None,
            outcome: "cancelled",
            cost: self.price().cost(input, 0, self.max_output),
            identity: unique_identity(),
        }
    }

    fn price(&self) -> crate::config::Price {
        self.gateway.prices.models.get(self.aliases.1).copied().unwrap_or_default()
    }

    fn settle(&mut self, usage: Usage) -> Option<CostEvent> {
        let Some((started, limiter_tokens)) = self.started else {
            // Cancelled before the call went out: nothing was spent.
            if let (Some(budgets), Some(r)) = (&self.gateway.budgets, self.reservation.take()) {
                budgets.settle(r, 0);
            }
            return None;
        };
        if let Some(l) = self.limiter {
            l.settle(limiter_tokens, usage.input + usage.output);
        }
        let latency = started.elapsed();
        let usage_of_span = ModelUsage {
            response_model: &usage.served,
            response_id: usage.response_id.as_deref(),
            input_tokens: usage.input,
            output_tokens: usage.output,
            cost_micro_usd: usage.cost,
            outcome: usage.outcome,
        };
        ModelCall::finished(&self.span, &usage_of_span);
        ModelCalled {
            stage: self.key.stage,
            provider: &self.endpoint.name,
            model: self.model(),
            outcome: usage.outcome,
            latency,
            input_tokens: usage.input,
            output_tokens: usage.output,
            cost_micro_usd: usage.cost,
        }
        .emit();
        let event = self.key.log.map(|log| {
            let event = self.event(usage, latency);
            log.push(event.clone());
            event
        });
        if let (Some(budgets), Some(r)) = (&self.gateway.budgets, self.reservation.take()) {
            budgets.settle(r, event.as_ref().map_or(0, |e| e.cost_micro_usd.max(0) as u64));
        }
        event
    }

    /// The cost event of the call (only for a metered call: `key.log` is set).
    fn event(&self, usage: Usage, latency: Duration) -> CostEvent {
        let (key, log) = (&self.key, self.key.log.expect("only metered calls have events"));
        let call_index = log.next_call();
        let prices = &self.gateway.prices;
        CostEvent {
            event_id: log.event_id(key.attempt, call_index, &usage.identity),
            timestamp_ms: now_ms(),
            tenant: key.tenant.to_owned(),
            pipeline: log.pipeline.clone(),
            stage: log.stage.clone(),
            document_id: key.document_id.to_owned(),
            provider: self.endpoint.name.clone(),
            model_requested: self.aliases.0.to_owned(),
            model_served: usage.served,
            prompt_version: key.prompt_version.map(str::to_owned),
            input_tokens: usage.input as i64,
            output_tokens: usage.output as i64,
            cached_tokens: usage.cached as i64,
            estimated: usage.estimated,
            cost_micro_usd: i64::try_from(usage.cost).unwrap_or(i64::MAX),
            latency_ms: latency.as_millis() as i64,
            outcome: usage.outcome.to_owned(),
            trace_id: log.trace_id.clone(),
            operation: operation(self.op).to_owned(),
            cached: false,
            attempt: key.attempt as i32,
            call_index: call_index as i32,
            response_id: usage.response_id,
            price_set_on: (!prices.set_on.is_empty()).then(|| prices.set_on.clone()),
            budget: self.reservation.as_ref().and_then(|r| r.budget()).map(str::to_owned),
            purpose: key.purpose.map(str::to_owned),
        }
    }
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        if !self.done {
            let usage = self.usage_cancelled();
            self.settle(usage);
        }
    }
}

/// The call's operation, as cost events and spans name it.
pub(super) fn operation(op: &Op<'_>) -> &'static str {
    match op {
        Op::Chat(_) => "chat",
        Op::Embed(_) => "embeddings",
    }
}

/// The input tokens of a call, counted with tiktoken.
pub(super) fn input_tokens(model: &str, op: &Op<'_>) -> u64 {
    (match op {
        Op::Chat(r) => tokens::count(model, &r.system) + tokens::count(model, &r.user),
        Op::Embed(r) => r.inputs.iter().map(|t| tokens::count(model, t)).sum(),
    }) as u64
}

/// An identity unique to this process and call, for an answer without a provider id
/// (OpenAI-style embeddings, the simulated provider) or a call cut off before its answer.
fn unique_identity() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("local-{}-{n}", process_identity())
}

/// 128 random bits, drawn once per process: process ids repeat across containers (often 1) and
/// two replicas can start in the same millisecond, so neither may stand in for a process.
fn process_identity() -> &'static str {
    static PROCESS: OnceLock<String> = OnceLock::new();
    PROCESS.get_or_init(|| {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_identity_is_128_random_bits_not_a_pid() {
        let id = process_identity();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(process_identity(), id, "drawn once per process");
        let (a, b) = (unique_identity(), unique_identity());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("local-{id}-")));
    }
}
