//! The process's health, as `/healthz` (liveness) and `/readyz` (readiness) answer it.
//!
//! One process-wide [`Health`] ([`health()`]) is kept up to date by the runner's existing events
//! (their `emit()` calls in here, so the runner knows nothing of it), keyed by stage name, and by
//! the reachability probes (`sluice::kafka::watch_reachability`).
//!
//! **Live** (`/healthz` 200) while no stage of the process has stopped on a fatal error
//! ([`super::WorkerStopped`]: bad credentials, a fenced or fatally failed producer, a refused
//! authorization). The HTTP server answering at all shows the runtime is alive. A stage that
//! stopped cleanly (shutdown) does not make the process unlive: it is draining.
//!
//! **Ready** (`/readyz` 200) when all of these hold, otherwise 503 naming each failed check:
//! - at least one stage runs in the process, and **every** stage has *joined its group*: its
//!   consumer subscribed ([`super::StageRunning`]) and the group's rebalance has completed for
//!   it at least once since (an assignment callback, [`super::Rebalanced`] `Assigned`, with any
//!   number of partitions). Zero partitions after a completed rebalance is ready: the member is
//!   a standby beyond the partition count, and treating it as unready would stall a rolling
//!   update whose new pods get partitions only once old pods leave. A revocation keeps the
//!   stage ready (the rest of that rebalance, its assignment, is pending); a *lost* assignment
//!   (session timeout, fenced member) makes it unready until it is assigned again;
//! - no stage has stopped, on a fatal error or otherwise (a stopping process takes no work);
//! - the broker answered the last metadata request of the probe;
//! - the schema registry answered the last request of the probe, and no record has waited on
//!   it since ([`super::RegistryUnavailable`] marks it unreachable until the next successful
//!   probe);
//! - before a probe has answered once, its check fails ("not checked yet").
//!
//! A ready answer lists each stage with the partitions assigned to it, over its input, retry and
//! deferred topics.
//!
//! Producer fencing: sluice's producers are idempotent, not transactional; a fenced or fatally
//! failed producer surfaces as a fatal delivery error, which stops the worker
//! ([`super::WorkerStopped`]) and so fails both endpoints.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// What a rebalance did to this member.
#[derive(Debug, Clone, Copy)]
pub enum RebalanceKind {
    Assigned,
    Revoked,
    /// The assignment was lost (session timeout, fenced): nothing was waited for.
    Lost,
}

impl RebalanceKind {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Assigned => "assigned",
            Self::Revoked => "revoked",
            Self::Lost => "lost",
        }
    }
}

/// What the probes and events learned; see the module doc for what each check means.
#[derive(Default)]
pub struct Health {
    stages: Mutex<BTreeMap<String, StageHealth>>,
    broker: Mutex<Reach>,
    registry: Mutex<Reach>,
}

#[derive(Default)]
struct StageHealth {
    /// A rebalance completed for this member since it subscribed (or since it lost its
    /// assignment).
    joined: bool,
    /// The assignment was lost; cleared by the next assignment.
    lost: bool,
    partitions: usize,
    stopped: bool,
    fatal: bool,
}

#[derive(Default)]
enum Reach {
    #[default]
    Unchecked,
    Reachable,
    Unreachable(String),
}

impl Reach {
    fn failure(&self, what: &str) -> Option<String> {
        match self {
            Self::Unchecked => Some(format!("{what}: not checked yet")),
            Self::Reachable => None,
            Self::Unreachable(why) => Some(format!("{what}: unreachable: {why}")),
        }
    }
}

/// The answer to one of the two questions: the failed checks (none when healthy) and, for a
/// healthy readiness answer, a line per stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub failures: Vec<String>,
    pub details: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The plain-text body: `ok` or `not ready`/`not live`, then one line per check.
    pub fn body(&self, failed: &str) -> String {
        let (head, lines) =
            if self.ok() { ("ok", &self.details) } else { (failed, &self.failures) };
        let mut out = String::from(head);
        for line in lines {
            out.push_str("\n- ");
            out.push_str(line);
        }
        out.push('\n');
        out
    }
}

/// The process-wide health the events update.
pub fn health() -> &'static Health {
    static HEALTH: OnceLock<Health> = OnceLock::new();
    HEALTH.get_or_init(Health::default)
}

impl Health {
    fn stage<R>(&self, stage: &str, f: impl FnOnce(&mut StageHealth) -> R) -> R {
        let mut stages = self.stages.lock().expect("health lock");
        f(stages.entry(stage.to_owned()).or_default())
    }

    /// The stage subscribed to its topics: it waits for its first assignment. A stage of the
    /// same name that ran before in this process is forgotten.
    pub fn stage_running(&self, stage: &str) {
        self.stages.lock().expect("health lock").insert(stage.to_owned(), StageHealth::default());
    }

    pub fn rebalanced(&self, stage: &str, kind: RebalanceKind, partitions: usize) {
        self.stage(stage, |s| match kind {
            RebalanceKind::Assigned => {
                s.joined = true;
                s.lost = false;
                s.partitions += partitions;
            }
            RebalanceKind::Revoked => s.partitions = s.partitions.saturating_sub(partitions),
            RebalanceKind::Lost => {
                s.partitions = s.partitions.saturating_sub(partitions);
                s.joined = false;
                s.lost = true;
            }
        });
    }

    /// A worker of the stage stopped on a fatal error.
    pub fn worker_stopped(&self, stage: &str) {
        self.stage(stage, |s| s.fatal = true);
    }

    /// The stage's runner ended (after a shutdown or a fatal error).
    pub fn stage_stopped(&self, stage: &str) {
        self.stage(stage, |s| s.stopped = true);
    }

