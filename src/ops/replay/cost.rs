//! What a replay will cost, with what the figure rests on. A sample spread across the replayed
//! window ([`super::cost_sample`]) is read; for each sampled record the metering topic says what
//! its own first processing paid, if its events are still there, and whether the response cache
//! should answer it ([`super::cost_evidence`]). The estimate is an interval: the low end counts
//! sampled records without a cost event as free and the cache as holding every answer on record;
//! the high end counts them at the average of those with one and the cache as holding nothing;
//! both widened by the sampling error when only part of the window was read. With no cost event
//! for any sampled record the estimate is "unknown", never $0.

use std::time::Duration;

use serde::Serialize;

use super::cost_evidence::{by_document, current_prompts, doc_costs, in_cache, own_cost};
use super::cost_sample::{read_sample, sample_ranges, Sampled};
use super::plan::Plan;
use crate::avro::Codec;
use crate::call::now_ms;
use crate::config::{CacheSpec, StageSpec, Topology};
use crate::kafka::registry_settings;
use crate::metering::report::{dedup, usd};
use crate::metering::{read_metering, CostEvent, ReadError, Skipped};

/// Records of the window read by default; a larger window is sampled across.
pub const DEFAULT_SAMPLE: u64 = 2_000;

/// The normal quantile of the sampling interval (about 95%).
const Z: f64 = 1.96;

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error(transparent)]
    Metering(#[from] ReadError),
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// An amount in micro-USD, or unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Amount {
    /// No sampled record has a cost event: nothing to estimate from.
    Unknown { reason: String },
    /// The most likely figure and the interval it lies in.
    Estimated { expected_micro_usd: u64, low_micro_usd: u64, high_micro_usd: u64 },
}

impl Amount {
    /// `$x (between $a and $b)`, or `unknown (why)`, for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Unknown { reason } => format!("unknown ({reason})"),
            Self::Estimated { expected_micro_usd, low_micro_usd, high_micro_usd } => format!(
                "{} USD (between {} and {} USD)",
                usd(*expected_micro_usd),
                usd(*low_micro_usd),
                usd(*high_micro_usd)
            ),
        }
    }

    /// Whether `micro_usd` lies in the interval (false when unknown).
    pub fn contains(&self, micro_usd: u64) -> bool {
        matches!(self, Self::Estimated { low_micro_usd, high_micro_usd, .. }
            if (*low_micro_usd..=*high_micro_usd).contains(&micro_usd))
    }
}

/// What re-processing the plan's records is expected to cost, and what that rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostEstimate {
    /// Records the plan re-processes, and how many of them were sampled.
    pub records: u64,
    pub sampled: u64,
    /// Sampled records whose own processing has cost events on the metering topic.
    pub metered: u64,
    /// `metered / sampled`.
    pub metered_share: f64,
    /// Without a cache: every record pays again.
    pub without_cache: Amount,
    /// The response cache's kind, when the topology has one; `None`: no cache.
    pub cache: Option<String>,
    /// Sampled records whose answer the cache should still hold.
    pub cached: u64,
    /// With the cache, `None` without one.
    pub with_cache: Option<Amount>,
    /// Metering records that are not cost events, skipped.
    pub metering_skipped: Skipped,
    /// The assumptions, for the operator to read.
    pub notes: Vec<String>,
}

