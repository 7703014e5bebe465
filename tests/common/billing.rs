//! The provider's ledger against the metering topic, call by call (by the response id the mock
//! provider puts in each answer and the cost event carries): which billed calls have a cost event,
//! which events bill nothing, and which billed calls no event can name — answered just as their
//! worker was SIGKILLed (the answer never reached it), or cancelled in flight and metered at
//! their estimate (`outcome = cancelled`, no response id).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice::metering::CostEvent;
use sluice::mock_provider::Ledger;

/// How long before a SIGKILL a billed answer may still be on its way to the worker, or its cost
/// event not yet acknowledged: such a call cannot be metered by anyone. (A worker that joined a
/// few seconds before it was killed, on 2 busy cores, left 15 such calls in one run.)
pub const KILL_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct Billing {
    /// Billed calls (2xx) in the ledger.
    pub billed: usize,
    pub billed_micro_usd: u64,
    /// Billed calls with a cost event (`ok`, not cached) naming their response id.
    pub metered: usize,
    /// Events with `outcome = cancelled` (estimated, no response id).
    pub cancelled: usize,
    /// Billed calls without an event, answered within [`KILL_WINDOW`] before a SIGKILL.
    pub at_kills: usize,
    /// Billed calls without an event, neither at a kill nor covered by a cancelled event.
    pub unexplained: Vec<String>,
    /// Response ids of `ok` events the ledger never billed.
    pub phantom: Vec<String>,
    /// Response ids with more than one `ok` event.
    pub doubled: Vec<(String, usize)>,
    /// Distinct events by outcome.
    pub outcomes: BTreeMap<String, usize>,
}

impl Billing {
    /// `kills`: when each SIGKILL of a worker happened, as time since the provider started (the
    /// ledger's clock, `at_us`).
    pub fn of(ledger: &Ledger, events: &[CostEvent], kills: &[Duration]) -> Self {
        // Copies of one event (by id) are the metering topic's duplicates, counted apart; here
        // two distinct events for one call are what counts.
        let mut seen = BTreeSet::new();
        let events: Vec<&CostEvent> =
            events.iter().filter(|e| seen.insert(e.event_id.as_str())).collect();
        let mut outcomes = BTreeMap::new();
        for e in &events {
            *outcomes.entry(e.outcome.clone()).or_insert(0) += 1;
        }
        let mut ok: BTreeMap<&str, usize> = BTreeMap::new();
        for e in events.iter().filter(|e| !e.cached && e.outcome == "ok") {
            let id = e.response_id.as_deref().unwrap_or("(none)");
            *ok.entry(id).or_insert(0) += 1;
        }
        let cancelled = events.iter().filter(|e| e.outcome == "cancelled").count();
        let billed: Vec<_> =
            ledger.calls.iter().filter(|c| (200..300).contains(&c.status)).collect();
        let ids: BTreeSet<&str> = billed.iter().filter_map(|c| c.response_id.as_deref()).collect();
        let window = KILL_WINDOW.as_micros() as u64;
        let near_kill = |at_us: u64| {
            kills.iter().any(|k| {
                let k = k.as_micros() as u64;
                at_us + window >= k && at_us <= k + 100_000
            })
        };
        let mut b = Self {
            billed: billed.len(),
            billed_micro_usd: ledger.billed_micro_usd(),
            cancelled,
            outcomes,
            ..Self::default()
        };
        let mut loose = Vec::new();
        for c in &billed {
            let id = c.response_id.clone().unwrap_or_default();
            if ok.contains_key(id.as_str()) {
                b.metered += 1;
            } else if near_kill(c.at_us) {
                b.at_kills += 1;
            } else {
                loose.push(id);
            }
        }
        // A call cancelled in flight has no response id: each cancelled event may stand for one.
        b.unexplained = loose.into_iter().skip(cancelled).collect();
        b.phantom = ok.keys().filter(|id| !ids.contains(*id)).map(|id| id.to_string()).collect();
        b.doubled =
            ok.iter().filter(|(_, n)| **n > 1).map(|(id, n)| (id.to_string(), *n)).collect();
        b
    }

    pub fn summary(&self) -> String {
        format!(
            "billed calls {} ({} micro-USD): metered {}, answered at a SIGKILL {}, cancelled \
             events {}, unexplained {}, phantom {}, metered twice {}; events by outcome {:?}",
            self.billed,
            self.billed_micro_usd,
            self.metered,
            self.at_kills,
            self.cancelled,
            self.unexplained.len(),
            self.phantom.len(),
            self.doubled.len(),
            self.outcomes
        )
    }

    /// Every billed call has its cost event once, unless no one could meter it; no event bills
    /// what the provider did not.
    pub fn assert_every_billed_call_metered_once(&self, what: &str) {
        assert!(
            self.unexplained.is_empty(),
            "{what}: billed calls with no cost event, not at a SIGKILL and not cancelled \
             (response ids, first 10): {:?}; {}",
            &self.unexplained[..self.unexplained.len().min(10)],
            self.summary()
        );
        assert!(
            self.phantom.is_empty(),
            "{what}: cost events of unbilled calls: {:?}",
            self.phantom
        );
        assert!(
            self.doubled.is_empty(),
            "{what}: billed calls metered more than once (response id, events): {:?}",
            self.doubled
        );
    }
}