    /// The outcome of a broker probe.
    pub fn broker_checked(&self, outcome: Result<(), String>) {
        *self.broker.lock().expect("health lock") =
            outcome.map_or_else(Reach::Unreachable, |()| Reach::Reachable);
    }

    /// The outcome of a registry probe.
    pub fn registry_checked(&self, outcome: Result<(), String>) {
        *self.registry.lock().expect("health lock") =
            outcome.map_or_else(Reach::Unreachable, |()| Reach::Reachable);
    }

    /// `/healthz`: no stage stopped on a fatal error.
    pub fn liveness(&self) -> Verdict {
        let stages = self.stages.lock().expect("health lock");
        let failures = stages
            .iter()
            .filter(|(_, s)| s.fatal)
            .map(|(name, _)| format!("stage {name}: stopped on a fatal error (see the log)"))
            .collect();
        Verdict { failures, details: Vec::new() }
    }

    /// `/readyz`: see the module doc.
    pub fn readiness(&self) -> Verdict {
        let mut failures = Vec::new();
        let mut details = Vec::new();
        let stages = self.stages.lock().expect("health lock");
        if stages.is_empty() {
            failures.push("no stage running yet".to_owned());
        }
        for (name, s) in stages.iter() {
            let failure = if s.fatal {
                Some("stopped on a fatal error (see the log)")
            } else if s.stopped {
                Some("stopped")
            } else if s.lost {
                Some("its assignment was lost; rejoining the group")
            } else if !s.joined {
                Some("waiting for its first partition assignment")
            } else {
                None
            };
            match failure {
                Some(why) => failures.push(format!("stage {name}: {why}")),
                None => details.push(format!("stage {name}: {} partition(s)", s.partitions)),
            }
        }
        drop(stages);
        failures.extend(self.broker.lock().expect("health lock").failure("broker"));
        failures.extend(self.registry.lock().expect("health lock").failure("schema registry"));
        Verdict { failures, details }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reachable() -> Health {
        let h = Health::default();
        h.broker_checked(Ok(()));
        h.registry_checked(Ok(()));
        h
    }

    fn says(v: &Verdict, text: &str) -> bool {
        v.failures.iter().any(|f| f.contains(text))
    }

    #[test]
    fn a_process_is_ready_only_once_every_stage_joined_its_group() {
        let h = reachable();
        assert!(says(&h.readiness(), "no stage running yet"));
        h.stage_running("a");
        h.stage_running("b");
        assert!(says(&h.readiness(), "stage a: waiting for its first partition assignment"));
        h.rebalanced("a", RebalanceKind::Assigned, 3);
        let v = h.readiness();
        assert!(says(&v, "stage b: waiting"), "{v:?}");
        assert!(!says(&v, "stage a"), "{v:?}");
        // A standby member beyond the partition count has joined too.
        h.rebalanced("b", RebalanceKind::Assigned, 0);
        let v = h.readiness();
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.details, ["stage a: 3 partition(s)", "stage b: 0 partition(s)"]);
    }

    #[test]
    fn a_revocation_keeps_the_stage_ready_and_a_lost_assignment_does_not() {
        let h = reachable();
        h.stage_running("a");
        h.rebalanced("a", RebalanceKind::Assigned, 2);
        h.rebalanced("a", RebalanceKind::Revoked, 2);
        assert!(h.readiness().ok(), "the assignment that ends the rebalance is pending");
        h.rebalanced("a", RebalanceKind::Assigned, 1);
        h.rebalanced("a", RebalanceKind::Lost, 1);
        assert!(says(&h.readiness(), "stage a: its assignment was lost"));
        h.rebalanced("a", RebalanceKind::Assigned, 0);
        assert!(h.readiness().ok());
    }

    #[test]
    fn a_fatal_stop_fails_both_and_a_clean_stop_only_readiness() {
        let h = reachable();
        h.stage_running("a");
        h.stage_running("b");
        h.rebalanced("a", RebalanceKind::Assigned, 1);
        h.rebalanced("b", RebalanceKind::Assigned, 1);
        h.stage_stopped("b");
        assert!(h.liveness().ok());
        assert!(says(&h.readiness(), "stage b: stopped"));
        h.worker_stopped("a");
        h.stage_stopped("a");
        let live = h.liveness();
        assert_eq!(live.failures, ["stage a: stopped on a fatal error (see the log)"]);
        assert!(live.body("not live").starts_with("not live\n- stage a"));
        assert!(says(&h.readiness(), "stage a: stopped on a fatal error"));
        // A new run of the stage in the same process starts afresh.
        h.stage_running("a");
        assert!(h.liveness().ok());
    }

    #[test]
    fn an_unchecked_or_failed_probe_fails_readiness_until_it_answers() {
        let h = Health::default();
        h.stage_running("a");
        h.rebalanced("a", RebalanceKind::Assigned, 1);
        let v = h.readiness();
        assert!(says(&v, "broker: not checked yet") && says(&v, "schema registry: not checked"));
        h.broker_checked(Ok(()));
        h.registry_checked(Err("HTTP 503".into()));
        let v = h.readiness();
        assert_eq!(v.failures, ["schema registry: unreachable: HTTP 503"]);
        h.registry_checked(Ok(()));
        h.broker_checked(Err("timed out".into()));
        assert_eq!(h.readiness().failures, ["broker: unreachable: timed out"]);
        h.broker_checked(Ok(()));
        assert_eq!(h.readiness().body("not ready"), "ok\n- stage a: 1 partition(s)\n");
    }
}
