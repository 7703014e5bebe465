//! The ledger's book: what every replica computes from the claims it has read, in log order.
//! Decisions depend on the log alone — the claims before, and the log's own clock (the latest
//! claim time written to it) — never on when a replica started or what its clock says, so all
//! replicas decide every claim the same way.
//!
//! Past windows are pruned from memory: a window closes [`CLOSED_AFTER`] after its end by the
//! log's clock. A claim for a closed window is refused whether or not its total is still held, so
//! pruning never changes a decision.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::window::window_end;

/// How long after its end (by the log's clock) a window still accepts claims: generous, so that
/// replicas whose clocks differ by less never see a claim of theirs refused as late.
pub const CLOSED_AFTER: Duration = Duration::from_secs(3600);

/// One claim as written to the ledger topic (schema `BudgetClaim`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    /// `tenant|scope|window`.
    pub budget_key: String,
    pub tenant: String,
    pub replica: String,
    pub seq: i64,
    pub amount_micro_usd: i64,
    pub limit_micro_usd: i64,
    pub at_ms: i64,
}

/// What the ledger decided on a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The amount fits under the limit after the claims granted before it.
    Granted,
    /// It does not fit: the window's budget is spent.
    Denied,
    /// The claim came after its window closed (a replica's clock far behind the others').
    Closed,
}

#[derive(Debug, Default)]
pub struct Book {
    /// Micro-dollars granted per budget key, across all replicas, for windows still open.
    granted: HashMap<String, u64>,
    /// Decisions on this replica's claims, by sequence number, until the claimer takes them.
    own: HashMap<i64, Decision>,
    /// Records applied so far (the ledger offset to read next).
    applied: i64,
    /// The log's clock: the latest `at_ms` of the claims applied.
    clock_ms: i64,
    /// Records skipped because they are not a readable claim.
    skipped: u64,
}

/// The window part of a budget key (`tenant|scope|window`).
fn window_of_key(key: &str) -> &str {
    key.rsplit_once('|').map_or(key, |(_, window)| window)
}

/// Whether the window of `key` is closed at `clock_ms`; keys of no known window never close.
fn closed(key: &str, clock_ms: i64) -> bool {
    window_end(window_of_key(key))
        .and_then(|end| end.duration_since(UNIX_EPOCH).ok())
        .map(|end| end.as_millis() as i64 + CLOSED_AFTER.as_millis() as i64)
        .is_some_and(|closes_at| closes_at <= clock_ms)
}

impl Book {
    /// Applies the record at `offset`: a claim, or `None` for a record that can never be read
    /// as one (skipped, counted). Returns the decision on a claim.
    pub fn apply(&mut self, offset: i64, claim: Option<&Claim>, replica: &str) -> Option<Decision> {
        self.applied = self.applied.max(offset + 1);
        let Some(c) = claim else {
            self.skipped += 1;
            return None;
        };
        self.clock_ms = self.clock_ms.max(c.at_ms);
        let decision = if closed(&c.budget_key, self.clock_ms) {
            Decision::Closed
        } else {
            let total = self.granted.get(&c.budget_key).copied().unwrap_or(0);
            let amount = c.amount_micro_usd.max(0) as u64;
            if total.saturating_add(amount) <= c.limit_micro_usd.max(0) as u64 {
                if !self.granted.contains_key(&c.budget_key) {
                    // A new window appeared: a good moment to forget those that closed.
                    self.prune();
                }
                self.granted.insert(c.budget_key.clone(), total + amount);
                Decision::Granted
            } else {
                Decision::Denied
            }
        };
        if c.replica == replica {
            self.own.insert(c.seq, decision);
        }
        Some(decision)
    }

    fn prune(&mut self) {
        let clock = self.clock_ms;
        self.granted.retain(|key, _| !closed(key, clock));
    }

    /// Micro-dollars granted under `key` so far, by every replica (0 once its window closed).
    pub fn granted(&self, key: &str) -> u64 {
        if closed(key, self.clock_ms) {
            return 0;
        }
        self.granted.get(key).copied().unwrap_or(0)
    }

    /// The decision on this replica's claim `seq`, once read (taken: asked for once).
    pub fn take_own(&mut self, seq: i64) -> Option<Decision> {
        self.own.remove(&seq)
    }

    /// Forgets a claim whose claimer stopped waiting for it.
    pub fn forget_own(&mut self, seq: i64) {
        self.own.remove(&seq);
    }

    /// The offset to read next.
    pub fn applied(&self) -> i64 {
        self.applied
    }

