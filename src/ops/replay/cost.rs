//! What a replay will cost: the records of the replayed window are read (their document ids),
//! and the stage's cost events on the metering topic say what each of them cost the first time
//! (duplicates removed by event id). With a response cache, a record whose answer is on record
//! is served from the cache and costs nothing — if the cache still holds it, if the stage's
//! prompt version is the one that answered, and for Redis if the entry is younger than its TTL.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::message::Message;
use serde::Serialize;

use super::plan::Plan;
use crate::avro::{Codec, Envelope};
use crate::call::now_ms;
use crate::config::{CacheSpec, StageKindSpec, StageSpec, Topology};
use crate::kafka::reader::{read_ranges, Range};
use crate::kafka::registry_settings;
use crate::metering::report::dedup;
use crate::metering::{read_events, CostEvent, ReadError};

/// At most this many records of the window are read; a larger window is extrapolated.
pub const MAX_SCANNED: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error(transparent)]
    Metering(#[from] ReadError),
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// What re-processing the plan's records is expected to cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CostEstimate {
    /// Records the plan re-processes, and how many of them were read.
    pub records: u64,
    pub scanned: u64,
    /// Of those read, records whose document has cost events of this stage.
    pub metered: u64,
    /// Average paid cost of a read record over the window (micro-USD).
    pub per_record_micro_usd: u64,
    /// Without a cache: every record pays what it paid the first time.
    pub without_cache_micro_usd: u64,
    /// Whether the topology has a response cache.
    pub cache: bool,
    /// Of those read, records whose answer the cache should still hold (free).
    pub cached: u64,
    /// With the cache: only records it does not answer pay.
    pub with_cache_micro_usd: u64,
    /// The assumptions the estimate rests on, for the operator to read.
    pub notes: Vec<String>,
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

/// The prompt versions the stage uses now, when known: an answer made with another version is
/// not in the cache under the current key.
pub fn current_prompts(spec: &StageSpec) -> Option<Vec<String>> {
    match &spec.kind {
        StageKindSpec::Generate { prompt, ab, .. } => Some(
            std::iter::once(prompt.clone()).chain(ab.iter().map(|a| a.prompt.clone())).collect(),
        ),
        StageKindSpec::Classify { prompt: Some(p), .. } => Some(vec![p.clone()]),
        _ => None,
    }
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

/// The estimate from the document ids of the window's records (`scanned` of `records`).
pub fn estimate(
    t: &Topology,
    spec: &StageSpec,
    events: &[CostEvent],
    window_ids: &[String],
    records: u64,
    now_ms: i64,
) -> CostEstimate {
    let prompts = current_prompts(spec);
    let costs = doc_costs(events, &spec.name, prompts.as_deref());
    let cache = t.cache.as_ref();
    let mut e = CostEstimate {
        records,
        scanned: window_ids.len() as u64,
        cache: cache.is_some(),
        ..Default::default()
    };
    let (mut paid, mut uncached) = (0u64, 0u64);
    for id in window_ids {
        let Some(d) = costs.get(id) else { continue };
        e.metered += 1;
        paid += d.paid_micro_usd;
        if in_cache(cache, d, now_ms) {
            e.cached += 1;
        } else {
            uncached += d.paid_micro_usd;
        }
    }
    let scale = |x: u64| {
        if e.scanned == 0 {
            0
        } else {
            (x as u128 * records as u128 / e.scanned as u128) as u64
        }
    };
    e.per_record_micro_usd = paid.checked_div(e.scanned).unwrap_or(0);
    e.without_cache_micro_usd = scale(paid);
    e.with_cache_micro_usd =
        if cache.is_some() { scale(uncached) } else { e.without_cache_micro_usd };
    e.cached = scale(e.cached);
    e.notes = notes(&e, cache, prompts.is_some());
    e
}

fn notes(e: &CostEstimate, cache: Option<&CacheSpec>, prompts_known: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if e.scanned < e.records {
        notes.push(format!(
            "read {} of the {} records; the rest extrapolated",
            e.scanned, e.records
        ));
    }
    if e.metered < e.scanned {
        notes.push(format!(
            "{} read records have no cost event of this stage (no model call, or older than the \
             metering topic's retention): counted as free",
            e.scanned - e.metered
        ));
    }
    match cache {
        None => notes.push("no response cache: every record pays again".into()),
        Some(c) => {
            let kind = match c {
                CacheSpec::Embedded { path } => format!("on disk at {}", path.display()),
                CacheSpec::Redis { ttl, .. } => {
                    format!("in Redis, entries younger than {}", humantime::format_duration(*ttl))
                }
            };
            notes.push(format!(
                "assumes the response cache ({kind}) still holds the answers on record; a record \
                 answered before is counted as free"
            ));
            if prompts_known {
                notes.push("answers made with another prompt version are not cached under the current one: counted as paid".into());
            } else {
                notes.push(
                    "assumes the prompt versions and models are the ones that answered".into(),
                );
            }
        }
    }
    notes
}

/// Reads the document ids of the plan's re-processed records (at most [`MAX_SCANNED`], spread
/// over the partitions) and estimates what processing them again costs.
pub async fn estimate_plan(
    t: &Topology,
    spec: &StageSpec,
    plan: &Plan,
) -> Result<CostEstimate, CostError> {
    let events = dedup(read_events(t).await?);
    let raw = read_windows(t, plan).await?;
    let codec = Codec::connect(&registry_settings(t), &[]).await?;
    let mut ids = Vec::with_capacity(raw.len());
    for (key, payload) in raw {
        let id = match codec.decode(payload.as_deref()).await {
            Ok(d) => Envelope::from_value(d.kind, d.value).ok().map(|e| e.document.id),
            Err(_) => None,
        };
        ids.push(id.or(key).unwrap_or_default());
    }
    Ok(estimate(t, spec, &events, &ids, plan.reprocessed() as u64, now_ms()))
}

type Raw = (Option<String>, Option<Vec<u8>>);

/// Keys and values of the records in `[new, current)` of each partition, at most
/// [`MAX_SCANNED`] in all, spread over the partitions.
async fn read_windows(t: &Topology, plan: &Plan) -> Result<Vec<Raw>, CostError> {
    let windows: Vec<_> = plan.partitions.iter().filter(|p| p.records() > 0).collect();
    let per_partition = (MAX_SCANNED / windows.len().max(1)).max(1) as i64;
    let ranges: Vec<Range> = windows
        .iter()
        .map(|p| Range {
            topic: p.topic.clone(),
            partition: p.partition,
            from: p.new,
            to: p.current.min(p.new + per_partition),
        })
        .collect();
    let kafka = t.kafka.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        read_ranges(&kafka, &ranges, Duration::from_secs(10), |m| {
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            out.push((key, m.payload().map(<[u8]>::to_vec)));
        })?;
        Ok(out)
    })
    .await
    .expect("reader thread does not panic")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::compile;

    fn event(
        id: &str,
        doc: &str,
        cost: i64,
        cached: bool,
        prompt: Option<&str>,
        at: i64,
    ) -> CostEvent {
        CostEvent {
            event_id: id.into(),
            timestamp_ms: at,
            stage: "answer".into(),
            document_id: doc.into(),
            provider: "sim".into(),
            model_requested: "m".into(),
            model_served: "m".into(),
            prompt_version: prompt.map(str::to_owned),
            cost_micro_usd: cost,
            cached,
            ..CostEvent::sample()
        }
    }

    fn topology(cache: &str) -> Topology {
        let yaml = format!(
            r#"
pipeline: p
providers:
  sim: {{ kind: simulated }}
prompts:
  answer@1: {{ system: "s", user: "{{{{document}}}}" }}
  answer@2: {{ system: "s2", user: "{{{{document}}}}" }}
{cache}
inputs:
  p.docs: {{}}
stages:
  answer:
    kind: generate
    input: p.docs
    output: p.out
    model: {{ provider: sim, name: m }}
    generate: {{ prompt: answer@2 }}
"#
        );
        compile(Path::new("t.yaml"), &yaml).expect("compiles")
    }

    fn events() -> Vec<CostEvent> {
        vec![
            // d1: paid 100 with the current prompt; d2: paid 40 with the old prompt; d3: a
            // cache hit re-emitting its original call (paid 70, current prompt).
            event("a", "d1", 100, false, Some("answer@2"), 1_000),
            event("b", "d2", 40, false, Some("answer@1"), 1_000),
            event("c", "d3", 70, false, Some("answer@2"), 500),
            event("c'", "d3", 0, true, Some("answer@2"), 2_000),
        ]
    }

    #[test]
    fn without_a_cache_every_record_pays_what_it_paid() {
        let t = topology("");
        let ids: Vec<String> = ["d1", "d2", "d3", "d4"].map(String::from).to_vec();
        let e = estimate(&t, &t.stages[0], &events(), &ids, 8, 10_000);
        assert_eq!((e.scanned, e.metered, e.cached), (4, 3, 0));
        assert_eq!(e.per_record_micro_usd, 210 / 4);
        assert_eq!(e.without_cache_micro_usd, 420, "4 of 8 records read: doubled");
        assert_eq!(e.with_cache_micro_usd, 420);
        assert!(e.notes.iter().any(|n| n.contains("read 4 of the 8 records")), "{:?}", e.notes);
        assert!(e.notes.iter().any(|n| n.contains("1 read records have no cost event")));
    }

    #[test]
    fn with_a_cache_answered_records_are_free_unless_another_prompt_answered_them() {
        let t = topology("cache: { path: /tmp/c }");
        let ids: Vec<String> = ["d1", "d2", "d3"].map(String::from).to_vec();
        let e = estimate(&t, &t.stages[0], &events(), &ids, 3, 10_000);
        assert_eq!((e.cached, e.without_cache_micro_usd), (2, 210));
        assert_eq!(e.with_cache_micro_usd, 40, "d2 was answered by answer@1: paid again");
        assert!(e.notes.iter().any(|n| n.contains("assumes the response cache")), "{:?}", e.notes);
    }

    #[test]
    fn redis_entries_older_than_the_ttl_pay_again() {
        let d = DocCost { paid_micro_usd: 5, answered_ms: Some(1_000), hit: true };
        let redis = CacheSpec::Redis { url: "redis://x".into(), ttl: Duration::from_secs(60) };
        assert!(in_cache(Some(&redis), &d, 60_999));
        assert!(!in_cache(Some(&redis), &d, 61_000));
        let disk = CacheSpec::Embedded { path: "/tmp/c".into() };
        assert!(in_cache(Some(&disk), &DocCost { answered_ms: None, ..d }, i64::MAX));
        assert!(!in_cache(None, &d, 0));
    }
}
