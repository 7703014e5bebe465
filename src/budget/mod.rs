//! Tenant budgets shared by every replica. Each process holds leases — money the ledger (see
//! [`ledger`]) granted it — per budget key (tenant, scope, window). A model call reserves its
//! estimated maximum cost from the local lease, claiming a new lease when the local balance runs
//! out, and settles to its actual cost afterwards. The ledger never grants more than the limit,
//! so spending exceeds it only by what calls cost beyond their estimate (see docs/ARCHITECTURE.md).

mod ledger;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use ledger::{Ledger, LedgerError};
pub use window::window_of;

use crate::avro::Codec;
use crate::config::{BudgetRule, BudgetSpec, Topology};

/// Why a call may not be made now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub tenant: String,
    /// When the next budget window starts.
    pub until: SystemTime,
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
    ) -> Result<Reservation, Exceeded> {
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
        let exceeded = || Exceeded { tenant: tenant.to_owned(), until };
        let lock =
            self.claiming.lock().expect("budget lock").entry(key.clone()).or_default().clone();
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
                Ok(true) => {
                    *self.balances.lock().expect("budget lock").entry(key.clone()).or_default() +=
                        amount as i64;
                }
                Ok(false) => {} // another replica got there first: look again
                Err(e) => {
                    // Without the ledger no spending can be allowed; the record waits.
                    tracing::warn!(error = %e, "budget claim failed");
                    return Err(exceeded());
                }
            }
        }
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
