//! `sluice cost report`: cost events grouped by one or more of tenant, stage, model and prompt
//! template, duplicates removed by event id, with exact latency percentiles per group. The time
//! window is [`report_window`](super::report_window), the percentiles
//! [`report_latency`](super::report_latency), the table and CSV [`report_format`](super::report_format).

use std::collections::{BTreeMap, HashSet};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::report_latency::Latency;
use super::CostEvent;

/// What to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Tenant,
    Stage,
    /// `provider/model`, the model that served the call.
    Model,
    /// The prompt template and its version (`answer@2`); `-` for calls without one.
    Template,
}

impl GroupBy {
    /// The key's name: its `--by` value, CSV column and JSON field.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Stage => "stage",
            Self::Model => "model",
            Self::Template => "template",
        }
    }

    fn key(self, e: &CostEvent) -> String {
        match self {
            Self::Tenant => e.tenant.clone(),
            Self::Stage => e.stage.clone(),
            Self::Model => format!("{}/{}", e.provider, e.model_served),
            Self::Template => e.prompt_version.clone().unwrap_or_else(|| "-".into()),
        }
    }
}

/// A group's key: one value per group-by key, in the order they were asked for. In JSON it is
/// `group` (the values joined by commas) and one field per key (`"template": "answer@2"`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupKey(pub Vec<(GroupBy, String)>);

impl GroupKey {
    /// The values joined by commas, as the `--by` keys are.
    pub fn joined(&self) -> String {
        self.0.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(",")
    }

    pub fn value(&self, by: GroupBy) -> Option<&str> {
        self.0.iter().find(|(b, _)| *b == by).map(|(_, v)| v.as_str())
    }
}

impl Serialize for GroupKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len() + 1))?;
        map.serialize_entry("group", &self.joined())?;
        for (by, value) in &self.0 {
            map.serialize_entry(by.name(), value)?;
        }
        map.end()
    }
}

/// One group's totals. Requests, failures, tokens and latency count model calls only: a cache
/// hit is not a model call, so it is counted apart, costs nothing and has no latency.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub key: GroupKey,
    pub requests: u64,
    pub failed: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micro_usd: u64,
    /// Nearest-rank percentiles of the model calls' latency (failed calls included); `null`
    /// when the group made no model call.
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    /// First and last event in the group, cache hits included (ms since the epoch).
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Removes duplicates by id, keeping the first occurrence.
pub fn dedup(events: impl IntoIterator<Item = CostEvent>) -> Vec<CostEvent> {
    let mut seen = HashSet::new();
    events.into_iter().filter(|e| seen.insert(e.event_id.clone())).collect()
}

/// Groups deduplicated events by the keys in `by` (in that order), rows sorted by key.
pub fn summarize(events: &[CostEvent], by: &[GroupBy]) -> Vec<Row> {
    let mut groups: BTreeMap<Vec<String>, (Row, Vec<u64>)> = BTreeMap::new();
    for e in events {
        let values: Vec<String> = by.iter().map(|b| b.key(e)).collect();
        let (row, latencies) = groups.entry(values.clone()).or_insert_with(|| {
            let key = GroupKey(by.iter().copied().zip(values).collect());
            let first =
                Row { key, first_ms: e.timestamp_ms, last_ms: e.timestamp_ms, ..Row::default() };
            (first, Vec::new())
        });
        row.first_ms = row.first_ms.min(e.timestamp_ms);
        row.last_ms = row.last_ms.max(e.timestamp_ms);
        row.cost_micro_usd += e.cost_micro_usd.max(0) as u64;
        if e.cached {
            row.cache_hits += 1;
            continue;
        }
        row.requests += 1;
        if e.outcome != "ok" {
            row.failed += 1;
        }
        row.input_tokens += e.input_tokens.max(0) as u64;
        row.output_tokens += e.output_tokens.max(0) as u64;
        latencies.push(e.latency_ms.max(0) as u64);
    }
    groups
        .into_values()
        .map(|(row, latencies)| {
            let l = Latency::of(latencies);
            Row {
                latency_p50_ms: l.p50_ms,
                latency_p95_ms: l.p95_ms,
                latency_p99_ms: l.p99_ms,
                ..row
            }
        })
        .collect()
}

/// Micro-dollars as dollars with six decimals, exactly.
pub fn usd(micro: u64) -> String {
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
