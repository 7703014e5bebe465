//! What an exactly-once suite run left (`tests/exactly_once.rs`), as a read_committed reader and
//! the provider's ledger see it, and the checks on it: each result and each cost event seen once
//! (copies counted, never removed), nothing lost, every billed call metered once, and
//! `sluice cost report` equal to the cost events.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sluice::avro::Codec;
use sluice::kafka::registry_settings;
use sluice::metering::{decode_events, CostEvent};
use sluice::mock_provider::Ledger;

use super::billing::Billing;
use super::committed::Seen;
use super::crash::{is_empty, Scenario};
use super::exactly::Mode;
use super::Oracle;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

pub struct Figures {
    pub mode: Mode,
    pub docs: usize,
    pub oracle: Oracle,
    /// Copies of each cost event on the metering topic, by event id (the record key).
    pub metering: BTreeMap<String, usize>,
    /// The cost events read (every copy).
    pub events: Vec<CostEvent>,
    pub billing: Billing,
    /// `sluice cost report --by stage`, summed over its rows: (requests, failed, micro-USD).
    pub report: (u64, u64, u64),
    pub seconds: f64,
    /// Workers that exited by themselves, or not cleanly when stopped.
    pub exits: Vec<String>,
    /// Partitions the read_committed reader could not read to their end (see [`Seen::behind`]).
    pub behind: Vec<(String, i32, i64, i64)>,
}

impl Figures {
    pub async fn of(
        sc: &Scenario,
        mode: Mode,
        seen: &Seen,
        ledger: &Ledger,
        kills: &[std::time::Duration],
        seconds: f64,
    ) -> Self {
        let stage = &sc.t.stages[0];
        let ids = (0..sc.docs).map(|i| format!("d{i}"));
        let oracle =
            Oracle::new(ids, seen.keys(&stage.output), seen.keys(&stage.dead_letter_topic));
        let mut metering = BTreeMap::new();
        for key in seen.keys(&sc.t.metering_topic) {
            *metering.entry(key).or_insert(0) += 1;
        }
        let codec = Codec::connect(&registry_settings(&sc.t), &[]).await.expect("codec");
        let decoded = decode_events(&codec, seen.of(&sc.t.metering_topic)).await.expect("decode");
        assert_eq!(decoded.skipped.count, 0, "metering records that are not cost events");
        let billing = Billing::of(ledger, &decoded.events, kills);
        let report = cost_report(sc).await;
        Self {
            mode,
            docs: sc.docs,
            oracle,
            metering,
            events: decoded.events,
            billing,
            report,
            seconds,
            exits: Vec::new(),
            behind: seen.behind.clone(),
        }
    }

    pub fn duplicates(&self) -> usize {
        self.oracle.duplicates()
    }

    pub fn lost(&self) -> usize {
        self.oracle.missing().len()
    }

    /// Extra copies of cost events, by event id.
    pub fn metering_duplicates(&self) -> usize {
        self.metering.values().map(|c| c - 1).sum()
    }

    /// The cost events as `sluice cost report` should total them, duplicates by id removed:
    /// (requests, failed, micro-USD).
    pub fn events_total(&self) -> (u64, u64, u64) {
        let mut seen = BTreeSet::new();
        let unique = self.events.iter().filter(|e| seen.insert(e.event_id.as_str()));
        unique.fold((0, 0, 0), |(r, f, c), e| {
            let call = u64::from(!e.cached);
            let failed = u64::from(!e.cached && e.outcome != "ok");
            (r + call, f + failed, c + e.cost_micro_usd.max(0) as u64)
        })
    }

    /// One line for the log: what the run is, and its figures.
    pub fn line(&self, what: &str) -> String {
        format!(
            "{what} [{}]: {} documents, duplicates {} (most copies of one {}), lost {}; cost \
             events {} (duplicates {}); {}; cost report (requests, failed, micro-USD) {:?}, the \
             events {:?}; {:.1} s",
            self.mode.name(),
            self.docs,
            self.duplicates(),
            self.oracle.max_copies(),
            self.lost(),
            self.events.len(),
            self.metering_duplicates(),
            self.billing.summary(),
            self.report,
            self.events_total(),
            self.seconds,
        )
    }

    /// What holds in both modes: every document ended, nowhere it should not, exactly the
    /// empty ones dead-lettered.
    pub fn assert_nothing_lost(&self, what: &str) {
        assert!(
            self.exits.is_empty(),
            "{what}: a worker must ride out the faults and stop cleanly on SIGTERM: {:?}",
            self.exits
        );
        assert!(
            self.behind.is_empty(),
            "{what}: with every worker stopped, a read_committed reader still stops short of \
             these partitions' ends (topic, partition, position, end): an open transaction \
             hides records: {:?}",
            self.behind
        );
        assert_eq!(
            self.lost(),
            0,
            "{what}: documents that never ended: {:?}",
            self.oracle.missing()
        );
        self.oracle.check();
        let empty: BTreeSet<String> =
            (0..self.docs).filter(|i| is_empty(*i)).map(|i| format!("d{i}")).collect();
        assert_eq!(
            self.oracle.dead_lettered(),
            empty.iter().map(String::as_str).collect(),
            "{what}: exactly the empty documents are dead-lettered"
        );
    }

    /// Exactly once, as a read_committed reader sees it: one copy of every result and every
    /// cost event; every billed call metered once; the cost report equal to the events.
    pub fn assert_exactly_once(&self, what: &str) {
        self.assert_nothing_lost(what);
        assert_eq!(
            self.oracle.max_copies(),
            1,
            "{what}: a read_committed reader saw {} duplicate results (extra copies by id, first \
             20: {:?})",
            self.duplicates(),
            self.oracle.duplicated().into_iter().take(20).collect::<Vec<_>>()
        );
        let doubled: Vec<_> = self.metering.iter().filter(|(_, c)| **c > 1).take(20).collect();
        assert!(
            doubled.is_empty(),
            "{what}: {} duplicate cost events on the metering topic (event id, copies): {doubled:?}",
            self.metering_duplicates()
        );
        self.assert_billing(what);
    }

    /// Every billed call metered once (but those no one could meter), and `sluice cost report`
    /// equal to the cost events.
    pub fn assert_billing(&self, what: &str) {
        self.billing.assert_every_billed_call_metered_once(what);
        assert_eq!(
            self.report,
            self.events_total(),
            "{what}: `sluice cost report` (requests, failed, micro-USD) against the cost events \
             a read_committed reader sees"
        );
    }
}

/// `sluice cost report --by stage --format json`, summed over its rows.
async fn cost_report(sc: &Scenario) -> (u64, u64, u64) {
    let mut command = std::process::Command::new(BIN);
    command
        .args(["cost", "report", "--topology", sc.path.to_str().expect("utf-8")])
        .args(["--by", "stage", "--format", "json"])
        .env("KAFKA_BOOTSTRAP_SERVERS", &sc.bootstrap)
        .env("SCHEMA_REGISTRY_URL", &sc.t.schema_registry.url)
        .env("RUST_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || command.output().expect("run sluice"))
        .await
        .expect("report thread");
    assert!(out.status.success(), "cost report: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("the report is JSON");
    let field = |r: &Value, f: &str| r[f].as_u64().unwrap_or_else(|| panic!("{f} in {r}"));
    rows.iter().fold((0, 0, 0), |(a, b, c), r| {
        (a + field(r, "requests"), b + field(r, "failed"), c + field(r, "cost_micro_usd"))
    })
}