/// Mean and the sampling error of a total over `n_total` records estimated from `values`.
fn total(values: &[f64], n_total: u64) -> (f64, f64) {
    let n = values.len() as f64;
    let big_n = n_total as f64;
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() as u64 >= n_total || values.len() < 2 {
        return (mean * big_n, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let fpc = ((big_n - n) / (big_n - 1.0)).max(0.0);
    (mean * big_n, big_n * Z * (var / n * fpc).sqrt())
}

fn micro(x: f64) -> u64 {
    x.max(0.0).round() as u64
}

/// The estimate from the sampled records of a window of `records`. `metering_whole`: the
/// metering topic still holds every event ever written to it (no partition's log start moved),
/// so a record without a cost event made no call.
pub fn estimate(
    t: &Topology,
    spec: &StageSpec,
    (events, metering_whole): (&[CostEvent], bool),
    sample: &[Sampled],
    records: u64,
    now_ms: i64,
) -> CostEstimate {
    let prompts = current_prompts(spec);
    let docs = doc_costs(events, &spec.name, prompts.as_deref());
    let by_doc = by_document(events, &spec.name);
    let cache = t.cache.as_ref();
    let own: Vec<Option<u64>> =
        sample.iter().map(|r| own_cost(by_doc.get(r.document_id.as_str()), r)).collect();
    let cached: Vec<bool> = sample
        .iter()
        .map(|r| docs.get(&r.document_id).is_some_and(|d| in_cache(cache, d, now_ms)))
        .collect();
    let paid: Vec<u64> = own.iter().flatten().copied().collect();
    let metered = paid.len() as u64;
    let sampled = sample.len() as u64;
    let average = paid.iter().sum::<u64>() as f64 / (metered.max(1)) as f64;
    // Where the topic lost events to retention, it holds the stage's events from here on.
    let kept_since = events.iter().filter(|e| e.stage == spec.name).map(|e| e.timestamp_ms).min();
    let metered_at = |r: &Sampled| match (metering_whole, kept_since, r.timestamp_ms) {
        (true, _, _) => true,
        (false, Some(since), Some(at)) => at >= since,
        (false, _, _) => false,
    };
    let amount = |free_if_cached: bool| -> Amount {
        if metered == 0 {
            let reason = if sampled == 0 {
                "no record of the window could be read".to_owned()
            } else {
                format!(
                    "none of the {sampled} sampled records has a cost event of stage '{}' on the \
                     metering topic",
                    spec.name
                )
            };
            return Amount::Unknown { reason };
        }
        let low: Vec<f64> = own
            .iter()
            .zip(&cached)
            .map(|(c, hit)| if free_if_cached && *hit { 0.0 } else { c.unwrap_or(0) as f64 })
            .collect();
        let high: Vec<f64> = own.iter().map(|c| c.map_or(average, |c| c as f64)).collect();
        // Most likely: a record without a cost event made no call when the metering topic still
        // holds its time (empty, rule-based, undecodable), and cost what the metered ones did on
        // average when its events aged out; the configured cache answers what it holds.
        let likely_one = |c: &Option<u64>, r: &Sampled, hit: bool| match (free_if_cached && hit, c)
        {
            (true, _) => 0.0,
            (false, Some(c)) => *c as f64,
            (false, None) if metered_at(r) => 0.0,
            (false, None) => average,
        };
        let likely: Vec<f64> = own
            .iter()
            .zip(sample)
            .zip(&cached)
            .map(|((c, r), hit)| likely_one(c, r, *hit))
            .collect();
        let (lo, lo_err) = total(&low, records);
        let (hi, hi_err) = total(&high, records);
        Amount::Estimated {
            expected_micro_usd: micro(total(&likely, records).0),
            low_micro_usd: micro(lo - lo_err),
            high_micro_usd: micro(hi + hi_err),
        }
    };
    let mut e = CostEstimate {
        records,
        sampled,
        metered,
        metered_share: if sampled == 0 { 0.0 } else { metered as f64 / sampled as f64 },
        without_cache: amount(false),
        cache: cache.map(describe_cache),
        cached: cached.iter().filter(|c| **c).count() as u64,
        with_cache: cache.map(|_| amount(true)),
        metering_skipped: Skipped::default(),
        notes: Vec::new(),
    };
    e.notes = notes(&e, prompts.is_some());
    e
}

fn describe_cache(c: &CacheSpec) -> String {
    match c {
        CacheSpec::Embedded { path } => {
            format!("on the disk of each stage process ({})", path.display())
        }
        CacheSpec::Redis { ttl, .. } => {
            format!("in Redis, entries younger than {}", humantime::format_duration(*ttl))
        }
    }
}

fn notes(e: &CostEstimate, prompts_known: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if e.sampled < e.records {
        notes.push(format!(
            "sampled {} of the {} records, spread across the window; the interval includes the \
             sampling error (about 95%)",
            e.sampled, e.records
        ));
    }
    if e.metered < e.sampled {
        notes.push(format!(
            "{} of {} sampled records ({:.0}%) have no cost event of their own processing (no \
             model call, not metered, or older than the metering topic's retention): the low end \
             counts them as free, the high end at the average of the others",
            e.sampled - e.metered,
            e.sampled,
            (1.0 - e.metered_share) * 100.0
        ));
    }
    match &e.cache {
        None => notes.push("no response cache: every record pays again".into()),
        Some(kind) => {
            notes.push(format!(
                "response cache {kind}: the expected figure assumes it still holds the {} \
                 sampled answers on record; the high end assumes it holds none (another process \
                 or pod, eviction, expiry)",
                e.cached
            ));
            if prompts_known {
                notes.push(
                    "answers made with another prompt version are not cached under the current \
                     one: counted as paid"
                        .into(),
                );
            } else {
                notes.push(
                    "assumes the prompt versions and models are the ones that answered".into(),
                );
            }
        }
    }
    notes
}

/// Samples about `sample` records across the plan's re-processed windows and estimates what
/// processing them again costs.
pub async fn estimate_plan(
    t: &Topology,
    spec: &StageSpec,
    plan: &Plan,
    sample: u64,
) -> Result<CostEstimate, CostError> {
    let metering = read_metering(t).await?;
    let events = dedup(metering.events);
    let codec = Codec::connect(&registry_settings(t), &[]).await?;
    let ranges = sample_ranges(plan, sample);
    let sampled = read_sample(&t.kafka, &codec, ranges, Duration::from_secs(10)).await?;
    let (kafka, topic) = (t.kafka.clone(), t.metering_topic.clone());
    let whole = tokio::task::spawn_blocking(move || crate::ops::groups::watermarks(&kafka, &topic))
        .await
        .expect("the watermarks thread does not panic")
        .is_ok_and(|parts| parts.iter().all(|(_, low, _)| *low == 0));
    let reprocessed = plan.reprocessed().max(0) as u64;
    let mut e = estimate(t, spec, (&events, whole), &sampled, reprocessed, now_ms());
    if metering.skipped.count > 0 {
        e.notes.push(format!(
            "{} metering record(s) are not cost events and were skipped (first: {})",
            metering.skipped.count,
            metering.skipped.first.as_deref().unwrap_or("")
        ));
    }
    e.metering_skipped = metering.skipped;
    Ok(e)
}

#[cfg(test)]
#[path = "cost_tests.rs"]
mod tests;
