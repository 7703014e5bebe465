//! Tenant budgets shared by every replica. Each process holds leases — money the ledger (see
//! [`ledger`]) granted it — per budget key (tenant, scope, window). A model call reserves its
//! estimated maximum cost from the local lease, claiming a new lease when the local balance runs
//! out, and settles to its actual cost afterwards. The ledger never grants more than the limit,
//! so spending exceeds it only by what calls cost beyond their estimate (see docs/ARCHITECTURE.md).
//! A ledger that cannot decide a claim makes the call wait briefly, never defers it a window.

mod book;
mod ledger;
#[cfg(test)]
mod tests;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use book::Decision;
pub use ledger::{Ledger, LedgerError};
pub use window::{window_end, window_of};

use crate::avro::Codec;
use crate::config::{BudgetRule, BudgetSpec, Topology};
use crate::provider::ProviderError;
use crate::telemetry::BudgetClaimFailed;

/// How soon a call whose budget claim got no decision is tried again.
pub const LEDGER_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a call may not be made now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The tenant's budget for this window is spent: wait for the next window.
    #[error("tenant '{tenant}' is over budget until the next window")]
    Exceeded {
        tenant: String,
        /// When the next budget window starts.
        until: SystemTime,
    },
    /// The ledger could not decide (broker or ledger reader unavailable): try again shortly.
    #[error("budget ledger unavailable: {reason}")]
    Unavailable { reason: String, retry_after: Duration },
}

impl From<BudgetError> for ProviderError {
    fn from(e: BudgetError) -> Self {
        match e {
            BudgetError::Exceeded { tenant, until } => Self::OverBudget { tenant, until },
            e @ BudgetError::Unavailable { retry_after, .. } => {
                Self::BudgetUnavailable { message: e.to_string(), retry_after }
            }
        }
    }
}

/// An id for this process in the ledger: random, so replicas never share one (a container's
/// pid is often 1, and two replicas may start in the same millisecond).
pub fn replica_id() -> String {
    let random = getrandom::u64().expect("the operating system's random source");
    format!("{}-{random:016x}", std::process::id())
}

/// Money set aside for one call; settle it with the call's actual cost.
#[derive(Debug)]
pub struct Reservation {
    key: Option<String>,
    amount: u64,
}