    /// Records skipped as unreadable.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Budget windows held in memory.
    pub fn windows(&self) -> usize {
        self.granted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1000;

    /// A claim under the 10-second window `n` of tenant `t`, written at `at_ms`.
    fn claim(replica: &str, seq: i64, n: i64, amount: i64, at_ms: i64) -> Claim {
        Claim {
            budget_key: format!("t|p|every-10000ms-{n}"),
            tenant: "t".into(),
            replica: replica.into(),
            seq,
            amount_micro_usd: amount,
            limit_micro_usd: 100,
            at_ms,
        }
    }

    fn replay(claims: &[Option<Claim>], replica: &str) -> (Book, Vec<Option<Decision>>) {
        let mut book = Book::default();
        let decisions = claims
            .iter()
            .enumerate()
            .map(|(offset, c)| book.apply(offset as i64, c.as_ref(), replica))
            .collect();
        (book, decisions)
    }

    #[test]
    fn claims_are_decided_in_log_order_against_the_limit() {
        let at = 5 * SEC;
        let log = [claim("a", 0, 0, 60, at), claim("a", 1, 0, 50, at), claim("a", 2, 0, 40, at)];
        let (book, decisions) = replay(&log.map(Some), "a");
        use Decision::*;
        assert_eq!(decisions, [Some(Granted), Some(Denied), Some(Granted)]);
        assert_eq!(book.granted("t|p|every-10000ms-0"), 100);
        assert_eq!(book.applied(), 3);
        // The same claims in another order decide differently: the order is the log's.
        let log = [claim("a", 0, 0, 50, at), claim("a", 1, 0, 60, at), claim("a", 2, 0, 40, at)];
        let (book, decisions) = replay(&log.map(Some), "a");
        assert_eq!(decisions, [Some(Granted), Some(Denied), Some(Granted)]);
        assert_eq!(book.granted("t|p|every-10000ms-0"), 90);
    }

    #[test]
    fn two_replicas_reading_one_log_agree_and_each_learns_its_own_decisions() {
        let at = 5 * SEC;
        let log: Vec<Option<Claim>> = [
            claim("a", 0, 0, 40, at),
            claim("b", 0, 0, 40, at),
            claim("a", 1, 0, 40, at),
            claim("b", 1, 0, 20, at),
        ]
        .into_iter()
        .map(Some)
        .collect();
        let (mut a, _) = replay(&log, "a");
        let (mut b, _) = replay(&log, "b");
        assert_eq!(a.granted("t|p|every-10000ms-0"), 100);
        assert_eq!(b.granted("t|p|every-10000ms-0"), 100);
        // Same sequence numbers on both replicas: each gets its own claims' decisions only.
        assert_eq!(a.take_own(0), Some(Decision::Granted));
        assert_eq!(a.take_own(1), Some(Decision::Denied));
        assert_eq!(b.take_own(0), Some(Decision::Granted));
        assert_eq!(b.take_own(1), Some(Decision::Granted));
        assert_eq!(a.take_own(1), None, "a decision is taken once");
    }

    #[test]
    fn a_malformed_record_is_skipped_counted_and_passed() {
        let at = 5 * SEC;
        let log = [Some(claim("a", 0, 0, 60, at)), None, Some(claim("a", 1, 0, 40, at))];
        let (book, decisions) = replay(&log, "a");
        assert_eq!(decisions[1], None);
        assert_eq!(decisions[2], Some(Decision::Granted));
        assert_eq!((book.skipped(), book.applied()), (1, 3));
        assert_eq!(book.granted("t|p|every-10000ms-0"), 100);
    }

    #[test]
    fn a_new_window_starts_from_zero_and_closed_windows_are_pruned() {
        let mut book = Book::default();
        let spend_window = |book: &mut Book, n: i64, offset: i64| {
            let at = n * 10 * SEC + SEC;
            assert_eq!(
                book.apply(offset, Some(&claim("a", offset, n, 100, at)), "a"),
                Some(Decision::Granted),
                "window {n} starts with its whole budget"
            );
            assert_eq!(
                book.apply(offset + 1, Some(&claim("a", offset + 1, n, 1, at)), "a"),
                Some(Decision::Denied)
            );
        };
        spend_window(&mut book, 0, 0);
        spend_window(&mut book, 1, 2);
        assert_eq!(book.windows(), 2, "windows within the grace period are kept");
        // Far enough past window 0's end (10 s + CLOSED_AFTER), a claim of a new window prunes
        // every closed window from memory.
        let later = 10 * SEC + CLOSED_AFTER.as_millis() as i64;
        let n = later / (10 * SEC) + 1;
        spend_window(&mut book, n, 4);
        assert_eq!(book.windows(), 1, "only the current window is held");
        assert_eq!(book.granted("t|p|every-10000ms-0"), 0);
        // A claim for a pruned window is refused, not granted from a forgotten zero: a replica
        // that never pruned would decide it the same way.
        let late = claim("a", 9, 0, 1, later);
        assert_eq!(book.apply(6, Some(&late), "a"), Some(Decision::Closed));
        assert_eq!(book.windows(), 1);
    }

    #[test]
    fn memory_stays_bounded_over_many_windows() {
        let mut book = Book::default();
        let windows = 2 * CLOSED_AFTER.as_millis() as i64 / (10 * SEC);
        for n in 0..windows {
            book.apply(n, Some(&claim("a", n, n, 10, n * 10 * SEC)), "reader");
        }
        let open = CLOSED_AFTER.as_millis() as i64 / (10 * SEC) + 2;
        assert!(book.windows() as i64 <= open, "{} windows held", book.windows());
    }
}
