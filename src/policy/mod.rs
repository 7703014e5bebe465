//! The policy plane every stage calls models through: a [`Gateway`] built once per process from
//! the topology. For each call it walks the model's fallback chain; per hop it asks the
//! endpoint's circuit breaker, waits for the rate limits of that (provider, model), calls with
//! the provider's timeout, settles the token reservation and reports the outcome to the breaker.
//! It does not retry: retries (and Retry-After) belong to the runner's one retry module.

mod breaker;
pub mod cache;
mod limiter;
mod metered;
pub mod prompts;
mod record;
pub mod router;
pub mod semantic;
mod semantic_call;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

pub use breaker::{Breaker, State as BreakerState};
pub use cache::{CacheError, ResponseCache};
pub use limiter::Limiter;
pub use router::RouteInput;
pub use semantic_call::{Provenance, SemanticAsk, SEMANTIC_HIT, SEMANTIC_LOOKUP};

use crate::budget::Budgets;
use crate::call::CostEvent;
use crate::config::{fallback_chain, ModelSpec, PriceTable, ProviderSpec, RateLimit, Topology};
use crate::provider::{
    CallKey, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Provider, ProviderBuildError,
    ProviderError,
};
use crate::telemetry::{self, FallbackTaken};
use record::CallRecord;

/// Why the gateway cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("provider '{name}'")]
    Provider {
        name: String,
        #[source]
        source: ProviderBuildError,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// One provider endpoint with its breaker and limiters.
struct Endpoint {
    name: String,
    provider: Provider,
    breaker: Breaker,
    timeout: Duration,
    limiters: HashMap<String, Arc<Limiter>>,
    default_limit: Option<Arc<Limiter>>,
    /// The kind of provider, as the GenAI conventions' `gen_ai.provider.name`.
    kind: &'static str,
    model_names: BTreeMap<String, String>,
}

impl Endpoint {
    /// The name the provider's API knows `model` by (its `model_names` entry, if any).
    fn wire_model<'m>(&'m self, model: &'m str) -> &'m str {
        self.model_names.get(model).map_or(model, String::as_str)
    }

    fn limiter(&self, model: &str) -> Option<&Limiter> {
        self.limiters.get(model).or(self.default_limit.as_ref()).map(Arc::as_ref)
    }
}

/// A call's result with where it was served.
#[derive(Debug, Clone)]
pub struct Served<T> {
    pub value: T,
    /// The logical model routing chose.
    pub requested: String,
    /// The logical model that answered (differs after a fallback).
    pub served: String,
    pub provider: String,
    /// The provider's model name that answered.
    pub model_name: String,
    /// Whether the answer came from the model or from a cache, and which.
    pub provenance: Provenance,
}

pub(crate) enum Op<'a> {
    Chat(&'a ChatRequest),
    Embed(&'a EmbedRequest),
}

pub(crate) enum Answer {
    Chat(ChatResponse),
    Embed(EmbedResponse),
}

pub struct Gateway {
    models: BTreeMap<String, ModelSpec>,
    chains: HashMap<String, Vec<String>>,
    endpoints: HashMap<String, Endpoint>,
    prices: PriceTable,
    cache: Option<ResponseCache>,
    budgets: Option<Arc<Budgets>>,
    /// The semantic cache's entries; `None` when no stage has one (or in tools and tests that
    /// leave it out: their stages then skip semantic lookups).
    semantic: Option<Arc<semantic::SemanticStore>>,
}

impl Gateway {
    /// Builds every provider of the topology (reading API keys); errors name the provider.
    pub fn new(topology: &Topology) -> Result<Self, GatewayError> {
        let mut endpoints = HashMap::new();
        for (name, config) in &topology.providers {
            let provider = Provider::from_config(name, config)
                .map_err(|source| GatewayError::Provider { name: name.clone(), source })?;
            let limiter = |l: &RateLimit| Arc::new(Limiter::new(l, name));
            let limiters: HashMap<String, Arc<Limiter>> = config
                .limits
                .iter()
                .filter(|(m, _)| m.as_str() != "*")
                .map(|(m, l)| (m.clone(), limiter(l)))
                .collect();
            let (kind, model_names) = match &config.spec {
                ProviderSpec::Simulated(_) => ("simulated", BTreeMap::new()),
                ProviderSpec::OpenAi(h) => ("openai", h.model_names.clone()),
                ProviderSpec::Anthropic(h) => ("anthropic", h.model_names.clone()),
            };
            endpoints.insert(
                name.clone(),
                Endpoint {
                    name: name.clone(),
                    provider,
                    breaker: Breaker::new(name, config.breaker),
                    timeout: config.timeout,
                    limiters,
                    default_limit: config.limits.get("*").map(limiter),
                    kind,
                    model_names,
                },
            );
        }
        let chains =
            topology.models.keys().map(|m| (m.clone(), fallback_chain(topology, m))).collect();
        let cache = topology.cache.as_ref().map(ResponseCache::open).transpose()?;
        Ok(Self {
            models: topology.models.clone(),
            chains,
            endpoints,
            prices: topology.prices.clone(),
            cache,
            budgets: None,
            semantic: None,
        })
    }

    /// Enforces tenant budgets on metered calls.
    pub fn with_budgets(mut self, budgets: Option<Arc<Budgets>>) -> Self {
        self.budgets = budgets;
        self
    }

    pub fn model(&self, alias: &str) -> Option<&ModelSpec> {
        self.models.get(alias)
    }

    /// Breaker state of a provider, for tests and diagnostics.
    pub fn breaker_state(&self, provider: &str) -> Option<BreakerState> {
        self.endpoints.get(provider).map(|e| e.breaker.state())
    }

    /// Walks the fallback chain; on success also returns the serving call's cost event.
    async fn call(
        &self,
        alias: &str,
        op: &Op<'_>,
        key: CallKey<'_>,
    ) -> Result<(Served<()>, Answer, Option<CostEvent>), ProviderError> {
        let chain = self.chains.get(alias).ok_or_else(|| {
            ProviderError::Rejected(format!("model '{alias}' is not in the topology"))
        })?;
        let mut failures: Vec<ProviderError> = Vec::new();
        let mut event = None;
        for (i, hop) in chain.iter().enumerate() {
            let spec = &self.models[hop];
            let endpoint = &self.endpoints[&spec.provider];
            let result = match endpoint.breaker.try_acquire() {
                Err(wait) => Err(ProviderError::Unavailable {
                    message: format!("{}: circuit breaker open", endpoint.name),
                    retry_after: Some(wait),
                }),
                Ok(permit) => {
                    let (r, e) = self.hop(endpoint, (alias, hop), op, key).await;
                    let endpoint_failed = matches!(r, Err(ProviderError::Unavailable { .. }));
                    endpoint.breaker.record(permit, endpoint_failed);
                    event = e;
                    r
                }
            };
            match result {
                Ok(answer) => {
                    let served = Served {
                        value: (),
                        requested: alias.to_owned(),
                        served: hop.clone(),
                        provider: spec.provider.clone(),
                        model_name: spec.name.clone(),
                        provenance: Provenance::Model,
                    };
                    return Ok((served, answer, event));
                }
                // The ledger could not decide: every model draws on the same budget, so no
                // fallback; the record retries shortly.
                Err(e @ ProviderError::BudgetUnavailable { .. }) => return Err(e),
                // A budget is the tenant's, whichever model: no fallback, but maybe a cheaper route.
                Err(e @ ProviderError::OverBudget { .. }) => {
                    let cheaper = self.budgets.as_ref().and_then(|b| b.route_to());
                    return match cheaper.filter(|c| *c != alias && self.chains.contains_key(*c)) {
                        Some(c) => Box::pin(self.call(c, op, key)).await,
                        None => Err(e),
                    };
                }
                Err(e) if e.is_retryable() => {
                    if let Some(next) = chain.get(i + 1) {
                        FallbackTaken {
                            provider: &spec.provider,
                            model: &spec.name,
                            next,
                            error: &e.to_string(),
                        }
                        .emit();
                    }
                    failures.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(combine(failures))
    }

    /// One call to one model: limits, timeout, settlement, telemetry, its cost event.
    /// `aliases` are the logical model requested and the one this hop calls.
    async fn hop(
        &self,
        endpoint: &Endpoint,
        aliases: (&str, &str),
        op: &Op<'_>,
        key: CallKey<'_>,
    ) -> (Result<Answer, ProviderError>, Option<CostEvent>) {
        let model = self.models[aliases.1].name.as_str();
        let limiter = endpoint.limiter(model);
        let budgets = self.budgets.as_ref().filter(|_| key.log.is_some());
        // Input tokens (tiktoken) only when a token limit or a budget needs them: counting costs
        // more than the rest of this path.
        let input_estimate = if budgets.is_some() || limiter.is_some_and(Limiter::counts_tokens) {
            record::input_tokens(model, op)
        } else {
            0
        };
        let max_output = match op {
            Op::Chat(r) => u64::from(r.max_tokens),
            Op::Embed(_) => 0,
        };
        // From here on the books are kept even if this future is dropped (a stage deadline).
        let mut record =
            CallRecord::new(self, endpoint, aliases, op, key, limiter, input_estimate, max_output);
        if let Some(budgets) = budgets {
            let price = self.prices.models.get(aliases.1).copied().unwrap_or_default();
            let max_cost = price.cost(input_estimate, 0, max_output);
            let wait = telemetry::wait_span(&record.span, "budget");
            match budgets.reserve(key.tenant, key.stage, max_cost).instrument(wait).await {
                Ok(r) => record.reservation = Some(r),
                Err(e) => {
                    return (Err(e.into()), None);
                }
            }
        }
        let reserved = match limiter {
            Some(l) => {
                let wait = telemetry::wait_span(&record.span, "rate_limit");
                l.acquire(input_estimate + max_output, model).instrument(wait).await
            }
            None => 0,
        };
        record.start(reserved);
        let call = async {
            match op {
                Op::Chat(r) => {
                    let req = ChatRequest { model: model.to_owned(), ..(*r).clone() };
                    endpoint.provider.chat(&req, key).await.map(Answer::Chat)
                }
                Op::Embed(r) => {
                    let req = EmbedRequest { model: model.to_owned(), inputs: r.inputs.clone() };
                    endpoint.provider.embed(&req, key).await.map(Answer::Embed)
                }
            }
        };
        let result = match tokio::time::timeout(endpoint.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::unavailable(format!(
                "{}: no answer within {:?}",
                endpoint.name, endpoint.timeout
            ))),
        };
        let event = record.finish(&result);
        (result, event)
    }
}

impl Served<()> {
    fn with<T>(self, value: T) -> Served<T> {
        Served {
            value,
            requested: self.requested,
            served: self.served,
            provider: self.provider,
            model_name: self.model_name,
            provenance: self.provenance,
        }
    }
}

/// Every model of the chain failed: report the last failure, due when the earliest of them may
/// be tried again (no due time if any failure gave none).
fn combine(failures: Vec<ProviderError>) -> ProviderError {
    let wait = failures
        .iter()
        .map(ProviderError::retry_after)
        .try_fold(Duration::MAX, |acc, w| w.map(|w| acc.min(w)));
    let messages: Vec<String> = failures.iter().map(ToString::to_string).collect();
    let message = messages.join("; then ");
    match failures.last() {
        Some(ProviderError::RateLimited { .. }) => {
            ProviderError::RateLimited { message, retry_after: wait }
        }
        _ => ProviderError::Unavailable { message, retry_after: wait },
    }
}
