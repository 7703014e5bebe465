//! `sluice cost report`: cost events grouped by tenant, stage, model or template, duplicates
//! removed by event id.

use std::collections::{BTreeMap, HashSet};

use super::CostEvent;

/// What to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Tenant,
    Stage,
    Model,
    Template,
}

impl GroupBy {
    fn key(self, e: &CostEvent) -> String {
        match self {
            Self::Tenant => e.tenant.clone(),
            Self::Stage => e.stage.clone(),
            Self::Model => format!("{}/{}", e.provider, e.model_served),
            Self::Template => e.prompt_version.clone().unwrap_or_else(|| "-".into()),
        }
    }
}

/// One group's totals. Requests, tokens and latency count provider calls only; cache hits are
/// counted apart and cost nothing.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Row {
    pub group: String,
    pub requests: u64,
    pub failed: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micro_usd: u64,
    pub latency_p50_ms: u64,
    pub latency_p95_ms: u64,
    /// First and last event in the group (ms since the epoch).
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Removes duplicates by id, keeping the first occurrence.
pub fn dedup(events: impl IntoIterator<Item = CostEvent>) -> Vec<CostEvent> {
    let mut seen = HashSet::new();
    events.into_iter().filter(|e| seen.insert(e.event_id.clone())).collect()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Groups deduplicated events.
pub fn summarize(events: &[CostEvent], by: GroupBy) -> Vec<Row> {
    let mut groups: BTreeMap<String, (Row, Vec<u64>)> = BTreeMap::new();
    for e in events {
        let key = by.key(e);
        let (row, latencies) = groups.entry(key.clone()).or_insert_with(|| {
            (Row { group: key, first_ms: e.timestamp_ms, ..Row::default() }, Vec::new())
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
        .map(|(mut row, mut latencies)| {
            latencies.sort_unstable();
            row.latency_p50_ms = percentile(&latencies, 0.5);
            row.latency_p95_ms = percentile(&latencies, 0.95);
            row
        })
        .collect()
}

/// Micro-dollars as dollars with six decimals, exactly.
pub fn usd(micro: u64) -> String {
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, tenant: &str, cost: i64, latency: i64, cached: bool) -> CostEvent {
        CostEvent {
            event_id: id.into(),
            timestamp_ms: 1,
            tenant: tenant.into(),
            pipeline: "p".into(),
            stage: "s".into(),
            document_id: "d".into(),
            provider: "m".into(),
            model_requested: "x".into(),
            model_served: "x".into(),
            prompt_version: Some("answer@1".into()),
            input_tokens: 10,
            output_tokens: 5,
            cached_tokens: 0,
            estimated: false,
            cost_micro_usd: cost,
            latency_ms: latency,
            outcome: "ok".into(),
            trace_id: None,
            operation: "chat".into(),
            cached,
            attempt: 1,
            call_index: 0,
            response_id: None,
            price_set_on: None,
            budget: None,
        }
    }

    #[test]
    fn duplicates_count_once_and_cache_hits_cost_nothing() {
        let events = dedup(vec![
            event("a", "acme", 1_500_000, 10, false),
            event("a", "acme", 1_500_000, 10, false),
            event("b", "acme", 250, 30, false),
            event("c", "acme", 0, 0, true),
            event("d", "globex", 7, 20, false),
        ]);
        let rows = summarize(&events, GroupBy::Tenant);
        assert_eq!(rows.len(), 2);
        let acme = &rows[0];
        assert_eq!((acme.requests, acme.cache_hits, acme.input_tokens), (2, 1, 20));
        assert_eq!(usd(acme.cost_micro_usd), "1.500250");
        assert_eq!((acme.latency_p50_ms, acme.latency_p95_ms), (30, 30));
        assert_eq!(rows[1].group, "globex");
    }
}