impl Reservation {
    /// The budget (tenant|scope|window) charged; `None` for a tenant without a budget.
    pub fn budget(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

pub struct Budgets {
    spec: BudgetSpec,
    pipeline: String,
    ledger: Ledger,
    /// Unspent lease per budget key (negative: spent beyond the lease, pending a new claim).
    balances: Mutex<HashMap<String, i64>>,
    /// One claim at a time per key from this process.
    claiming: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Budgets {
    /// Opens the ledger (reading it to the end) for a topology with `budgets:`.
    pub async fn open(
        t: &Topology,
        codec: Arc<Codec>,
        replica: String,
    ) -> Result<Option<Self>, LedgerError> {
        let Some(spec) = t.budgets.clone() else { return Ok(None) };
        let ledger = Ledger::open(&t.kafka, &spec.ledger_topic, codec, replica).await?;
        Ok(Some(Self {
            spec,
            pipeline: t.pipeline.clone(),
            ledger,
            balances: Mutex::new(HashMap::new()),
            claiming: Mutex::new(HashMap::new()),
        }))
    }

    fn rule(&self, tenant: &str) -> Option<&BudgetRule> {
        self.spec.tenants.get(tenant).or_else(|| self.spec.tenants.get("*"))
    }

    /// The cheaper model to try when a tenant is over budget, if the topology names one.
    pub fn route_to(&self) -> Option<&str> {
        self.spec.route_to.as_deref()
    }

    /// Sets aside `estimate` micro-dollars of `tenant`'s budget for a call by `stage`.
    pub async fn reserve(
        &self,
        tenant: &str,
        stage: &str,
        estimate: u64,
    ) -> Result<Reservation, BudgetError> {
        let Some(rule) = self.rule(tenant).copied() else {
            return Ok(Reservation { key: None, amount: 0 });
        };
        let (window, until) = window_of(rule.window, SystemTime::now());
        let scope = if rule.per_stage {
            format!("{}/{stage}", self.pipeline)
        } else {
            self.pipeline.clone()
        };
        let key = format!("{tenant}|{scope}|{window}");
        let lease = self.spec.lease_micro_usd.unwrap_or((rule.limit_micro_usd / 20).max(1));
        let exceeded = || BudgetError::Exceeded { tenant: tenant.to_owned(), until };
        let lock = self.claim_lock(&key);
        loop {
            if let Some(r) = self.take(&key, estimate) {
                return Ok(r);
            }
            let _claiming = lock.lock().await;
            if let Some(r) = self.take(&key, estimate) {
                return Ok(r);
            }
            let balance =
                self.balances.lock().expect("budget lock").get(&key).copied().unwrap_or(0);
            // What the lease must add for this call (a negative balance is paid back first).
            let need = (estimate as i64 - balance).max(1) as u64;
            let remaining = rule.limit_micro_usd.saturating_sub(self.ledger.granted(&key));
            if remaining < need {
                return Err(exceeded());
            }
            let amount = need.max(lease).min(remaining);
            match self.ledger.claim(&key, tenant, amount, rule.limit_micro_usd).await {
                Ok(Decision::Granted) => {
                    *self.balances.lock().expect("budget lock").entry(key.clone()).or_default() +=
                        amount as i64;
                }
                Ok(Decision::Denied) => {} // another replica got there first: look again
                // This replica's clock is far behind the ledger's: its window is over.
                Ok(Decision::Closed) => return Err(exceeded()),
                Err(e) => {
                    // Without the ledger no spending can be allowed; the call waits a moment.
                    let reason = e.to_string();
                    BudgetClaimFailed { topic: self.ledger.topic(), error: &reason }.emit();
                    return Err(BudgetError::Unavailable {
                        reason,
                        retry_after: LEDGER_RETRY_AFTER,
                    });
                }
            }
        }
    }

    /// The lock that keeps this process to one claim at a time under `key`. A key seen for the
    /// first time means a new window: the state of windows that ended is dropped then.
    fn claim_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut claiming = self.claiming.lock().expect("budget lock");
        if !claiming.contains_key(key) {
            let now = SystemTime::now();
            let ended = |k: &String| {
                let window = k.rsplit_once('|').map_or(k.as_str(), |(_, w)| w);
                window_end(window).is_some_and(|end| end <= now)
            };
            claiming.retain(|k, _| !ended(k));
            self.balances.lock().expect("budget lock").retain(|k, _| !ended(k));
        }
        claiming.entry(key.to_owned()).or_default().clone()
    }

    /// Budget keys this process holds leases or locks for.
    pub fn keys_held(&self) -> usize {
        let claiming = self.claiming.lock().expect("budget lock");
        let balances = self.balances.lock().expect("budget lock");
        claiming.keys().chain(balances.keys()).collect::<std::collections::HashSet<_>>().len()
    }

    fn take(&self, key: &str, estimate: u64) -> Option<Reservation> {
        let mut balances = self.balances.lock().expect("budget lock");
        let balance = balances.entry(key.to_owned()).or_default();
        (*balance >= estimate as i64).then(|| {
            *balance -= estimate as i64;
            Reservation { key: Some(key.to_owned()), amount: estimate }
        })
    }

    /// Returns what a call did not use of its reservation (or charges what it used beyond it).
    pub fn settle(&self, reservation: Reservation, actual: u64) {
        let Some(key) = reservation.key else { return };
        let mut balances = self.balances.lock().expect("budget lock");
        *balances.entry(key).or_default() += reservation.amount as i64 - actual as i64;
    }
}
