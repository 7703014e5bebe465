//! What the metering topic says about one sampled record: what its own first processing paid
//! (not every event ever written for its document id), and whether the response cache should
//! answer it now.
//!
//! Cost events carry no input coordinates, so a record's own processing is found as: the stage's
//! events for its document id, stamped at or after the record's timestamp, of its trace when the
//! record carries a `traceparent`; of those, the first processing — from the earliest event up
//! to the next one that starts a processing again (attempt 1, call index 0).

use std::collections::HashMap;

use super::cost_sample::Sampled;
use crate::config::{CacheSpec, StageKindSpec, StageSpec};
use crate::metering::CostEvent;
use crate::stage::{CLASSIFY_BUILTIN_PROMPT as BUILTIN_PROMPT, JUDGE_PROMPT};

/// The stage's events by document id, each list in time order.
pub fn by_document<'a>(
    events: &'a [CostEvent],
    stage: &str,
) -> HashMap<&'a str, Vec<&'a CostEvent>> {
    let mut out: HashMap<&str, Vec<&CostEvent>> = HashMap::new();
    for e in events.iter().filter(|e| e.stage == stage) {
        out.entry(e.document_id.as_str()).or_default().push(e);
    }
    for list in out.values_mut() {
        list.sort_by_key(|e| (e.timestamp_ms, e.attempt, e.call_index));
    }
    out
}

/// What the record's own first processing paid (micro-USD), or `None` when no event of it is
/// on the topic (aged out, never metered, or no model call).
pub fn own_cost(events: Option<&Vec<&CostEvent>>, r: &Sampled) -> Option<u64> {
    let since = r.timestamp_ms.unwrap_or(i64::MIN);
    let mut mine = events?
        .iter()
        .filter(|e| e.timestamp_ms >= since)
        .filter(|e| r.trace_id.as_deref().is_none_or(|t| e.trace_id.as_deref() == Some(t)));
    let first = mine.next()?;
    let mut paid = if first.cached { 0 } else { first.cost_micro_usd.max(0) as u64 };
    for e in mine {
        if e.attempt <= 1 && e.call_index == 0 {
            break;
        }
        if !e.cached {
            paid += e.cost_micro_usd.max(0) as u64;
        }
    }
    Some(paid)
}

/// What one document of the stage cost, and whether its answer is in the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocCost {
    /// Paid calls (all attempts), micro-USD.
    pub paid_micro_usd: u64,
    /// When a paid call answered it with the current prompt version (ms), if one did.
    pub answered_ms: Option<i64>,
    /// A cache hit answered it with the current prompt version.
    pub hit: bool,
}

/// The prompt versions the stage uses now: an answer made with another version is not in the
/// cache under the current key. Every kind is named (no wildcard), so a new kind has to say which
/// prompts it calls models with; kinds without prompts (embeddings) answer an empty list.
pub fn current_prompts(spec: &StageSpec) -> Option<Vec<String>> {
    let prompts = match &spec.kind {
        StageKindSpec::Generate { prompt, ab, .. } => {
            std::iter::once(prompt.clone()).chain(ab.iter().map(|a| a.prompt.clone())).collect()
        }
        StageKindSpec::Classify { prompt, .. } => {
            vec![prompt.clone().unwrap_or_else(|| BUILTIN_PROMPT.to_owned())]
        }
        StageKindSpec::Review { judge, .. } => {
            judge.iter().map(|_| JUDGE_PROMPT.to_owned()).collect()
        }
        StageKindSpec::Embed { .. } | StageKindSpec::Retrieve { .. } => vec![],
    };
    Some(prompts)
}

/// Per document id, what the stage's (deduplicated) events say.
pub fn doc_costs(
    events: &[CostEvent],
    stage: &str,
    prompts: Option<&[String]>,
) -> HashMap<String, DocCost> {
    let mut out: HashMap<String, DocCost> = HashMap::new();
    for e in events.iter().filter(|e| e.stage == stage) {
        let d = out.entry(e.document_id.clone()).or_default();
        let current = match (&e.prompt_version, prompts) {
            (Some(v), Some(list)) => list.contains(v),
            _ => true,
        };
        if e.cached {
            d.hit |= current && e.outcome == "ok";
            continue;
        }
        d.paid_micro_usd += e.cost_micro_usd.max(0) as u64;
        if current && e.outcome == "ok" {
            d.answered_ms = d.answered_ms.max(Some(e.timestamp_ms));
        }
    }
    out
}

/// Whether the cache should still answer this document at `now_ms`.
pub fn in_cache(cache: Option<&CacheSpec>, d: &DocCost, now_ms: i64) -> bool {
    match cache {
        None => false,
        Some(CacheSpec::Embedded { .. }) => d.hit || d.answered_ms.is_some(),
        Some(CacheSpec::Redis { ttl, .. }) => {
            let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            d.answered_ms.is_some_and(|at| now_ms.saturating_sub(at) < ttl)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::current_prompts;

    #[test]
    fn every_kind_names_the_prompts_its_calls_carry() {
        let yaml = std::fs::read_to_string("topologies/support-rag.yaml").expect("shipped");
        let t = crate::config::compile(Path::new("topologies/support-rag.yaml"), &yaml).unwrap();
        let prompts = |name: &str| {
            let spec = t.stages.iter().find(|s| s.kind.name() == name).expect("the stage");
            current_prompts(spec).expect("known")
        };
        assert_eq!(prompts("classify"), ["classify@1"]);
        assert_eq!(prompts("generate"), ["answer@1", "answer@2"]);
        assert_eq!(prompts("review"), ["judge@builtin"], "the judge's calls carry its prompt");
        assert!(prompts("embed").is_empty() && prompts("retrieve").is_empty());
        let builtin = yaml.replace("      prompt: classify@1\n", "");
        let t = crate::config::compile(Path::new("topologies/support-rag.yaml"), &builtin).unwrap();
        let classify = t.stages.iter().find(|s| s.kind.name() == "classify").unwrap();
        assert_eq!(current_prompts(classify).unwrap(), ["classify@builtin"]);
    }
}
